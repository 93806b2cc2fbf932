"""The transaction layer on its own (RFC 3261 §17): retransmission timers, client and server transactions.

No sockets: a flow is a list that records what was sent, and when. The timed
tests run on an event loop whose clock jumps to the next timer instead of
waiting, so they check RFC 3261's real values (T1 = 0.5 s, T2 = 4 s, 64*T1 =
32 s) to the millisecond and take no time. One test runs on the real clock
with a tiny T1, to show the same code works there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from sipmessage import URI, Request, Response

from ivr.transports.sip.message import response
from ivr.transports.sip.transaction import (
    KEEP_TRANSACTION_S,
    KEEP_UNANSWERED_S,
    RFC_TIMERS,
    ClientTransactions,
    Flow,
    ServerTransaction,
    Timers,
    retransmit,
    schedule,
)

T = TypeVar("T")
RFC_RETRANSMISSIONS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1, then doubling, capped at T2 = 4


class JumpingClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of sleeping: timers fire exactly, at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        select = self._selector.select  # type: ignore[attr-defined]

        def jump(timeout: float | None = None) -> list:
            if timeout is None:
                raise RuntimeError("nothing scheduled and nothing ready: the test would wait forever")
            self.now += max(timeout, 0.0)
            return select(0)

        self._selector.select = jump  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now


def on_jumping_clock(test: Callable[[JumpingClockLoop], Awaitable[T]]) -> T:
    loop = JumpingClockLoop()
    try:
        return loop.run_until_complete(test(loop))
    finally:
        loop.close()


class Recorder:
    """A flow's send: what went out, at which loop time."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.sent: list[tuple[float, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append((round(self.loop.time(), 6), data))

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.sent]


def sip_request(method: str = "BYE", branch: str = "z9hG4bKtest1") -> Request:
    request = Request(method, URI.parse("sip:caller@127.0.0.1:5070"))
    request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport")
    request.headers.add("From", "<sip:ivr@127.0.0.1>;tag=ivr")
    request.headers.add("To", "<sip:caller@127.0.0.1>;tag=caller")
    request.headers.add("Call-ID", "transaction-test@ivr")
    request.headers.add("CSeq", f"7 {method}")
    request.headers.add("Content-Length", "0")
    return request


# ---- the schedule --------------------------------------------------------------------------------


