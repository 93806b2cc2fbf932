"""Telephone codecs, framing and resampling.

Everything inside the pipeline is 16-bit little-endian mono PCM; codecs only
exist at the transport edge. G.711 uses the standard library's `audioop` (C,
exact ITU tables; available on the Python 3.10 that Rasa pins us to) and
resampling uses libsoxr, which keeps filter state across 20 ms chunks so
streamed audio has no clicks at frame boundaries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import soxr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_MS = 20
ASR_RATE = 16000


def frame_bytes(rate: int, ms: int = FRAME_MS) -> int:
    """Bytes of 16-bit mono PCM in `ms` milliseconds at `rate`."""
    return rate * ms // 1000 * 2


@dataclass(frozen=True)
class Codec:
    """A wire encoding: its name, sample rate and conversion to/from PCM16."""

    name: str
    rate: int

    def decode(self, payload: bytes) -> bytes:
        if self.name == "mulaw":
            return audioop.ulaw2lin(payload, 2)
        if self.name == "alaw":
            return audioop.alaw2lin(payload, 2)
        if len(payload) % 2:
            raise ValueError("odd number of bytes in 16-bit PCM payload")
        return payload

    def encode(self, pcm: bytes) -> bytes:
        if self.name == "mulaw":
            return audioop.lin2ulaw(pcm, 2)
        if self.name == "alaw":
            return audioop.lin2alaw(pcm, 2)
        return pcm


_ENCODINGS = {
    "audio/x-mulaw": "mulaw",
    "audio/pcmu": "mulaw",
    "mulaw": "mulaw",
    "audio/x-alaw": "alaw",
    "audio/pcma": "alaw",
    "alaw": "alaw",
    "audio/l16": "pcm16",
    "pcm16": "pcm16",
}
SUPPORTED_RATES = (8000, 16000)


def codec_for(encoding: str, rate: int) -> Codec:
    """The codec for a transport's declared encoding; ValueError names what is wrong."""
    name = _ENCODINGS.get(encoding.lower())
    if name is None:
        raise ValueError(f"unsupported encoding {encoding!r}; use one of {sorted(set(_ENCODINGS))}")
    if rate not in SUPPORTED_RATES:
        raise ValueError(f"unsupported sample rate {rate}; use one of {SUPPORTED_RATES}")
    if name in ("mulaw", "alaw") and rate != 8000:
        raise ValueError(f"G.711 {name} is defined at 8000 Hz, not {rate}")
    return Codec(name, rate)


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole PCM16 buffer (prompts from TTS)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, src_rate, dst_rate, quality="HQ").astype(np.int16).tobytes()


class StreamResampler:
    """Resamples a PCM16 stream chunk by chunk, keeping filter state between chunks."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.passthrough = src_rate == dst_rate
        self._stream = (
            None if self.passthrough else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16", quality="MQ")
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(np.frombuffer(pcm, dtype=np.int16), last=last)
        return out.tobytes()


class Framer:
    """Cuts a byte stream into exact frames, carrying the remainder to the next call."""

    def __init__(self, frame_size: int):
        self.frame_size = frame_size
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        count = len(self._buffer) // self.frame_size
        frames = [bytes(self._buffer[i * self.frame_size : (i + 1) * self.frame_size]) for i in range(count)]
        del self._buffer[: count * self.frame_size]
        return frames

    def flush(self) -> bytes:
        """The incomplete tail, padded with silence to a whole frame (or b'' if none)."""
        if not self._buffer:
            return b""
        tail = bytes(self._buffer) + b"\x00" * (self.frame_size - len(self._buffer))
        self._buffer.clear()
        return tail


def rms(pcm: bytes) -> float:
    """Root mean square level of PCM16 audio (0 for silence, ~32767 full scale)."""
    if len(pcm) < 2:
        return 0.0
    return float(audioop.rms(pcm, 2))
