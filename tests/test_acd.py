"""Automatic call distribution (ivr/queue/acd.py): who is offered which call, and what is logged.

Everything runs in-process on fakes: a FakeAgentLink per desktop collects the
messages and audio the ACD sends, a FakeCallerLink per call records what the
call session is told, the event sink is a list of CallEvents, and the clock is
a mutable float the tests move forward. Ring timeouts use real (tiny) timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ivr.queue.acd import Acd
from ivr.queue.model import NO_CALL, AcdError, Agent, AgentState, QueuedCall
from ivr.settings import AgentUser, QueueSettings
from ivr.storage import CallEvent

T100, T200 = "100", "200"


# ---- fakes -------------------------------------------------------------------


class FakeAgentLink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.audio: list[bytes] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def send_audio(self, pcm16k: bytes) -> None:
        self.audio.append(pcm16k)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def offers(self) -> list[str]:
        return [m["call_id"] for m in self.of_type("offer")]


class FakeCallerLink:
    def __init__(self) -> None:
        self.connected: list[Agent] = []
        self.audio: list[bytes] = []
        self.holds: list[bool] = []
        self.hung_up = 0
        self.requeues: list[str] = []

    async def agent_connected(self, agent: Agent) -> None:
        self.connected.append(agent)

    async def agent_audio(self, pcm16k: bytes) -> None:
        self.audio.append(pcm16k)

    async def hold(self, on: bool) -> None:
        self.holds.append(on)

    async def agent_hung_up(self) -> None:
        self.hung_up += 1

    async def requeued(self, reason: str) -> None:
        self.requeues.append(reason)


class Rig:
    """An Acd with a list as event log and a clock the test moves."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("ring_timeout_s", 60.0)  # long enough never to fire unless a test wants it to
        self.now = [1000.0]
        self.events: list[CallEvent] = []
        self.acd = Acd(QueueSettings(**settings), self._sink, clock=lambda: self.now[0])
        self.links: dict[str, FakeAgentLink] = {}
        self.callers: dict[str, FakeCallerLink] = {}

    async def _sink(self, event: CallEvent) -> None:
        self.events.append(event)

    def tick(self, seconds: float) -> None:
        self.now[0] += seconds

    def named(self, name: str, call_id: str | None = None) -> list[CallEvent]:
        return [e for e in self.events if e.event == name and (call_id is None or e.call_id == call_id)]

    def one(self, name: str, call_id: str | None = None) -> CallEvent:
        found = self.named(name, call_id)
        assert len(found) == 1, (name, call_id, [(e.event, e.call_id) for e in self.events])
        return found[0]

    async def agent(
        self,
        username: str,
        tenants: tuple[str, ...] = (T100,),
        skills: tuple[str, ...] = ("default",),
        state: AgentState | None = AgentState.AVAILABLE,
        advance: float = 1.0,
    ) -> Agent:
        """Log an agent in and (by default) make them available; the clock moves on afterwards."""
        link = FakeAgentLink()
        self.links[username] = link
        agent = await self.acd.login(AgentUser(username, "scrypt$unused", "agent", tenants, skills), link)
        if state is not None and state != AgentState.OFFLINE:
            await self.acd.set_state(agent, state)
        self.tick(advance)
        return agent

    async def call(self, call_id: str, tenant: str = T100, queue: str = "default", priority: int = 0,
                   advance: float = 1.0) -> int:  # fmt: skip
        link = FakeCallerLink()
        self.callers[call_id] = link
        position = await self.acd.enqueue(QueuedCall(call_id, tenant, queue, link, priority=priority))
        self.tick(advance)
        return position

    async def connect(self, agent: Agent, call_id: str) -> QueuedCall:
        assert agent.state == AgentState.RINGING and agent.call is not None and agent.call.call_id == call_id
        return await self.acd.accept(agent, call_id)


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def ringing(agent: Agent) -> str | None:
    return agent.call.call_id if agent.state == AgentState.RINGING and agent.call else None


# ---- logging in, states --------------------------------------------------------


async def test_login_starts_offline_and_agent_events_have_no_call_id() -> None:
    rig = Rig()
    agent = await rig.agent("anna", state=None)
    assert agent.state == AgentState.OFFLINE
    assert rig.links["anna"].messages == [{"type": "state", "state": "offline"}]
    login = rig.one("AGENTLOGIN")
    assert (login.call_id, login.tenant, login.data) == (NO_CALL, "*", {"agent": "anna"})
    assert NO_CALL == "NONE"

    await rig.acd.set_state(agent, AgentState.AVAILABLE)
    await rig.acd.set_state(agent, AgentState.BREAK)
    await rig.acd.set_state(agent, AgentState.AVAILABLE)
    assert [e.event for e in rig.events] == ["AGENTLOGIN", "PAUSE", "UNPAUSE"]
    assert all(e.call_id == "NONE" and e.data["agent"] == "anna" for e in rig.events)
    assert [m["state"] for m in rig.links["anna"].of_type("state")] == ["offline", "available", "break", "available"]

    await rig.acd.logout(agent)
    logoff = rig.one("AGENTLOGOFF")
    assert (logoff.call_id, logoff.data) == ("NONE", {"agent": "anna", "reason": "logout"})
    assert "anna" not in rig.acd.agents