def test_the_schedule_doubles_from_t1_caps_at_t2_and_ends_at_64_t1():
    times = list(schedule())
    assert times == RFC_RETRANSMISSIONS + [32.0]
    gaps = [b - a for a, b in zip([0.0] + times, times[:-1], strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_without_doubling_the_schedule_wakes_every_t1_until_64_t1():
    times = list(schedule(RFC_TIMERS, doubling=False))
    assert times == [0.5 * n for n in range(1, 65)]


def test_scaled_timers_keep_the_rfc_proportions():
    assert Timers.scaled(0.01) == Timers(0.01, 0.08, 0.64)
    assert Timers(0.5, 4.0, 32.0) == RFC_TIMERS


def test_retransmit_returns_what_it_waited_for_and_stops_repeating():
    async def scenario(loop: JumpingClockLoop) -> None:
        resent: list[float] = []
        done = loop.create_future()
        loop.call_at(5.0, done.set_result, "answer")
        assert await retransmit(done, lambda: resent.append(loop.time())) == "answer"
        assert resent == [0.5, 1.5, 3.5]
        assert loop.time() == 5.0

    on_jumping_clock(scenario)


# ---- client transactions -------------------------------------------------------------------------


def test_a_client_transaction_over_udp_retransmits_at_t1_doubling_to_t2_and_gives_up_at_64_t1():
    async def scenario(loop: JumpingClockLoop) -> None:
        sent = Recorder(loop)
        transactions = ClientTransactions()
        with pytest.raises(TimeoutError, match="no answer to BYE within 32 s"):
            await transactions.run(sip_request("BYE"), sent, reliable=False)
        assert sent.times == [0.0] + RFC_RETRANSMISSIONS  # Timer E; the first send, then ten repeats
        assert {data for _, data in sent.sent} == {bytes(sip_request("BYE"))}
        assert loop.time() == 32.0 and len(transactions) == 0  # Timer F ends it, and it is forgotten

    on_jumping_clock(scenario)


def test_a_client_transaction_over_tcp_sends_once_and_waits_64_t1():
    async def scenario(loop: JumpingClockLoop) -> None:
        sent = Recorder(loop)
        with pytest.raises(TimeoutError):
            await ClientTransactions().run(sip_request("REFER"), sent, reliable=True)
        assert sent.times == [0.0] and loop.time() == 32.0

    on_jumping_clock(scenario)


def test_the_final_answer_ends_a_client_transaction_and_later_copies_are_strays():
    async def scenario(loop: JumpingClockLoop) -> None:
        sent = Recorder(loop)
        transactions = ClientTransactions()
        request = sip_request("BYE")
        loop.call_at(2.0, transactions.on_response, response(request, 200))
        answer = await transactions.run(request, sent, reliable=False)
        assert answer.code == 200 and loop.time() == 2.0
        assert sent.times == [0.0, 0.5, 1.5]
        assert transactions.on_response(response(request, 200)) is False  # a retransmitted 200: nobody waits

    on_jumping_clock(scenario)


def test_an_invite_stops_repeating_after_a_provisional_answer_other_requests_do_not():
    async def scenario(loop: JumpingClockLoop, method: str) -> list[float]:
        sent = Recorder(loop)
        transactions = ClientTransactions()
        request = sip_request(method)
        loop.call_at(1.0, transactions.on_response, response(request, 100))
        loop.call_at(10.0, transactions.on_response, response(request, 200))
        assert (await transactions.run(request, sent, reliable=False)).code == 200
        return sent.times

    assert on_jumping_clock(lambda loop: scenario(loop, "INVITE")) == [0.0, 0.5]  # Timer A stops at the 100
    assert on_jumping_clock(lambda loop: scenario(loop, "OPTIONS")) == [0.0, 0.5, 1.5, 3.5, 7.5]  # Timer E goes on


def test_answers_go_to_the_transaction_of_their_branch_and_method():
    """A CANCEL shares its INVITE's branch (§9.1): the CSeq method tells their answers apart."""

    async def scenario(loop: JumpingClockLoop) -> None:
        transactions = ClientTransactions()
        invite, cancel = sip_request("INVITE", "z9hG4bKsame"), sip_request("CANCEL", "z9hG4bKsame")
        other = sip_request("INVITE", "z9hG4bKother")
        loop.call_at(1.0, transactions.on_response, response(cancel, 200))
        loop.call_at(2.0, transactions.on_response, response(invite, 487))
        answers = await asyncio.gather(transactions.run(invite, Recorder(loop), reliable=True),
                                       transactions.run(cancel, Recorder(loop), reliable=True))  # fmt: skip
        assert [(a.code, a.cseq.method) for a in answers] == [(487, "INVITE"), (200, "CANCEL")]
        assert transactions.on_response(response(other, 200)) is False

    on_jumping_clock(scenario)


async def test_on_the_real_clock_with_a_tiny_t1():
    sent: list[bytes] = []
    transactions = ClientTransactions(Timers.scaled(0.005))  # gives up after 0.32 s
    with pytest.raises(TimeoutError, match="no answer to OPTIONS"):
        await transactions.run(sip_request("OPTIONS"), sent.append, reliable=False)
    assert 2 <= len(sent) <= 11  # never more than the schedule allows, however late the loop wakes


# ---- server transactions -------------------------------------------------------------------------


def udp_transaction(loop: asyncio.AbstractEventLoop, transport: str = "UDP") -> tuple[ServerTransaction, Recorder]:
    sent = Recorder(loop)
    return ServerTransaction(sip_request("INVITE"), Flow(transport, ("127.0.0.1", 5070), sent)), sent


def test_a_2xx_to_invite_is_retransmitted_until_the_ack():
    async def scenario(loop: JumpingClockLoop) -> None:
        tx, sent = udp_transaction(loop)
        tx.respond(response(tx.request, 200, "ivr"))
        acked = asyncio.Event()
        loop.call_at(9.0, acked.set)
        assert await tx.repeat_until(acked) is True
        assert sent.times == [0.0, 0.5, 1.5, 3.5, 7.5]
        assert len({data for _, data in sent.sent}) == 1 and sent.sent[0][1].startswith(b"SIP/2.0 200")

    on_jumping_clock(scenario)


def test_a_2xx_nobody_acknowledges_is_given_up_after_64_t1():
    async def scenario(loop: JumpingClockLoop) -> None:
        tx, sent = udp_transaction(loop)
        tx.respond(response(tx.request, 200, "ivr"))
        assert await tx.repeat_until(asyncio.Event()) is False
        assert sent.times == [0.0] + RFC_RETRANSMISSIONS and loop.time() == 32.0

    on_jumping_clock(scenario)


def test_waiting_for_the_ack_ends_when_the_dialog_no_longer_wants_it():
    """A BYE or our hang-up while the 2xx waits for its ACK: checked at every T1 tick, also over TCP."""

    async def scenario(loop: JumpingClockLoop, transport: str) -> tuple[list[float], float]:
        tx, sent = udp_transaction(loop, transport)
        tx.respond(response(tx.request, 200, "ivr"))
        assert await tx.repeat_until(asyncio.Event(), still_wanted=lambda: loop.time() < 1.2) is False
        return sent.times, loop.time()

    assert on_jumping_clock(lambda loop: scenario(loop, "UDP")) == ([0.0, 0.5], 1.5)
    assert on_jumping_clock(lambda loop: scenario(loop, "TCP")) == ([0.0], 1.5)  # nothing repeated on TCP


def test_timer_g_repeats_an_error_answer_to_invite_until_its_ack_over_udp_only():
    async def scenario(loop: JumpingClockLoop, transport: str) -> list[float]:
        tx, sent = udp_transaction(loop, transport)
        tx.respond(response(tx.request, 486, "ivr"))
        tx.repeat_until_acked()  # in the background
        loop.call_at(4.0, tx.acked.set)
        await asyncio.sleep(40)
        return sent.times

    assert on_jumping_clock(lambda loop: scenario(loop, "UDP")) == [0.0, 0.5, 1.5, 3.5]
    assert on_jumping_clock(lambda loop: scenario(loop, "TLS")) == [0.0]


def test_timer_j_forgets_an_answered_transaction_after_32_s_and_an_unanswered_one_after_300_s():
    async def scenario(loop: JumpingClockLoop) -> None:
        tx, _ = udp_transaction(loop)
        assert not tx.expired(tx.created + KEEP_TRANSACTION_S + 1)  # no final answer yet
        assert tx.expired(tx.created + KEEP_UNANSWERED_S + 1)
        tx.respond(response(tx.request, 100))
        assert not tx.final
        tx.respond(response(tx.request, 404, "ivr"))
        assert tx.final and tx.expired(tx.created + KEEP_TRANSACTION_S + 1)

    on_jumping_clock(scenario)


def test_a_response_echoes_what_its_transaction_is_matched_by():
    answer: Response = response(sip_request("BYE", "z9hG4bKecho"), 200)
    assert answer.via[0].parameters.get("branch") == "z9hG4bKecho" and answer.cseq.method == "BYE"
