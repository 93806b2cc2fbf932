"""In-band DTMF: keypad tones heard in the audio itself (ITU-T Q.23/Q.24).

For lines that carry keys as tones instead of RFC 4733 events (older PBXs,
gateways with the event payload off). Each 20 ms frame is measured at the
eight DTMF frequencies (a Goertzel-style single-bin DFT, done as one matrix
product); a key counts when one row and one column tone carry most of the
frame's energy, within the allowed twist, for two frames in a row (40 ms, the
Q.24 minimum), and is reported once until the tones stop. Speech rarely puts
most of its energy into exactly two of these bins, which is what keeps it
from triggering.
"""

from __future__ import annotations

import numpy as np

ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
MIN_RMS = 150.0  # about -47 dBFS: quieter frames are line noise
MIN_TONE_SHARE = 0.7  # the two tones' share of the frame energy
MAX_TWIST = 6.3  # 8 dB between the row and column tone, either way
MAX_OTHER = 0.2  # the second-strongest row (column) against the strongest


class ToneDetector:
    def __init__(self, rate: int = 8000, frame: int = 160):
        n = np.arange(frame)
        freqs = np.array(ROWS + COLUMNS)
        self._basis = np.exp(-2j * np.pi * np.outer(freqs, n) / rate)
        self._frame = frame
        self._candidate: str | None = None
        self._reported: str | None = None
        self._silent_frames = 0

    def key_in(self, pcm: bytes) -> str | None:
        """The key sounding in this frame (160 samples of PCM16 at 8 kHz), or None."""
        x = np.frombuffer(pcm, dtype=np.int16)[: self._frame].astype(np.float64)
        if len(x) < self._frame:
            return None
        energy = float(np.dot(x, x))
        if energy / len(x) < MIN_RMS**2:
            return None
        power = np.abs(self._basis @ x) ** 2 * 2 / (len(x) * energy)
        rows, cols = power[:4], power[4:]
        r, c = int(np.argmax(rows)), int(np.argmax(cols))
        if rows[r] + cols[c] < MIN_TONE_SHARE:
            return None
        if not 1 / MAX_TWIST <= rows[r] / max(cols[c], 1e-9) <= MAX_TWIST:
            return None
        if np.partition(rows, -2)[-2] > MAX_OTHER * rows[r] or np.partition(cols, -2)[-2] > MAX_OTHER * cols[c]:
            return None
        return KEYS[r][c]

    def process(self, pcm: bytes) -> str | None:
        """Feed one frame; returns a key once per press."""
        key = self.key_in(pcm)
        if key is None:
            self._silent_frames += 1
            if self._silent_frames >= 2:
                self._reported = None
            self._candidate = None
            return None
        self._silent_frames = 0
        if key == self._candidate and key != self._reported:
            self._reported = key
            return key
        self._candidate = key
        return None


def tone(key: str, ms: int = 100, rate: int = 8000, level: float = 8000.0) -> bytes:
    """The dual tone of a key as PCM16, for tests and for dialling out on lines without RFC 4733."""
    for r, row in enumerate(KEYS):
        if key in row:
            c = row.index(key)
            t = np.arange(rate * ms // 1000) / rate
            wave = level / 2 * (np.sin(2 * np.pi * ROWS[r] * t) + np.sin(2 * np.pi * COLUMNS[c] * t))
            return wave.astype(np.int16).tobytes()
    raise ValueError(f"{key!r} is not a DTMF key")