async def test_setting_the_same_state_again_logs_nothing() -> None:
    rig = Rig()
    agent = await rig.agent("anna", state=AgentState.BREAK)
    await rig.acd.set_state(agent, AgentState.BREAK)
    assert len(rig.named("PAUSE")) == 1


@pytest.mark.parametrize(
    "state", [AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP, AgentState.NOT_RESPONDING]
)
async def test_states_that_follow_from_calls_cannot_be_chosen(state: AgentState) -> None:
    rig = Rig()
    agent = await rig.agent("anna")
    with pytest.raises(AcdError):
        await rig.acd.set_state(agent, state)
    assert agent.state == AgentState.AVAILABLE


async def test_state_cannot_change_while_ringing_or_on_call() -> None:
    rig = Rig()
    agent = await rig.agent("anna")
    await rig.call("c1")
    with pytest.raises(AcdError):
        await rig.acd.set_state(agent, AgentState.BREAK)
    await rig.connect(agent, "c1")
    with pytest.raises(AcdError):
        await rig.acd.set_state(agent, AgentState.OFFLINE)
    assert agent.state == AgentState.ON_CALL


# ---- which agent -------------------------------------------------------------------


async def test_longest_idle_agent_gets_the_offer_and_the_other_one_next() -> None:
    rig = Rig()
    anna = await rig.agent("anna")  # available first
    bert = await rig.agent("bert")
    await rig.call("c1")
    assert ringing(anna) == "c1" and bert.state == AgentState.AVAILABLE
    assert rig.links["anna"].offers() == ["c1"] and rig.links["bert"].offers() == []
    offer = rig.links["anna"].of_type("offer")[0]
    assert (offer["tenant"], offer["queue"], offer["priority"], offer["ring_timeout_s"]) == (T100, "default", 0, 60.0)

    await rig.connect(anna, "c1")
    rig.tick(30)
    await rig.acd.hang_up(anna)
    await rig.acd.wrap_up_done(anna)  # anna is idle again, but only since now: bert has waited longer
    assert anna.state == AgentState.AVAILABLE
    await rig.call("c2")
    assert ringing(bert) == "c2" and anna.state == AgentState.AVAILABLE
    await rig.call("c3")
    assert ringing(anna) == "c3"


async def test_ringing_is_an_offer_not_yet_answered() -> None:
    """What the queue leg asks to play music instead of a wait announcement (issue 18)."""
    rig = Rig()
    await rig.call("c0")  # nobody there: waiting, not ringing
    assert not rig.acd.ringing("c0")
    anna = await rig.agent("anna")  # takes c0 at once
    assert rig.acd.ringing("c0")
    await rig.connect(anna, "c0")
    assert not rig.acd.ringing("c0") and not rig.acd.ringing("no-such-call")


async def test_break_and_offline_agents_get_no_offers() -> None:
    rig = Rig()
    anna = await rig.agent("anna", state=AgentState.BREAK)
    bert = await rig.agent("bert", state=None)
    await rig.call("c1")
    assert rig.links["anna"].offers() == [] and rig.links["bert"].offers() == []
    assert rig.acd.position("c1") == 1
    await rig.acd.set_state(anna, AgentState.AVAILABLE)  # coming back from break takes the waiting call
    assert ringing(anna) == "c1"
    assert bert.state == AgentState.OFFLINE


# ---- queue order -------------------------------------------------------------------


async def test_higher_priority_is_offered_before_an_older_normal_call() -> None:
    rig = Rig()
    await rig.call("old", advance=30)
    await rig.call("vip", priority=5)
    assert [c.call_id for c in rig.acd.waiting(T100, "default")] == ["vip", "old"]
    assert rig.acd.position("vip") == 1 and rig.acd.position("old") == 2
    anna = await rig.agent("anna")
    assert ringing(anna) == "vip"
    bert = await rig.agent("bert")
    assert ringing(bert) == "old"


async def test_equal_priority_is_first_in_first_out() -> None:
    rig = Rig()
    positions = [await rig.call(f"c{i}") for i in range(1, 5)]
    assert positions == [1, 2, 3, 4]
    agents = [await rig.agent(name) for name in ("anna", "bert", "carl")]
    assert [ringing(a) for a in agents] == ["c1", "c2", "c3"]
    assert rig.acd.position("c4") == 4  # ringing calls still count: an offer may come back


