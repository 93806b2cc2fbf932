"""Dialog: Rasa runs the conversation; this package talks to it."""
