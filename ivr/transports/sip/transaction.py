"""SIP transactions (RFC 3261 §17): timers, flows, client and server transactions.

This is the layer below the dialog: endpoint.py (listeners and dispatch),
call.py (the INVITE dialog), register.py (REGISTER) and caller.py (the test
phone) build on it, and it imports none of them. What it needs from above
is written down as a Protocol (`UserAgent`), so the modules above depend on
this one and never on each other in a circle.

One retransmission loop (`retransmit`) serves every timer that repeats a
message: a request of ours over UDP (Timer A for INVITE, Timer E otherwise),
an error answer to INVITE until its ACK (Timer G), and the 2xx to INVITE
until its ACK, which the dialog retransmits itself because that ACK is a
transaction of its own (§13.3.1.4). Each starts at T1, doubles up to T2 and
gives up after 64*T1 (Timers B, F, H). Over TCP and TLS nothing is repeated
(the transport does that), but the wait and its limit are the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sipmessage import Request, Response

from ivr.transports.sip.message import Message, transaction_key

T1 = 0.5  # the round-trip estimate (§17.1.1.1)
T2 = 4.0  # the longest interval between two retransmissions of a non-INVITE request or an answer to INVITE
TIMER_F = 64 * T1  # a request nobody answers, an answer nobody acknowledges (Timers B, F, H)
KEEP_TRANSACTION_S = 32.0  # Timer J: how long a retransmitted request still gets the cached answer
KEEP_UNANSWERED_S = 300.0  # a transaction whose handler never gave a final answer (a bug) is forgotten after this

T = TypeVar("T")


@dataclass(frozen=True)
class Timers:
    """T1, T2 and when to give up; the defaults are RFC 3261's, tests pass shorter ones."""

    t1: float = T1
    t2: float = T2
    give_up: float = TIMER_F

    @classmethod
    def scaled(cls, t1: float) -> Timers:
        """The RFC's proportions around another T1: T2 = 8*T1, giving up after 64*T1."""
        return cls(t1, 8 * t1, 64 * t1)


RFC_TIMERS = Timers()


@dataclass
class Flow:
    """The path a message came in on: answers and in-dialog requests go back the same way."""

    transport: str  # UDP | TCP | TLS
    remote: tuple[str, int]
    send: Callable[[bytes], None]
    closed: Callable[[], bool] = lambda: False

    @property
    def reliable(self) -> bool:
        """TCP and TLS retransmit for us: nothing is repeated on them (§17.1.1.2, §17.2.1)."""
        return self.transport != "UDP"


class UserAgent(Protocol):
    """What register.py, dialog.py and call.py need from the endpoint: where we are reached, client transactions."""

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def tls_port(self) -> int | None: ...

    async def request(self, request: Request, destination: tuple[str, int], flow: Flow | None = None) -> Response: ...


# ---- the one retransmission loop ----------------------------------------------------------------


def schedule(timers: Timers = RFC_TIMERS, doubling: bool = True) -> Iterator[float]:
    """Seconds after the first send: the retransmissions, then `give_up` (always the last value).

    Doubling: T1, 3*T1, 7*T1 … (the interval doubles up to T2, then stays at
    T2). Without doubling (a reliable transport, where nothing is resent) a
    wake-up every T1, so whoever waits can still stop waiting early.
    """
    interval, due = timers.t1, timers.t1
    while due < timers.give_up:
        yield due
        if doubling:
            interval = min(interval * 2, timers.t2)
        due += interval
    yield timers.give_up


async def retransmit(until: Awaitable[T], resend: Callable[[], None] | None, timers: Timers = RFC_TIMERS,
                     still_wanted: Callable[[], bool] = lambda: True) -> T | None:  # fmt: skip
    """Waits for `until`, calling `resend` on the `schedule`; None when `give_up` passes first.

    `resend` is None on a reliable transport: nothing is repeated, the limit
    holds all the same. `still_wanted` is asked before every retransmission;
    False ends the wait at once with None (a dialog that ended while its 2xx
    waited for the ACK).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiter = asyncio.ensure_future(until)
    try:
        for due in schedule(timers, doubling=resend is not None):
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), max(0.0, start + due - loop.time()))
            except asyncio.TimeoutError:
                pass
            if due >= timers.give_up or not still_wanted():
                return None
            if resend is not None:
                resend()
        return None
    finally:
        if not loop.is_closed():  # a task still waiting when its loop closed is collected with GeneratorExit
            waiter.cancel()


# ---- client transactions ------------------------------------------------------------------------


@dataclass
class ClientTransaction:
    """One request of ours in flight (§17.1): its final answer, once it comes."""

    request: Request
    answered: asyncio.Future
    proceeding: bool = False  # a provisional answer came

    def retransmits(self) -> bool:
        """An INVITE is not repeated once a 1xx has come (Timer A stops, §17.1.1.2); other requests are (Timer E)."""
        return not (self.proceeding and self.request.method == "INVITE")


def client_key(message: Message) -> tuple[str, str]:
    """§17.1.3: a response belongs to the client transaction of its top Via branch and CSeq method."""
    branch, _, method = transaction_key(message)
    return branch, method


class ClientTransactions:
    """Our requests in flight: `run` sends one and waits, `on_response` hands it the answers that belong to it."""

    def __init__(self, timers: Timers = RFC_TIMERS):
        self.timers = timers
        self._waiting: dict[tuple[str, str], ClientTransaction] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def on_response(self, answer: Response) -> bool:
        """True if the answer belonged to a transaction in flight (retransmitted finals and strays do not)."""
        tx = self._waiting.get(client_key(answer))
        if tx is None or tx.answered.done():
            return False
        if answer.code < 200:
            tx.proceeding = True
        else:
            tx.answered.set_result(answer)
        return True

    async def run(self, request: Request, send: Callable[[bytes], None], reliable: bool,
                  timers: Timers | None = None) -> Response:  # fmt: skip
        """Sends `request` (its Via branch set), repeats it unless `reliable`; its final answer, or TimeoutError."""
        timers = timers or self.timers
        key = client_key(request)
        tx = ClientTransaction(request, asyncio.get_running_loop().create_future())
        self._waiting[key] = tx
        data = bytes(request)

        def again() -> None:
            if tx.retransmits():
                send(data)

        try:
            send(data)
            answer = await retransmit(tx.answered, None if reliable else again, timers)
        finally:
            if self._waiting.get(key) is tx:
                del self._waiting[key]
        if answer is None:
            raise TimeoutError(f"no answer to {request.method} within {timers.give_up:.0f} s")
        return answer


# ---- server transactions ------------------------------------------------------------------------


@dataclass
class ServerTransaction:
    """A request we answer (§17.2): the last answer is kept, for retransmitted requests and for Timer G."""

    request: Request
    flow: Flow
    last: bytes | None = None
    final: bool = False
    created: float = field(default_factory=time.monotonic)
    acked: asyncio.Event = field(default_factory=asyncio.Event)  # the ACK of an error answer to INVITE
    timers: Timers = RFC_TIMERS
    _repeating: asyncio.Task | None = field(default=None, repr=False)

    def respond(self, answer: Response) -> None:
        data = bytes(answer)
        self.last = data
        self.final = answer.code >= 200
        self.flow.send(data)

    def expired(self, now: float) -> bool:
        """Timer J after a final answer; KEEP_UNANSWERED_S for one that never got one."""
        return now - self.created > (KEEP_TRANSACTION_S if self.final else KEEP_UNANSWERED_S)

    def _resend(self) -> None:
        if self.last is not None:
            self.flow.send(self.last)

    async def repeat_until(self, acked: asyncio.Event, still_wanted: Callable[[], bool] = lambda: True) -> bool:
        """Repeats the last answer over UDP until `acked` is set; False after 64*T1 or when no longer wanted."""
        resend = None if self.flow.reliable else self._resend
        return await retransmit(acked.wait(), resend, self.timers, still_wanted) is not None

    def repeat_until_acked(self) -> None:
        """Timer G/H for an error answer to INVITE over UDP, in the background (§17.2.1)."""
        if self.flow.reliable or self.last is None:
            return
        self._repeating = asyncio.create_task(self.repeat_until(self.acked))