async def test_same_entry_time_keeps_order_of_entry() -> None:
    rig = Rig()
    await rig.call("c1", advance=0)
    await rig.call("c2", advance=0)
    await rig.call("c3", advance=0)
    assert [c.call_id for c in rig.acd.waiting(T100, "default")] == ["c1", "c2", "c3"]


async def test_call_of_a_lost_agent_goes_to_the_head_of_the_queue() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1")
    await rig.connect(anna, "c1")
    rig.tick(20)
    await rig.call("c2", priority=9)  # even a higher priority waits behind the dumped caller
    await rig.call("c3")
    await rig.acd.logout(anna)

    assert rig.callers["c1"].requeues == ["agent_lost"]
    dump = rig.one("AGENTDUMP", "c1")
    assert dump.data["agent"] == "anna" and dump.data["reason"] == "logout" and dump.data["queue"] == "default"
    assert dump.data["calltime"] == 22.0
    assert rig.one("AGENTLOGOFF").data == {"agent": "anna", "reason": "logout"}
    assert [c.call_id for c in rig.acd.waiting(T100, "default")] == ["c1", "c2", "c3"]
    assert rig.acd.position("c1") == 1

    bert = await rig.agent("bert")
    assert ringing(bert) == "c1"


async def test_lost_call_goes_to_another_agent_first_and_back_to_the_lost_one_when_they_return() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert", state=AgentState.BREAK)
    await rig.call("c1")
    await rig.connect(anna, "c1")
    await rig.acd.logout(anna, reason="network")
    assert rig.one("AGENTDUMP").data["reason"] == "network"
    await rig.acd.set_state(bert, AgentState.AVAILABLE)
    assert ringing(bert) == "c1"  # the head of the queue, to whoever is free
    await rig.acd.decline(bert, "c1")
    anna2 = await rig.agent("anna")  # back (new desktop), and chose available: the caller is hers again
    assert ringing(anna2) == "c1"


async def test_ringing_agent_logging_out_gives_the_call_to_the_next_agent() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("c1")
    assert ringing(anna) == "c1"
    await rig.acd.logout(anna)
    assert ringing(bert) == "c1"
    assert rig.named("AGENTDUMP") == [] and rig.callers["c1"].requeues == []


# ---- skills and tenants --------------------------------------------------------------


async def test_agent_gets_offers_only_for_seen_tenants_and_skilled_queues() -> None:
    rig = Rig()
    anna = await rig.agent("anna", tenants=(T100,), skills=("default",))
    await rig.call("other-tenant", tenant=T200)
    await rig.call("other-queue", tenant=T100, queue="billing")
    assert anna.state == AgentState.AVAILABLE and rig.links["anna"].offers() == []

    bert = await rig.agent("bert", tenants=(T200,), skills=("billing",))  # neither tenant 200/default nor 100/billing
    assert bert.state == AgentState.AVAILABLE and rig.links["bert"].offers() == []

    carl = await rig.agent("carl", tenants=(T200,), skills=("default",))
    assert ringing(carl) == "other-tenant"
    dora = await rig.agent("dora", tenants=("*",), skills=("billing",))
    assert ringing(dora) == "other-queue"
    assert rig.links["anna"].offers() == [] and rig.links["bert"].offers() == []


async def test_an_agent_without_skills_takes_every_queue_of_their_tenants() -> None:
    rig = Rig()
    emma = await rig.agent("emma", tenants=(T100,), skills=())
    await rig.call("c1", tenant=T100, queue="billing")
    assert ringing(emma) == "c1"
    await rig.call("c2", tenant=T200, queue="billing")
    assert rig.acd.staffed(T100, "anything") == 1 and rig.acd.staffed(T200, "billing") == 0


async def test_staffed_counts_agents_who_see_the_tenant_have_the_skill_and_work() -> None:
    rig = Rig()
    await rig.agent("avail", tenants=(T100,))
    await rig.agent("all-tenants", tenants=("*",))
    await rig.agent("two-skills", tenants=(T200, T100), skills=("billing", "default"))
    await rig.agent("on-break", state=AgentState.BREAK)
    await rig.agent("logged-in-offline", state=None)
    await rig.agent("chose-offline", state=AgentState.OFFLINE)
    await rig.agent("other-tenant", tenants=(T200,))
    await rig.agent("other-skill", skills=("billing",))
    assert rig.acd.staffed(T100, "default") == 3
    assert rig.acd.staffed(T100, "billing") == 2  # two-skills, other-skill
    assert rig.acd.staffed(T200, "default") == 3  # all-tenants, two-skills, other-tenant
    assert rig.acd.staffed("300", "default") == 1  # all-tenants

    await rig.call("c1")  # ringing, then on call, then wrap-up: still staffed
    ringer = next(a for a in rig.acd.agents.values() if a.state == AgentState.RINGING)
    assert rig.acd.staffed(T100, "default") == 3
    await rig.connect(ringer, "c1")
    assert rig.acd.staffed(T100, "default") == 3
    await rig.acd.hang_up(ringer)
    assert ringer.state == AgentState.WRAP_UP and rig.acd.staffed(T100, "default") == 3


