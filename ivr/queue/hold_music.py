"""Hold music: a configured WAV file, or a generated soft tone loop when none is set.

The audio is prepared once per sample rate and streamed to the player in one
second chunks, so a caller on hold costs no synthesis and the player's pacing
and barge-in handling apply unchanged.
"""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from ivr.audio.codecs import StreamResampler
from ivr.audio.tts import SpeechChunk
from ivr.errors import ConfigError

LABEL = "[hold music]"
_NOTES_HZ = (392.0, 493.88, 587.33, 493.88)  # G4 B4 D5 B4: a calm arpeggio
_NOTE_S = 0.75
_LEVEL = 0.12  # about -18 dBFS: audible, never louder than speech


def tone_loop(rate: int) -> bytes:
    """A 3 s loop of soft notes with fade-in/out per note (no clicks at the seams)."""
    n = int(_NOTE_S * rate)
    t = np.arange(n) / rate
    envelope = np.minimum(1.0, np.minimum(t, _NOTE_S - t) / 0.08)
    notes = [np.sin(2 * np.pi * f * t) * envelope for f in _NOTES_HZ]
    return (np.concatenate(notes) * _LEVEL * 32767).astype(np.int16).tobytes()


def load_wav(path: Path, rate: int) -> bytes:
    """A mono or stereo 16-bit WAV as mono PCM16 at `rate`; errors name the file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ConfigError([f"{path}: hold music must be 16-bit PCM WAV"])
            channels, src_rate = wav.getnchannels(), wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    except (OSError, wave.Error, EOFError) as exc:
        raise ConfigError([f"{path}: cannot read hold music: {exc}"]) from exc
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if not len(samples):
        raise ConfigError([f"{path}: hold music is empty"])
    return StreamResampler(src_rate, rate).process(samples.tobytes(), last=True)


@lru_cache(maxsize=8)
def hold_audio(path: str | None, rate: int) -> bytes:
    return load_wav(Path(path).expanduser(), rate) if path else tone_loop(rate)


async def play(path: str | None, rate: int, seconds: float) -> AsyncIterator[SpeechChunk]:
    """`seconds` of hold music, looping, as one-second chunks."""
    audio = hold_audio(path, rate)
    chunk = rate * 2  # one second of PCM16
    total = int(seconds * rate) * 2
    offset = sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        piece = b""
        while len(piece) < size:
            take = audio[offset : offset + size - len(piece)]
            piece += take
            offset = (offset + len(take)) % len(audio)
        yield SpeechChunk(LABEL, piece, rate)
        sent += size
