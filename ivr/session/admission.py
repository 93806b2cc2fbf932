"""Admission control: a call is taken only while the machine has room to serve it at the latency budget.

Every transport asks `Admission.try_admit` before it commits to a call (SIP
before 180/200, the media WebSockets before the upgrade) and gets a `Ticket`
or a `Refusal`. The ticket holds one of `limit` slots until it is released,
which the transport does in the same `finally` that ends the call; releasing
twice is harmless, so a second clean-up path cannot free someone else's slot.

A call is refused, in this order, when the server is stopping, when `limit`
calls are admitted already, when the event loop that paces every call's
20 ms audio runs late (`LoopLag`), when the recognizers are behind (the sum
over calls of caller audio waiting for Vosk), or when calls start faster
than the start-up rate (a token bucket: a burst of INVITEs must not all
build recognizers and synthesize greetings in the same second). Admitted
calls keep their latency because nothing here ever ends one.

Plain and clock-injectable; it imports nothing of the IVR above it: the
backlog is read through a callable the runtime passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from ivr.session.limits import Clock, TokenBucket

log = logging.getLogger("ivr.admission")

TICK_S = 0.1  # the loop-lag probe's period
LAG_WINDOW = 10  # ticks: the lag reported is the mean over the last second (a lasting delay, not one hiccup)


class RefusalReason(enum.Enum):
    """Why a call was not taken; the value is what logs, /healthz and SIP Warning headers show."""

    SHUTTING_DOWN = "shutting_down"
    AT_CAPACITY = "at_capacity"
    LOOP_LAG = "loop_lag"
    ASR_BACKLOG = "asr_backlog"
    BURST = "burst"


@dataclass(frozen=True)
class AdmissionLimits:
    """The numbers Admission works with (from `admission` in ivr.yml, resolved against the core count)."""

    max_calls: int
    max_loop_lag_ms: float
    max_asr_backlog_s: float
    starts_per_s: float
    start_burst: int
    retry_after_s: int
    max_overflow: int = 0  # refused media streams taken for a busy message and a callback request, at once


@dataclass(frozen=True)
class Refusal:
    """A call not taken: the reason, when to try again, and a sentence for the far end."""

    reason: RefusalReason
    retry_after_s: int
    detail: str

    @property
    def text(self) -> str:
        """`at_capacity: 6 calls admitted, the limit`: the reason first, for machines and people alike."""
        return f"{self.reason.value}: {self.detail}"


class Ticket:
    """One admitted call's slot; `release` gives it back (once, however often it is called)."""

    def __init__(self, admission: Admission, channel: str, overflow: bool = False):
        self.channel = channel
        self.overflow = overflow  # an overflow slot: a refused call told "all lines busy"
        self._admission: Admission | None = admission

    @property
    def held(self) -> bool:
        return self._admission is not None

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._released(self)


@dataclass(frozen=True)
class AdmissionState:
    """What /healthz shows."""

    limit: int
    active: int
    admitted: int
    overflow_active: int
    overflowed: int
    refused: dict[str, int]
    loop_lag_ms: float
    asr_backlog_ms: int
    shutting_down: bool


class LoopLag:
    """How late the event loop runs: a 100 ms timer measures how much later than asked it wakes up.

    A loop that wakes a timer 50 ms late also sends every call's next RTP or
    media frame 50 ms late; that, not CPU percentages, is what callers hear.
    The mean over a second is what counts: players send three frames (60 ms)
    ahead, so one short hiccup is not heard, a loop late on every tick is.
    """

    def __init__(self, clock: Clock = time.monotonic, tick_s: float = TICK_S):
        self._clock = clock
        self._tick_s = tick_s
        self._recent: deque[float] = deque(maxlen=LAG_WINDOW)
        self._task: asyncio.Task | None = None

    @property
    def lag_ms(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def record(self, lag_s: float) -> None:
        self._recent.append(max(0.0, lag_s) * 1000)

    def start(self) -> None:
        """Starts the probe on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        while True:
            asked = self._clock()
            await asyncio.sleep(self._tick_s)
            self.record(self._clock() - asked - self._tick_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Admission:
    """The one count of calls on this machine, and the decision whether one more fits."""

    def __init__(
        self,
        limits: AdmissionLimits,
        asr_backlog_s: Callable[[], float] = lambda: 0.0,
        clock: Clock = time.monotonic,
    ):
        self.limits = limits
        self.lag = LoopLag(clock)
        self.active = 0
        self.admitted = 0
        self.overflow_active = 0
        self.overflowed = 0  # refused calls taken for a busy message and a callback request
        self.refused: Counter[RefusalReason] = Counter()
        self.shutting_down = False
        self._asr_backlog_s = asr_backlog_s
        self._starts = TokenBucket(limits.starts_per_s, limits.start_burst, clock)

    def try_admit(self, channel: str) -> Ticket | Refusal:
        """A ticket for one more call on `channel`, or why not (logged once as `call.refused`)."""
        refusal = self._check()
        if refusal is not None:
            self.refused[refusal.reason] += 1
            log.info("call.refused", extra={"reason": refusal.reason.value, "channel": channel,
                                            "detail": refusal.detail, "active": self.active})  # fmt: skip
            return refusal
        self.active += 1
        self.admitted += 1
        return Ticket(self, channel)

    def _check(self) -> Refusal | None:
        limits = self.limits

        def refuse(reason: RefusalReason, detail: str) -> Refusal:
            return Refusal(reason, limits.retry_after_s, detail)

        if self.shutting_down:
            return refuse(RefusalReason.SHUTTING_DOWN, "the server is stopping")
        if self.active >= limits.max_calls:
            return refuse(RefusalReason.AT_CAPACITY, f"calls at the limit (admission.max_calls: {limits.max_calls})")
        if self.lag.lag_ms > limits.max_loop_lag_ms:
            return refuse(RefusalReason.LOOP_LAG, f"event loop {self.lag.lag_ms:.0f} ms late "
                                                  f"(admission.max_loop_lag_ms: {limits.max_loop_lag_ms:g})")  # fmt: skip
        backlog = self._asr_backlog_s()
        if backlog > limits.max_asr_backlog_s:
            return refuse(RefusalReason.ASR_BACKLOG, f"{backlog:.1f} s of audio waiting for recognition "
                                                     f"(admission.max_asr_backlog_s: {limits.max_asr_backlog_s:g})")  # fmt: skip
        if not self._starts.take():
            return refuse(RefusalReason.BURST, f"calls start faster than {limits.starts_per_s:g}/s "
                                               f"(admission.starts_per_s)")  # fmt: skip
        return None

    def try_overflow(self, refusal: Refusal, channel: str) -> Ticket | None:
        """An overflow slot for a call refused for load (not while stopping), or None when they are all taken."""
        if refusal.reason is RefusalReason.SHUTTING_DOWN or self.overflow_active >= self.limits.max_overflow:
            return None
        self.overflow_active += 1
        self.overflowed += 1
        return Ticket(self, channel, overflow=True)

    def _released(self, ticket: Ticket) -> None:
        if ticket.overflow:
            self.overflow_active -= 1
        else:
            self.active -= 1

    def state(self) -> AdmissionState:
        return AdmissionState(
            limit=self.limits.max_calls,
            active=self.active,
            admitted=self.admitted,
            overflow_active=self.overflow_active,
            overflowed=self.overflowed,
            refused={reason.value: self.refused[reason] for reason in RefusalReason},
            loop_lag_ms=round(self.lag.lag_ms, 1),
            asr_backlog_ms=round(self._asr_backlog_s() * 1000),
            shutting_down=self.shutting_down,
        )