async def test_snapshot_shows_only_the_tenants_a_supervisor_sees() -> None:
    rig = Rig()
    await rig.agent("anna", tenants=(T100,), skills=("billing",))
    await rig.agent("bert", tenants=(T200,), skills=("billing",))
    await rig.call("c1", tenant=T100, advance=12)
    await rig.call("c2", tenant=T200)
    supervisor = AgentUser("sup", "scrypt$unused", "supervisor", (T100,))
    snap = rig.acd.snapshot(supervisor)
    assert [(q["tenant"], q["queue"], q["waiting"], q["staffed"]) for q in snap["queues"]] == [(T100, "default", 1, 0)]
    assert snap["queues"][0]["longest_wait_s"] == 13.0
    assert [a["username"] for a in snap["agents"]] == ["anna"]


# ---- positions and expected wait ---------------------------------------------------------


async def test_estimated_wait_is_none_when_nobody_staffs_the_queue() -> None:
    rig = Rig()
    await rig.agent("on-break", state=AgentState.BREAK)
    await rig.agent("other-skill", skills=("billing",))
    assert await rig.call("c1") == 1
    assert rig.acd.estimated_wait("c1") is None
    assert rig.acd.estimated_wait("unknown") is None
    assert rig.acd.position("unknown") == 0


async def test_estimated_wait_is_zero_when_a_free_agent_exists_for_the_first_caller() -> None:
    rig = Rig(default_handle_time_s=100.0)
    await rig.agent("anna")
    bert = await rig.agent("bert")
    assert await rig.call("c1") == 1  # rings at anna; bert is still free
    assert bert.state == AgentState.AVAILABLE
    assert rig.acd.estimated_wait("c1") == 0.0


async def test_estimated_wait_of_a_call_ringing_at_the_only_agent_is_zero() -> None:
    """The caller's phone is ringing at an agent right now: no waiting for a whole handle time."""
    rig = Rig(default_handle_time_s=100.0)
    anna = await rig.agent("anna")
    assert await rig.call("c1") == 1
    assert ringing(anna) == "c1"
    assert rig.acd.estimated_wait("c1") == 0.0
    assert await rig.call("c2") == 2
    assert rig.acd.estimated_wait("c2") == 100.0  # anna serves c1 first
    assert await rig.call("c3") == 3
    assert rig.acd.estimated_wait("c3") == 200.0


async def test_positions_and_estimated_wait_grow_with_position() -> None:
    rig = Rig(default_handle_time_s=100.0)
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("a")
    await rig.call("b")
    await rig.connect(anna, "a")
    await rig.connect(bert, "b")  # two staffed agents, both busy
    positions = [await rig.call(f"c{i}") for i in range(1, 6)]
    assert positions == [1, 2, 3, 4, 5]
    assert [rig.acd.position(f"c{i}") for i in range(1, 6)] == [1, 2, 3, 4, 5]
    # rounds = floor((position - 1) / staffed) + 1, each taking the handle time
    assert [rig.acd.estimated_wait(f"c{i}") for i in range(1, 6)] == [100.0, 100.0, 200.0, 200.0, 300.0]
    assert rig.acd.position("a") == 0  # connected calls do not wait

    # the average handle time of completed calls replaces the default
    rig.now[0] = anna.call.connected_at + 40
    await rig.acd.hang_up(anna)
    rig.now[0] = bert.call.connected_at + 60
    await rig.acd.hang_up(bert)
    assert rig.acd.handle_time(T100, "default") == 50.0
    assert rig.acd.handle_time(T100, "billing") == 100.0  # other queues keep the default
    assert rig.acd.handle_time(T200, "default") == 100.0
    assert [rig.acd.estimated_wait(f"c{i}") for i in range(1, 6)] == [50.0, 50.0, 100.0, 100.0, 150.0]


async def test_handle_time_samples_are_at_least_one_second() -> None:
    rig = Rig(default_handle_time_s=100.0)
    anna = await rig.agent("anna")
    await rig.call("c1", advance=0)
    await rig.connect(anna, "c1")
    await rig.acd.hang_up(anna)  # no time passed
    assert rig.acd.handle_time(T100, "default") == 1.0


async def test_position_moves_up_when_callers_ahead_leave() -> None:
    rig = Rig()
    for i in range(1, 4):
        await rig.call(f"c{i}")
    await rig.acd.leave("c1")
    assert rig.acd.position("c2") == 1 and rig.acd.position("c3") == 2
    assert rig.acd.position("c1") == 0


# ---- ringing -----------------------------------------------------------------------------


async def test_ring_timeout_sets_agent_not_responding_and_offers_the_next_agent() -> None:
    rig = Rig(ring_timeout_s=0.05)
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("c1", advance=0)
    assert ringing(anna) == "c1"
    rig.tick(15)
    await wait_until(lambda: anna.state == AgentState.NOT_RESPONDING)

    assert ringing(bert) == "c1"
    assert rig.links["anna"].of_type("revoked") == [{"type": "revoked", "call_id": "c1", "reason": "ring_timeout"}]
    rna = rig.one("RINGNOANSWER", "c1")
    assert rna.data == {"queue": "default", "agent": "anna", "ringtime": 15.0, "declined": False}
    assert rig.acd.staffed(T100, "default") == 1  # a not-responding agent does not staff the queue
    await rig.connect(bert, "c1")
    await asyncio.sleep(0.1)  # bert's ring timer was cancelled by accepting
    assert bert.state == AgentState.ON_CALL and len(rig.named("RINGNOANSWER")) == 1

    # back to available: not offered the call they let ring out again, but new ones
    await rig.acd.set_state(anna, AgentState.AVAILABLE)
    assert anna.state == AgentState.AVAILABLE and rig.links["anna"].offers() == ["c1"]
    await rig.call("c2")
    assert ringing(anna) == "c2"


async def test_a_call_nobody_answers_keeps_waiting() -> None:
    rig = Rig(ring_timeout_s=0.05)
    anna = await rig.agent("anna")
    await rig.call("c1")
    await wait_until(lambda: anna.state == AgentState.NOT_RESPONDING)
    call = rig.acd.calls["c1"]
    assert call.agent is None and rig.acd.position("c1") == 1  # still waiting, not dropped
    await rig.acd.set_state(anna, AgentState.AVAILABLE)  # back at the desk: it rings again
    assert anna.state == AgentState.RINGING and rig.links["anna"].offers() == ["c1", "c1"]


async def test_decline_offers_the_call_to_the_next_agent_but_never_again_to_the_decliner() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("c1", advance=2)
    await rig.acd.decline(anna, "c1")

    rna = rig.one("RINGNOANSWER", "c1")
    assert rna.data == {"queue": "default", "agent": "anna", "ringtime": 2.0, "declined": True}
    assert anna.state == AgentState.AVAILABLE and anna.call is None
    assert ringing(bert) == "c1"

    await rig.acd.decline(bert, "c1")
    assert [e.data["declined"] for e in rig.named("RINGNOANSWER")] == [True, True]
    assert anna.state == bert.state == AgentState.AVAILABLE
    assert rig.links["anna"].offers() == ["c1"] and rig.links["bert"].offers() == ["c1"]
    assert rig.acd.calls["c1"].agent is None and rig.acd.position("c1") == 1

    await rig.call("c2")  # others' calls still come
    assert ringing(anna) == "c2"


async def test_decline_or_accept_of_a_call_not_offered_raises() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("c1")
    with pytest.raises(AcdError):
        await rig.acd.accept(bert, "c1")
    with pytest.raises(AcdError):
        await rig.acd.decline(bert, "c1")
    with pytest.raises(AcdError):
        await rig.acd.accept(anna, "nope")
    assert ringing(anna) == "c1" and bert.state == AgentState.AVAILABLE
    assert rig.named("RINGNOANSWER") == []


async def test_decline_after_accepting_is_refused() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1")
    await rig.connect(anna, "c1")
    with pytest.raises(AcdError):
        await rig.acd.decline(anna, "c1")
    assert anna.state == AgentState.ON_CALL and rig.acd.calls["c1"].agent == "anna"
    assert rig.named("RINGNOANSWER") == []


# ---- a connected call --------------------------------------------------------------------


async def test_accept_connects_and_logs_holdtime() -> None:
    rig = Rig()
    await rig.call("c1", advance=25)  # nobody there yet
    anna = await rig.agent("anna", advance=3)  # offered at once, answers after 3 s
    call = await rig.connect(anna, "c1")
    assert call.call_id == "c1" and call.connected_at == rig.now[0]
    assert anna.state == AgentState.ON_CALL and anna.call is call
    assert rig.links["anna"].of_type("connected") == [{"type": "connected", "call_id": "c1"}]
    assert rig.callers["c1"].connected == [anna]
    connect = rig.one("CONNECT", "c1")
    assert connect.tenant == T100
    assert connect.data == {"queue": "default", "agent": "anna", "holdtime": 28.0, "ringtime": 3.0}
    enter = rig.one("ENTERQUEUE", "c1")
    assert enter.data == {"queue": "default", "position": 1, "priority": 0}
    with pytest.raises(AcdError):
        await rig.acd.accept(anna, "c1")  # not twice


