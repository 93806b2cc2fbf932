"""Audio pipeline per call: codecs and framing, endpointing (VAD), ASR (Vosk), TTS (Piper), playback."""
