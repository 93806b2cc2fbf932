"""Per-call input bounds: how fast audio may arrive, how many turns keys make, how long text may be.

The numbers come from `limits` in ivr.yml (ivr.settings.LimitSettings) and are
documented in docs/architecture.md ("Limits"). Each helper is a small, clock-
injectable piece so the transports and the call session stay readable and the
tests need no sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class RealTimeGuard:
    """How far a media stream's audio has run ahead of real time (a leaky bucket).

    Every message adds its audio's duration, and the level drains at one second
    per second of wall time, never below zero: a stream that stalls and then
    catches up is fine as long as the catch-up stays within the burst allowance,
    but silence on the wire earns no credit for a later flood. A level above the
    allowance means audio arrives much faster than anyone speaks.
    """

    def __init__(self, burst_s: float, clock: Clock = time.monotonic):
        self.burst_s = burst_s
        self.level_s = 0.0
        self._clock = clock
        self._last: float | None = None

    def add(self, seconds: float) -> bool:
        """Count `seconds` of audio just received; False when the stream is over the allowance."""
        now = self._clock()
        if self._last is not None:
            self.level_s = max(0.0, self.level_s - (now - self._last))
        self._last = now
        self.level_s += seconds
        return self.level_s <= self.burst_s


class TokenBucket:
    """At most `burst` events at once and `per_s` per second sustained (dialog turns made by keys)."""

    def __init__(self, per_s: float, burst: int, clock: Clock = time.monotonic):
        self.per_s = per_s
        self.burst = burst
        self.tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self._last) * self.per_s)
        self._last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def cut_text(text: str, limit: int) -> str:
    """Recognized text bounded for the dialog: cut at the last word boundary within `limit` characters.

    ASR output is at most `vad.max_utterance_ms` of speech and normally far below
    the limit; past it, a recognizer producing garbage (noise, a tone, a
    looping decoder) would hand the NLU an unbounded string. The caller's turn
    still happens, with the beginning of what was heard, rather than being lost.
    """
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut
