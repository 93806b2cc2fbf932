"""Rasa custom actions of the IVR, served by `python -m rasa_sdk --actions dialogs.actions`.

One module per domain: session (greeting, no-match), handoff (universal
commands), faq, orders, tickets. rasa_sdk registers every Action subclass in
the modules of this package.
"""
