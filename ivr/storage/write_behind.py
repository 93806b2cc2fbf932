"""The call path's writes, stored in order by one background task, so no caller waits on the database.

A call writes as it goes: its call row, every transcript line, every call
event (the KPI log), the handoff package, the end. Awaited one by one, a
database that is locked (a long transaction, a backup, another process holding
SQLite's write lock) or briefly unreachable stalled the call itself: with the
database locked for 25 s a new text conversation got a 500 after 15 s and a
phone caller heard nothing and was cut off. Here a write is queued and the call
goes on talking; one task stores the queue in order and retries what failed
for a transient reason (locked, connection lost) until it succeeds.

While the database keeps up, each write is still awaited until it is stored
(a few milliseconds), so whoever reads right after a call's turn, in this
process or another, sees it. Only a write that takes longer than `settle_s`
is left to the queue, and from then until the queue has drained no write waits.

What is still queued is also what a reader of this process sees first: the
handoff package a queue hands to an agent is taken from the queue when it has
not reached the database yet.

Bounds: at most `max_pending` writes wait. Beyond that the database has been
gone for long, and new calls are refused with a spoken apology
(`saturated`; ivr/session/conversation.py) rather than accepted and lost;
writes of calls already talking that still do not fit are dropped and counted.
On shutdown the queue is drained for a while; what cannot be written then is
counted in the last log line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import sqlalchemy.exc

from ivr.storage.base import CallEvent, CallRecord, Handoff, Storage, Utterance

log = logging.getLogger("ivr.storage.write_behind")

# Errors after which the same write can succeed later: a lock, a lost or refused connection.
TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
             ConnectionError, TimeoutError)  # fmt: skip


@dataclass(frozen=True)
class _Write:
    what: str  # the method, for logs and counters: never the data (it holds callers' words and numbers)
    run: Callable[[], Awaitable[None]]
    handoff: Handoff | None = None
    stored: asyncio.Event = field(default_factory=asyncio.Event)  # set once written (or given up)


class WriteBehind:
    """start_call, add_utterance, log_event, save_handoff and end_call of a Storage, without waiting for it."""

    def __init__(self, storage: Storage, max_pending: int = 20_000, retry_max_s: float = 5.0, settle_s: float = 0.5):
        self.storage = storage
        self.max_pending = max_pending
        self.retry_max_s = retry_max_s
        self.settle_s = settle_s
        self.stalled = False  # a write took longer than settle_s; none waits until the queue is empty again
        self._queue: collections.deque[_Write] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self.written = 0
        self.dropped = 0  # did not fit (queue full) or failed for good (not transient)
        self.failing_since: float | None = None

    # ---- the writes -------------------------------------------------------------------------------------------

    async def start_call(self, call: CallRecord) -> None:
        await self._submit(_Write("start_call", lambda: self.storage.start_call(call)))

    async def add_utterance(self, utterance: Utterance) -> None:
        await self._submit(_Write("add_utterance", lambda: self.storage.add_utterance(utterance)))

    async def log_event(self, event: CallEvent) -> None:
        await self._submit(_Write("log_event", lambda: self.storage.log_event(event)))

    async def save_handoff(self, handoff: Handoff) -> None:
        await self._submit(_Write("save_handoff", lambda: self.storage.save_handoff(handoff), handoff))

    async def end_call(self, call_id: str, ended_at: float, reason: str) -> None:
        await self._submit(_Write("end_call", lambda: self.storage.end_call(call_id, ended_at, reason)))

    async def get_handoff(self, handoff_id: str) -> Handoff | None:
        """The package, from the queue while it waits there, else from the database."""
        for write in self._queue:
            if write.handoff is not None and write.handoff.handoff_id == handoff_id:
                return write.handoff
        return await self.storage.get_handoff(handoff_id)

    # ---- state ------------------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def saturated(self) -> bool:
        """No room for another call's writes: new calls are turned away with an apology."""
        return self.pending >= self.max_pending

    def health(self) -> dict[str, object]:
        return {
            "pending": self.pending,
            "stalled": self.stalled,
            "written": self.written,
            "dropped": self.dropped,
            "failing_for_s": round(time.monotonic() - self.failing_since, 1) if self.failing_since else 0,
        }

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is stored (True) or `timeout_s` passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout_s: float = 10.0) -> None:
        drained = await self.drain(timeout_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not drained:
            log.error("storage.unwritten_at_shutdown", extra={"pending": self.pending})

    # ---- the writer -------------------------------------------------------------------------------------------

    async def _submit(self, write: _Write) -> None:
        """Queue the write; wait until it is stored unless that takes longer than settle_s (or already did)."""
        if not self._put(write) or self.stalled:
            return
        try:
            await asyncio.wait_for(write.stored.wait(), self.settle_s)
        except asyncio.TimeoutError:
            self.stalled = True
            log.warning("storage.slow", extra={"write": write.what, "pending": self.pending})

    def _put(self, write: _Write) -> bool:
        if self.pending >= self.max_pending:
            self.dropped += 1
            log.error("storage.write_dropped", extra={"write": write.what, "pending": self.pending})
            return False
        self._queue.append(write)
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="storage-write-behind")
        return True

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._queue:
                self._idle.set()
                self.stalled = False
                self._wake.clear()
                await self._wake.wait()
                continue
            write = self._queue[0]
            try:
                await write.run()
            except TRANSIENT as exc:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.error("storage.unavailable", extra={"write": write.what, "error": type(exc).__name__,
                                                            "pending": self.pending})  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            except Exception as exc:  # noqa: BLE001 - a write that can never succeed must not block the others
                self.dropped += 1
                log.error("storage.write_failed", extra={"write": write.what, "error": type(exc).__name__})
            else:
                self.written += 1
            self._queue.popleft()
            write.stored.set()
            if self.failing_since is not None:
                log.info("storage.available", extra={"down_s": round(time.monotonic() - self.failing_since, 1),
                                                     "pending": self.pending})  # fmt: skip
                self.failing_since = None
            backoff = 0.05
