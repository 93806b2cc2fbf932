"""Call sessions: one per call, between the transports and the audio pipeline/dialog."""
