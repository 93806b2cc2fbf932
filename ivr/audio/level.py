"""Frame levels and a running noise-floor estimate, for the endpointer's end-of-speech refinement.

webrtcvad says whether a frame sounds like speech, not how loud it is; on a
line with background noise it keeps saying so for a while after the last
word. A level above the noise floor tells the last word from that tail.
Both are cheap: one RMS per 20 ms frame.
"""

from __future__ import annotations

import math

import numpy as np

SILENCE_DB = -96.0  # digital silence (PCM16's dynamic range)
FULL_SCALE = 32768.0


def level_db(frame: bytes) -> float:
    """RMS level of a PCM16 frame in dBFS (SILENCE_DB for digital silence)."""
    samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
    if not len(samples):
        return SILENCE_DB
    power = float(np.dot(samples, samples)) / len(samples)
    if power <= 0:
        return SILENCE_DB
    return max(SILENCE_DB, 10 * math.log10(power) - 20 * math.log10(FULL_SCALE))


class NoiseFloor:
    """The line's background level in dBFS: falls quickly to quieter frames, rises slowly outside speech.

    Falling fast follows the pauses between words; rising slowly (`rise_db` a
    frame, only between turns) follows a noisier room without speech dragging
    the floor up. A floor that is too low only makes the refinement cautious
    (more frames count as speech), never cuts a caller off.
    """

    def __init__(self, rise_db: float = 0.05, fall: float = 0.3):
        self.db: float = SILENCE_DB
        self._started = False
        self._rise_db = rise_db
        self._fall = fall

    def update(self, level: float, rising: bool) -> None:
        if not self._started:
            self.db, self._started = level, True
        elif level < self.db:
            self.db += self._fall * (level - self.db)
        elif rising:
            self.db = min(level, self.db + self._rise_db)