async def test_agent_hang_up_completes_and_wrap_up_done_brings_the_next_call() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1", advance=4)
    await rig.connect(anna, "c1")
    rig.tick(90)
    await rig.call("c2")
    assert rig.links["anna"].offers() == ["c1"]

    await rig.acd.hang_up(anna)
    done = rig.one("COMPLETEAGENT", "c1")
    assert done.data == {"queue": "default", "agent": "anna", "holdtime": 4.0, "calltime": 91.0}
    assert rig.callers["c1"].hung_up == 1
    assert anna.state == AgentState.WRAP_UP and anna.call is not None and anna.call.call_id == "c1"
    assert "c1" not in rig.acd.calls
    assert rig.links["anna"].offers() == ["c1"]  # nothing during wrap-up
    with pytest.raises(AcdError):
        await rig.acd.set_state(anna, AgentState.AVAILABLE)
    with pytest.raises(AcdError):
        await rig.acd.set_state(anna, AgentState.BREAK)
    with pytest.raises(AcdError):
        await rig.acd.hang_up(anna)  # not on a call any more

    wrapped = await rig.acd.wrap_up_done(anna)
    assert wrapped.call_id == "c1"
    assert ringing(anna) == "c2" and rig.links["anna"].offers() == ["c1", "c2"]
    with pytest.raises(AcdError):
        await rig.acd.wrap_up_done(anna)


async def test_wrap_up_ends_by_itself_after_wrap_up_s() -> None:
    rig = Rig(wrap_up_s=0.05)
    anna = await rig.agent("anna")
    await rig.call("c1")
    await rig.connect(anna, "c1")
    await rig.call("c2")
    await rig.acd.hang_up(anna)
    assert anna.state == AgentState.WRAP_UP
    await wait_until(lambda: anna.state == AgentState.RINGING)
    assert ringing(anna) == "c2"


async def test_caller_leaving_while_waiting_is_abandon_with_positions_and_waittime() -> None:
    rig = Rig()
    await rig.call("c1", advance=5)
    await rig.call("c2", advance=5)
    await rig.call("c3", advance=5)
    await rig.acd.leave("c1")
    rig.now[0] = 1010.0 + 60  # c3 entered at 1010
    await rig.acd.leave("c3")

    first = rig.one("ABANDON", "c1")
    assert first.data == {"queue": "default", "position": 1, "origposition": 1, "waittime": 15.0}
    abandon = rig.one("ABANDON", "c3")
    assert abandon.tenant == T100
    assert abandon.data == {"queue": "default", "position": 2, "origposition": 3, "waittime": 60.0}
    assert [c.call_id for c in rig.acd.waiting(T100, "default")] == ["c2"]
    await rig.acd.leave("c3")  # twice: nothing more
    assert len(rig.named("ABANDON")) == 2


async def test_caller_leaving_while_ringing_revokes_the_offer() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1", advance=7)
    assert ringing(anna) == "c1"
    await rig.acd.leave("c1")
    assert rig.links["anna"].of_type("revoked") == [{"type": "revoked", "call_id": "c1", "reason": "abandon"}]
    assert anna.state == AgentState.AVAILABLE and anna.call is None
    assert rig.one("ABANDON", "c1").data == {"queue": "default", "position": 1, "origposition": 1, "waittime": 7.0}
    await rig.call("c2")
    assert ringing(anna) == "c2"


async def test_connected_caller_hanging_up_completes_the_call() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1", advance=2)
    await rig.connect(anna, "c1")
    rig.tick(45)
    await rig.acd.leave("c1")
    done = rig.one("COMPLETECALLER", "c1")
    assert done.data == {"queue": "default", "agent": "anna", "holdtime": 2.0, "calltime": 45.0}
    assert rig.named("ABANDON") == []
    assert rig.links["anna"].of_type("ended") == [{"type": "ended", "call_id": "c1", "by": "caller"}]
    assert anna.state == AgentState.WRAP_UP
    assert rig.callers["c1"].hung_up == 0
    assert rig.acd.handle_time(T100, "default") == 45.0
    await rig.acd.wrap_up_done(anna)
    assert anna.state == AgentState.AVAILABLE


