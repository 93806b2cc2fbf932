"""KPIs come from the event log alone: drive the real ACD on a fake clock, then fold its events."""

from __future__ import annotations

from typing import Any

from ivr.queue.acd import Acd
from ivr.queue.kpi import containment, queue_kpis
from ivr.queue.model import AgentState, QueuedCall
from ivr.settings import AgentUser, QueueSettings
from ivr.storage import CallEvent

T = "+4930123456"
Q = "muster-general"


class Link:
    async def send(self, message: dict[str, Any]) -> None: ...
    async def send_audio(self, pcm16k: bytes) -> None: ...
    async def agent_connected(self, agent) -> None: ...
    async def agent_audio(self, pcm16k: bytes) -> None: ...
    async def hold(self, on: bool) -> None: ...
    async def agent_hung_up(self) -> None: ...
    async def requeued(self, reason: str) -> None: ...


async def test_service_level_asa_aht_and_abandon_rate_from_the_log():
    now = [1000.0]
    log: list[CallEvent] = []

    async def sink(event: CallEvent) -> None:
        log.append(event)

    acd = Acd(QueueSettings(ring_timeout_s=60), sink, clock=lambda: now[0])
    agent = await acd.login(AgentUser("anna", "scrypt$x", "agent", (T,), (Q,)), Link())
    await acd.set_state(agent, AgentState.AVAILABLE)

    # Call 1: answered after 10 s (within 20 s), talks 100 s.
    await acd.enqueue(QueuedCall("c1", T, Q, Link()))
    now[0] += 10
    await acd.accept(agent, "c1")
    # Calls 2 and 3 arrive while the agent talks; 3 gives up after 2 s (a short abandon), 2 waits.
    await acd.enqueue(QueuedCall("c2", T, Q, Link()))
    await acd.enqueue(QueuedCall("c3", T, Q, Link()))
    now[0] += 2
    await acd.leave("c3")
    now[0] += 98
    await acd.hang_up(agent)
    await acd.wrap_up_done(agent)  # c2 rings now, after 100 s of waiting
    now[0] += 5
    await acd.accept(agent, "c2")
    now[0] += 50
    await acd.leave("c2")  # the caller hangs up: COMPLETECALLER
    # Call 4 waits 30 s and abandons (counts against the service level).
    await acd.wrap_up_done(agent)
    await acd.set_state(agent, AgentState.BREAK)
    await acd.enqueue(QueuedCall("c4", T, Q, Link()))
    now[0] += 30
    await acd.leave("c4")

    (k,) = queue_kpis(log, threshold_s=20)
    assert (k.tenant, k.queue) == (T, Q)
    assert (k.offered, k.answered, k.abandoned, k.short_abandons) == (4, 2, 2, 1)
    assert k.asa_s == (10 + 105) / 2
    assert k.aht_s == (100 + 50) / 2
    assert k.abandon_rate == 0.5
    assert k.service_level == round(1 / 3, 3)  # c1 in time; c2 late; c4 abandoned late; c3 short, not counted


def test_containment_counts_calls_without_a_handoff():
    events = [
        CallEvent("a", T, 1, "CALL_START"),
        CallEvent("b", T, 2, "CALL_START"),
        CallEvent("b", T, 3, "HANDOFF", {"reason": "caller_request"}),
        CallEvent("c", T, 4, "CALL_START"),
        CallEvent("d", "+442071234567", 5, "CALL_START"),
    ]
    assert containment(events) == {T: round(2 / 3, 3), "+442071234567": 1.0}