async def test_exit_with_key_and_exit_with_timeout() -> None:
    rig = Rig()
    await rig.call("c1", advance=30)
    await rig.acd.leave("c1", "EXITWITHKEY", key="1")
    assert rig.one("EXITWITHKEY", "c1").data == {"queue": "default", "position": 1, "origposition": 1,
                                                 "waittime": 30.0, "key": "1"}  # fmt: skip

    anna = await rig.agent("anna")
    await rig.call("c2", advance=600)
    await rig.acd.leave("c2", "EXITWITHTIMEOUT")
    assert rig.one("EXITWITHTIMEOUT", "c2").data["waittime"] == 600.0
    assert rig.links["anna"].of_type("revoked") == [{"type": "revoked", "call_id": "c2", "reason": "exitwithtimeout"}]
    assert anna.state == AgentState.AVAILABLE
    assert rig.named("ABANDON") == [] and rig.acd.calls == {}


# ---- transfer ------------------------------------------------------------------------------


async def test_transfer_requeues_the_caller_in_the_other_queue() -> None:
    rig = Rig()
    anna = await rig.agent("anna", skills=("default",))
    bert = await rig.agent("bert", skills=("billing",), state=AgentState.BREAK)
    await rig.call("c1", priority=3, advance=5)
    await rig.connect(anna, "c1")
    rig.tick(30)
    await rig.acd.transfer(anna, "billing")

    tr = rig.one("TRANSFER", "c1")
    assert tr.data == {"queue": "default", "agent": "anna", "to_queue": "billing", "holdtime": 5.0, "calltime": 30.0}
    assert rig.callers["c1"].requeues == ["transfer:billing"]
    enters = rig.named("ENTERQUEUE", "c1")
    assert [e.data["queue"] for e in enters] == ["default", "billing"]
    assert enters[1].data == {"queue": "billing", "position": 1, "priority": 3, "transferred": True}
    assert anna.state == AgentState.WRAP_UP
    assert rig.links["anna"].of_type("ended") == [{"type": "ended", "call_id": "c1", "by": "transfer"}]
    assert [c.call_id for c in rig.acd.waiting(T100, "billing")] == ["c1"]
    assert rig.acd.waiting(T100, "default") == []
    assert rig.acd.handle_time(T100, "default") == 30.0

    await rig.acd.set_state(bert, AgentState.AVAILABLE)
    assert ringing(bert) == "c1"
    offer = rig.links["bert"].of_type("offer")[0]
    assert offer["queue"] == "billing" and offer["priority"] == 3
    await rig.connect(bert, "c1")
    assert rig.callers["c1"].connected == [anna, bert]
    await rig.acd.wrap_up_done(anna)
    assert anna.state == AgentState.AVAILABLE and rig.links["anna"].offers() == ["c1"]


async def test_transfer_to_a_waiting_agent_offers_at_once_and_needs_a_connected_call() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert", skills=("billing",))
    with pytest.raises(AcdError):
        await rig.acd.transfer(anna, "billing")
    await rig.call("c1")
    with pytest.raises(AcdError):
        await rig.acd.transfer(anna, "billing")  # ringing, not connected
    await rig.connect(anna, "c1")
    await rig.acd.transfer(anna, "billing")
    assert ringing(bert) == "c1"


async def test_transferring_agent_leaving_during_wrap_up_does_not_touch_the_transferred_call() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert", skills=("billing",))
    await rig.call("c1")
    await rig.connect(anna, "c1")
    await rig.acd.transfer(anna, "billing")
    await rig.connect(bert, "c1")
    await rig.acd.logout(anna)

    assert bert.state == AgentState.ON_CALL and rig.acd.calls["c1"].agent == "bert"
    assert rig.acd.calls["c1"].connected_at is not None
    assert rig.named("AGENTDUMP") == []
    assert rig.callers["c1"].requeues == ["transfer:billing"]


async def test_transferring_agent_leaving_during_wrap_up_keeps_the_other_offer_ringing() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert", skills=("billing",))
    await rig.call("c1")
    await rig.connect(anna, "c1")
    await rig.acd.transfer(anna, "billing")
    assert ringing(bert) == "c1"
    await rig.acd.logout(anna)
    assert ringing(bert) == "c1" and rig.acd.calls["c1"].agent == "bert"
    await rig.connect(bert, "c1")


# ---- hold, mute, audio ----------------------------------------------------------------------


async def test_hold_stops_audio_both_ways() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1")
    caller, desk = rig.callers["c1"], rig.links["anna"]
    await rig.acd.agent_audio(anna, b"early")  # ringing: nothing flows yet
    await rig.acd.caller_audio("c1", b"early")
    assert caller.audio == [] and desk.audio == []
    await rig.connect(anna, "c1")

    await rig.acd.agent_audio(anna, b"a1")
    await rig.acd.caller_audio("c1", b"c1")
    await rig.acd.hold(anna, True)
    await rig.acd.hold(anna, True)  # already held: nothing more
    assert caller.holds == [True]
    assert rig.one("HOLD", "c1").data == {"queue": "default", "agent": "anna"}
    await rig.acd.agent_audio(anna, b"a2")
    await rig.acd.caller_audio("c1", b"c2")
    await rig.acd.caller_event("c1", {"type": "transcript", "text": "hello?"})
    assert caller.audio == [b"a1"] and desk.audio == [b"c1"]
    assert desk.of_type("transcript") == []

    await rig.acd.hold(anna, False)
    assert caller.holds == [True, False]
    assert len(rig.named("UNHOLD", "c1")) == 1
    await rig.acd.agent_audio(anna, b"a3")
    await rig.acd.caller_audio("c1", b"c3")
    await rig.acd.caller_event("c1", {"type": "transcript", "text": "there"})
    assert caller.audio == [b"a1", b"a3"] and desk.audio == [b"c1", b"c3"]
    assert desk.of_type("transcript") == [{"type": "transcript", "text": "there", "call_id": "c1"}]


async def test_mute_stops_only_the_agents_audio() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    await rig.call("c1")
    await rig.connect(anna, "c1")
    caller, desk = rig.callers["c1"], rig.links["anna"]
    rig.acd.mute(anna, True)
    await rig.acd.agent_audio(anna, b"a1")
    await rig.acd.caller_audio("c1", b"c1")
    assert caller.audio == [] and desk.audio == [b"c1"]
    rig.acd.mute(anna, False)
    await rig.acd.agent_audio(anna, b"a2")
    assert caller.audio == [b"a2"]


async def test_hold_needs_a_connected_call_and_no_audio_after_hang_up() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    with pytest.raises(AcdError):
        await rig.acd.hold(anna, True)
    await rig.call("c1")
    await rig.connect(anna, "c1")
    await rig.acd.hang_up(anna)
    await rig.acd.agent_audio(anna, b"late")
    await rig.acd.caller_audio("c1", b"late")
    assert rig.callers["c1"].audio == [] and rig.links["anna"].audio == []


# ---- a second desktop ---------------------------------------------------------------------------


async def test_second_login_replaces_the_first() -> None:
    rig = Rig()
    first = await rig.agent("anna")
    old_link = rig.links["anna"]
    second = await rig.agent("anna", state=None)
    assert old_link.messages[-1] == {"type": "replaced"}
    assert rig.acd.agents["anna"] is second and second is not first
    assert first.state == AgentState.OFFLINE and second.state == AgentState.OFFLINE
    assert rig.one("AGENTLOGOFF").data == {"agent": "anna", "reason": "replaced"}
    assert len(rig.named("AGENTLOGIN")) == 2

    await rig.acd.logout(first)  # the old desktop closing later changes nothing
    assert rig.acd.agents["anna"] is second
    assert len(rig.named("AGENTLOGOFF")) == 1
    await rig.acd.set_state(second, AgentState.AVAILABLE)
    await rig.call("c1")
    assert ringing(second) == "c1"
    assert rig.links["anna"].offers() == ["c1"] and old_link.offers() == []


async def test_replaced_desktop_on_a_call_puts_the_caller_back_at_the_head() -> None:
    rig = Rig()
    first = await rig.agent("anna")
    await rig.call("c1")
    await rig.call("c2")
    await rig.connect(first, "c1")
    await rig.agent("anna", state=None)
    assert rig.callers["c1"].requeues == ["agent_lost"]
    assert rig.one("AGENTDUMP", "c1").data["reason"] == "replaced"
    assert [c.call_id for c in rig.acd.waiting(T100, "default")] == ["c1", "c2"]


async def test_replaced_desktop_while_ringing_gives_the_call_to_another_agent() -> None:
    rig = Rig()
    anna = await rig.agent("anna")
    bert = await rig.agent("bert")
    await rig.call("c1")
    assert ringing(anna) == "c1"
    await rig.agent("anna", state=None)
    assert ringing(bert) == "c1"


# ---- a failing event log ---------------------------------------------------------------------------


async def test_event_sink_errors_do_not_stop_distribution() -> None:
    calls = []

    async def broken(event: CallEvent) -> None:
        calls.append(event.event)
        raise RuntimeError("database down")

    now = [50.0]
    acd = Acd(QueueSettings(ring_timeout_s=60.0), broken, clock=lambda: now[0])
    link, caller = FakeAgentLink(), FakeCallerLink()
    agent = await acd.login(AgentUser("anna", "scrypt$unused", "agent", (T100,)), link)
    await acd.set_state(agent, AgentState.AVAILABLE)
    assert await acd.enqueue(QueuedCall("c1", T100, "default", caller)) == 1
    assert link.offers() == ["c1"] and agent.state == AgentState.RINGING
    await acd.accept(agent, "c1")
    assert caller.connected == [agent]
    await acd.hang_up(agent)
    assert agent.state == AgentState.WRAP_UP and caller.hung_up == 1
    assert calls == ["AGENTLOGIN", "ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
