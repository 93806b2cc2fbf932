"""Automatic call distribution: which waiting caller goes to which agent, and when.

One `Acd` per process holds the logged-in agents and the waiting calls. A call
waits in its tenant's queue (tenant number + queue name); an agent takes calls
of the tenants they may see from the queues in their skills. Order of service:
callers put back after an agent was lost first, then higher priority, then
longest waiting. Among the available agents the one idle longest is offered the
call; an offer rings for `ring_timeout_s`, after which the next agent is tried
and the silent one is set to not-responding, as ACDs do, so callers are not
offered to an empty desk again and again.

Every step is written to the call-event log with Asterisk's queue_log verbs
(ENTERQUEUE, RINGNOANSWER, CONNECT, COMPLETEAGENT/COMPLETECALLER, TRANSFER,
ABANDON, EXITWITHTIMEOUT, EXITWITHKEY, AGENTLOGIN/AGENTLOGOFF, PAUSE/UNPAUSE),
so service level, ASA, AHT and abandon rate can be computed from the log alone.

Both sides talk to the ACD through small protocols: the call session implements
`CallerLink`, the agent desktop's websocket implements `AgentLink`. All state
changes happen under one lock on the event loop; links only send, they never
call back into the ACD while it holds the lock.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.settings import AgentUser, QueueSettings
from ivr.storage import CallEvent, EventName

log = logging.getLogger("ivr.queue")

NO_CALL = "NONE"  # call_id of agent events, as in queue_log
ALL_TENANTS = "*"
HANDLE_TIME_SAMPLES = 50  # completed calls per queue the handle-time average is taken over


class AgentState(str, enum.Enum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    BREAK = "break"
    NOT_RESPONDING = "not_responding"


# States an agent may choose on the desktop; the others follow from calls.
SELECTABLE = frozenset({AgentState.AVAILABLE, AgentState.BREAK, AgentState.OFFLINE})
# States in which an agent counts as staffing the queue (for the expected wait).
STAFFED = frozenset({AgentState.AVAILABLE, AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP})


class AcdError(Exception):
    """A request the ACD refuses (wrong state, unknown call); the message is shown to the agent."""


class CallerLink(Protocol):
    """The call session's side of a queued call."""

    async def agent_connected(self, agent: Agent) -> None: ...
    async def agent_audio(self, pcm16k: bytes) -> None: ...
    async def hold(self, on: bool) -> None: ...
    async def agent_hung_up(self) -> None: ...
    async def requeued(self, reason: str) -> None:
        """Back in a queue: the agent was lost (at the head) or transferred the call (`transfer:<queue>`)."""


class AgentLink(Protocol):
    """The agent desktop's side."""

    async def send(self, message: dict[str, Any]) -> None:
        """A JSON event for the desktop (offer, revoked, connected, transcript, ended, state)."""

    async def send_audio(self, pcm16k: bytes) -> None:
        """Caller audio, 16 kHz PCM16."""


@dataclass
class QueuedCall:
    call_id: str
    tenant: str
    queue: str
    link: CallerLink
    priority: int = 0
    handoff_id: str | None = None
    package: dict[str, Any] = field(default_factory=dict)
    entered_at: float = 0.0
    position_at_entry: int = 0
    head: bool = False  # put back after an agent was lost: served before everybody else
    declined_by: set[str] = field(default_factory=set)
    agent: str | None = None  # ringing or connected agent
    ring_started: float | None = None
    connected_at: float | None = None
    held: bool = False
    seq: int = 0  # tie-break: order of entry

    def sort_key(self) -> tuple[int, int, float, int]:
        return (0 if self.head else 1, -self.priority, self.entered_at, self.seq)


@dataclass
class Agent:
    user: AgentUser
    link: AgentLink
    state: AgentState = AgentState.OFFLINE
    idle_since: float = 0.0
    call: QueuedCall | None = None  # ringing, on call, or in wrap-up for it
    muted: bool = False

    @property
    def username(self) -> str:
        return self.user.username

    def takes(self, call: QueuedCall) -> bool:
        return self.user.sees(call.tenant) and self.user.works(call.queue)


EventSink = Callable[[CallEvent], Awaitable[None]]


class Acd:
    def __init__(self, settings: QueueSettings, log_event: EventSink, clock: Callable[[], float] = time.time):
        self.settings = settings
        self._log_event = log_event
        self.clock = clock
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, QueuedCall] = {}  # waiting, ringing or connected
        self._handle_times: dict[tuple[str, str], deque[float]] = {}
        self._ring_timers: dict[str, asyncio.TimerHandle] = {}
        self._wrap_timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()
        self._seq = 0

    # ---- queries -----------------------------------------------------------

    def waiting(self, tenant: str, queue: str) -> list[QueuedCall]:
        """Calls not yet connected in one queue, in order of service."""
        calls = [c for c in self.calls.values() if c.tenant == tenant and c.queue == queue and c.connected_at is None]
        return sorted(calls, key=QueuedCall.sort_key)

    def position(self, call_id: str) -> int:
        """1-based place in the queue; 0 when the call is not waiting."""
        call = self.calls.get(call_id)
        if call is None or call.connected_at is not None:
            return 0
        return self.waiting(call.tenant, call.queue).index(call) + 1

    def staffed(self, tenant: str, queue: str) -> int:
        """Agents logged in and working this queue (not on break, not offline)."""
        return sum(
            1 for a in self.agents.values() if a.state in STAFFED and a.user.sees(tenant) and a.user.works(queue)
        )

    def handle_time(self, tenant: str, queue: str) -> float:
        samples = self._handle_times.get((tenant, queue))
        return sum(samples) / len(samples) if samples else self.settings.default_handle_time_s

    def estimated_wait(self, call_id: str) -> float | None:
        """Seconds until an agent answers, or None when nobody staffs the queue.

        Callers ahead of this one (and this one) are served by the staffed
        agents in parallel, each call taking the queue's average handle time;
        agents free right now serve the first callers at once. Calls ringing at
        an agent have that agent already: a ringing call waits no longer, and
        ringing calls ahead do not count again (their agent counts as busy).
        """
        call = self.calls.get(call_id)
        if call is None:
            return None
        staffed = self.staffed(call.tenant, call.queue)
        if staffed == 0:
            return None
        if call.agent is not None:  # ringing (or connected)
            return 0.0
        free = sum(1 for a in self.agents.values() if a.state == AgentState.AVAILABLE and a.takes(call))
        waiting = self.waiting(call.tenant, call.queue)
        ahead = sum(1 for c in waiting[: waiting.index(call)] if c.agent is None)
        if ahead < free:
            return 0.0
        rounds = math.floor((ahead - free) / staffed) + 1
        return rounds * self.handle_time(call.tenant, call.queue)

    def snapshot(self, user: AgentUser) -> dict[str, Any]:
        """Queues and agents of the tenants `user` sees (the supervisor view)."""
        now = self.clock()
        queues: dict[tuple[str, str], list[QueuedCall]] = {}
        for call in self.calls.values():
            if user.sees(call.tenant):
                queues.setdefault((call.tenant, call.queue), []).append(call)
        return {
            "queues": [
                {
                    "tenant": tenant,
                    "queue": queue,
                    "waiting": len([c for c in calls if c.connected_at is None]),
                    "connected": len([c for c in calls if c.connected_at is not None]),
                    "longest_wait_s": round(
                        max((now - c.entered_at for c in calls if c.connected_at is None), default=0.0), 1
                    ),
                    "staffed": self.staffed(tenant, queue),
                    "handle_time_s": round(self.handle_time(tenant, queue), 1),
                }
                for (tenant, queue), calls in sorted(queues.items())
            ],
            "agents": [
                {
                    "username": a.username,
                    "name": a.user.name,
                    "state": a.state.value,
                    "call_id": a.call.call_id if a.call else None,
                }
                for a in self.agents.values()
                if ALL_TENANTS in user.tenants or any(user.sees(t) for t in a.user.tenants)
            ],
        }

    # ---- agents ------------------------------------------------------------

    async def login(self, user: AgentUser, link: AgentLink) -> Agent:
        """A desktop connected. A second desktop of the same user replaces the first."""
        async with self._lock:
            old = self.agents.get(user.username)
            if old is not None:
                await self._agent_gone(old, "replaced")
                await old.link.send({"type": "replaced"})
                await self._dispatch()  # a call it had goes to the other agents
            agent = Agent(user, link, AgentState.OFFLINE, self.clock())
            self.agents[user.username] = agent
            await self._event(NO_CALL, ALL_TENANTS, EventName.AGENTLOGIN, agent=user.username)
            await self._send_state(agent)
            return agent

    async def logout(self, agent: Agent, reason: str = "logout") -> None:
        """The desktop went away (logout, closed tab, network): a caller with this agent goes back to the head."""
        async with self._lock:
            if self.agents.get(agent.username) is not agent:
                return  # already replaced by a newer desktop
            await self._agent_gone(agent, reason)
            del self.agents[agent.username]
            await self._dispatch()

    async def set_state(self, agent: Agent, state: AgentState) -> None:
        async with self._lock:
            if state not in SELECTABLE:
                raise AcdError(f"{state.value} cannot be chosen; it follows from calls")
            if agent.state in (AgentState.RINGING, AgentState.ON_CALL):
                raise AcdError("finish the call first")
            if agent.state == AgentState.WRAP_UP and agent.call is not None:
                raise AcdError("finish the wrap-up first")
            if state == AgentState.AVAILABLE:
                # Choosing to be available again (after not responding, a lost connection, a
                # break) makes calls this agent missed theirs to take again; a plain decline does not.
                for call in self.calls.values():
                    call.declined_by.discard(agent.username)
            await self._set(agent, state)
            await self._dispatch()

    # ---- callers -----------------------------------------------------------

    async def enqueue(self, call: QueuedCall) -> int:
        """A caller starts waiting; returns the position. The expected wait is `estimated_wait(call_id)`."""
        async with self._lock:
            self._seq += 1
            call.seq = self._seq
            call.entered_at = call.entered_at or self.clock()
            self.calls[call.call_id] = call
            position = self.position(call.call_id)
            call.position_at_entry = position
            await self._event(call.call_id, call.tenant, EventName.ENTERQUEUE, queue=call.queue, position=position,
                              priority=call.priority, handoff_id=call.handoff_id)  # fmt: skip
            await self._dispatch()
            return self.position(call.call_id) or position

    async def leave(self, call_id: str, verb: EventName = EventName.ABANDON, **data: Any) -> None:
        """The caller stops waiting: hung up (ABANDON), gave up for a callback (EXITWITHKEY), waited too long
        (EXITWITHTIMEOUT). A connected caller who hangs up completes the call instead (COMPLETECALLER)."""
        async with self._lock:
            call = self.calls.pop(call_id, None)
            if call is None:
                return
            now = self.clock()
            agent = self.agents.get(call.agent) if call.agent else None
            if call.connected_at is not None:
                await self._complete(call, EventName.COMPLETECALLER)
                if agent is not None:
                    await agent.link.send({"type": "ended", "call_id": call_id, "by": "caller"})
                return
            if agent is not None:  # it was ringing there
                self._cancel_ring(call_id)
                agent.call = None
                await agent.link.send({"type": "revoked", "call_id": call_id, "reason": verb.lower()})
                await self._set(agent, AgentState.AVAILABLE)
            position = self._position_of(call)
            await self._event(call_id, call.tenant, verb, queue=call.queue, position=position,
                              origposition=call.position_at_entry, waittime=round(now - call.entered_at, 1), **data)  # fmt: skip
            await self._dispatch()

    def _position_of(self, call: QueuedCall) -> int:
        calls = sorted([*self.waiting(call.tenant, call.queue), call], key=QueuedCall.sort_key)
        return calls.index(call) + 1

    # ---- an offer ----------------------------------------------------------

    async def accept(self, agent: Agent, call_id: str) -> QueuedCall:
        async with self._lock:
            call = self.calls.get(call_id)
            if call is None or call.agent != agent.username or agent.state != AgentState.RINGING:
                raise AcdError("this call is no longer offered to you")
            self._cancel_ring(call_id)
            now = self.clock()
            call.connected_at = now
            agent.muted = False  # mute is per call
            await self._set(agent, AgentState.ON_CALL)
            await self._event(call_id, call.tenant, EventName.CONNECT, queue=call.queue, agent=agent.username,
                              holdtime=round(now - call.entered_at, 1), ringtime=round(now - (call.ring_started or now), 1))  # fmt: skip
            await agent.link.send({"type": "connected", "call_id": call_id})
            await call.link.agent_connected(agent)
            return call

    async def decline(self, agent: Agent, call_id: str) -> None:
        async with self._lock:
            call = self.calls.get(call_id)
            if call is None or call.agent != agent.username or call.connected_at is not None:
                raise AcdError("this call is no longer offered to you")
            await self._ring_failed(call, agent, AgentState.AVAILABLE, declined=True)
            await self._dispatch()

    async def _ring_timeout(self, call_id: str, username: str) -> None:
        async with self._lock:
            self._ring_timers.pop(call_id, None)
            call = self.calls.get(call_id)
            agent = self.agents.get(username)
            if call is None or agent is None or call.agent != username or call.connected_at is not None:
                return
            await agent.link.send({"type": "revoked", "call_id": call_id, "reason": "ring_timeout"})
            await self._ring_failed(call, agent, AgentState.NOT_RESPONDING, declined=False)
            await self._dispatch()

    async def _ring_failed(self, call: QueuedCall, agent: Agent, then: AgentState, declined: bool) -> None:
        self._cancel_ring(call.call_id)
        now = self.clock()
        call.declined_by.add(agent.username)
        call.agent = None
        agent.call = None
        await self._event(call.call_id, call.tenant, EventName.RINGNOANSWER, queue=call.queue, agent=agent.username,
                          ringtime=round(now - (call.ring_started or now), 1), declined=declined)  # fmt: skip
        call.ring_started = None
        await self._set(agent, then)

    # ---- a connected call --------------------------------------------------

    async def hang_up(self, agent: Agent) -> None:
        async with self._lock:
            call = self._connected(agent)
            self.calls.pop(call.call_id, None)
            await self._complete(call, EventName.COMPLETEAGENT)
        await call.link.agent_hung_up()

    async def transfer(self, agent: Agent, queue: str) -> None:
        """Blind transfer to another queue of the same tenant: the caller waits there (keeping priority)."""
        async with self._lock:
            call = self._connected(agent)
            now = self.clock()
            await self._event(call.call_id, call.tenant, EventName.TRANSFER, queue=call.queue, agent=agent.username, to_queue=queue,
                              holdtime=round((call.connected_at or now) - call.entered_at, 1),
                              calltime=round(now - (call.connected_at or now), 1))  # fmt: skip
            self._record_handle_time(call, now)
            agent.call = call  # wrap-up is for this call
            await self._set(agent, AgentState.WRAP_UP)
            await agent.link.send({"type": "ended", "call_id": call.call_id, "by": "transfer"})
            self._start_wrap_timer(agent)
            call.queue, call.agent, call.connected_at, call.held = queue, None, None, False
            call.ring_started, call.declined_by, call.entered_at = None, set(), now
            self._seq += 1
            call.seq = self._seq
            call.position_at_entry = self.position(call.call_id)
            await self._event(call.call_id, call.tenant, EventName.ENTERQUEUE, queue=queue, position=call.position_at_entry,
                              priority=call.priority, handoff_id=call.handoff_id, transferred=True)  # fmt: skip
        await call.link.requeued(f"transfer:{queue}")
        async with self._lock:
            await self._dispatch()

    async def hold(self, agent: Agent, on: bool) -> None:
        async with self._lock:
            call = self._connected(agent)
            if call.held == on:
                return
            call.held = on
            await self._event(
                call.call_id,
                call.tenant,
                EventName.HOLD if on else EventName.UNHOLD,
                queue=call.queue,
                agent=agent.username,
            )
        await call.link.hold(on)

    def mute(self, agent: Agent, on: bool) -> None:
        """The caller stops hearing the agent (the agent still hears the caller)."""
        agent.muted = on

    async def wrap_up_done(self, agent: Agent) -> QueuedCall:
        """The agent stored the disposition: the call is theirs no longer, and new calls may come."""
        async with self._lock:
            call = agent.call
            if agent.state != AgentState.WRAP_UP or call is None:
                raise AcdError("there is no call to wrap up")
            self._cancel_wrap_timer(agent)
            agent.call = None
            await self._set(agent, AgentState.AVAILABLE)
            await self._dispatch()
            return call

    async def agent_audio(self, agent: Agent, pcm16k: bytes) -> None:
        call = agent.call
        if agent.state == AgentState.ON_CALL and call is not None and not call.held and not agent.muted:
            await call.link.agent_audio(pcm16k)

    async def caller_audio(self, call_id: str, pcm16k: bytes) -> None:
        agent = self._agent_of(call_id)
        if agent is not None:
            await agent.link.send_audio(pcm16k)

    async def caller_event(self, call_id: str, message: dict[str, Any]) -> None:
        """Live transcript lines (and other events) of a connected caller, for the agent's screen."""
        agent = self._agent_of(call_id)
        if agent is not None:
            await agent.link.send({**message, "call_id": call_id})

    def _agent_of(self, call_id: str) -> Agent | None:
        call = self.calls.get(call_id)
        if call is None or call.connected_at is None or call.held or call.agent is None:
            return None
        agent = self.agents.get(call.agent)
        return agent if agent is not None and agent.state == AgentState.ON_CALL else None

    def _connected(self, agent: Agent) -> QueuedCall:
        call = agent.call
        if agent.state != AgentState.ON_CALL or call is None:
            raise AcdError("you are not on a call")
        return call

    async def _complete(self, call: QueuedCall, verb: EventName) -> None:
        """End of a connected call: log it, learn its handle time, put the agent into wrap-up."""
        now = self.clock()
        connected = call.connected_at or now
        await self._event(call.call_id, call.tenant, verb, queue=call.queue, agent=call.agent,
                          holdtime=round(connected - call.entered_at, 1), calltime=round(now - connected, 1))  # fmt: skip
        self._record_handle_time(call, now)
        agent = self.agents.get(call.agent) if call.agent else None
        if agent is not None and agent.call is call:
            await self._set(agent, AgentState.WRAP_UP)
            self._start_wrap_timer(agent)

    def _record_handle_time(self, call: QueuedCall, now: float) -> None:
        if call.connected_at is None:
            return
        samples = self._handle_times.setdefault((call.tenant, call.queue), deque(maxlen=HANDLE_TIME_SAMPLES))
        samples.append(max(now - call.connected_at, 1.0))

    # ---- distribution ------------------------------------------------------

    async def _dispatch(self) -> None:
        """Offer waiting calls to available agents, in order of service; called under the lock."""
        waiting = sorted(
            (c for c in self.calls.values() if c.connected_at is None and c.agent is None), key=QueuedCall.sort_key
        )
        for call in waiting:
            candidates = [
                a
                for a in self.agents.values()
                if a.state == AgentState.AVAILABLE and a.takes(call) and a.username not in call.declined_by
            ]
            if not candidates:
                continue
            agent = min(candidates, key=lambda a: (a.idle_since, a.username))
            await self._offer(call, agent)

    async def _offer(self, call: QueuedCall, agent: Agent) -> None:
        call.agent = agent.username
        call.ring_started = self.clock()
        agent.call = call
        await self._set(agent, AgentState.RINGING)
        timeout = self.settings.ring_timeout_s
        loop = asyncio.get_running_loop()
        self._ring_timers[call.call_id] = loop.call_later(
            timeout, lambda: asyncio.ensure_future(self._ring_timeout(call.call_id, agent.username))
        )
        await agent.link.send(
            {
                "type": "offer",
                "call_id": call.call_id,
                "tenant": call.tenant,
                "queue": call.queue,
                "priority": call.priority,
                "handoff_id": call.handoff_id,
                "waited_s": round(self.clock() - call.entered_at, 1),
                "ring_timeout_s": timeout,
                "package": call.package,
            }
        )

    def _cancel_ring(self, call_id: str) -> None:
        timer = self._ring_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def _start_wrap_timer(self, agent: Agent) -> None:
        if self.settings.wrap_up_s <= 0:
            return
        self._cancel_wrap_timer(agent)

        async def expire() -> None:
            try:
                await self.wrap_up_done(agent)
            except AcdError:
                pass

        self._wrap_timers[agent.username] = asyncio.get_running_loop().call_later(
            self.settings.wrap_up_s, lambda: asyncio.ensure_future(expire())
        )

    def _cancel_wrap_timer(self, agent: Agent) -> None:
        timer = self._wrap_timers.pop(agent.username, None)
        if timer is not None:
            timer.cancel()

    async def _agent_gone(self, agent: Agent, reason: str) -> None:
        """Whatever the agent had goes back: a ringing call to the queue, a connected caller to its head."""
        call = agent.call
        self._cancel_wrap_timer(agent)
        if call is not None and self.calls.get(call.call_id) is call and call.agent == agent.username:
            if call.connected_at is None:  # ringing
                self._cancel_ring(call.call_id)
                call.agent, call.ring_started = None, None
            else:
                now = self.clock()
                await self._event(call.call_id, call.tenant, EventName.AGENTDUMP, queue=call.queue, agent=agent.username,
                                  calltime=round(now - call.connected_at, 1), reason=reason)  # fmt: skip
                call.agent, call.connected_at, call.held, call.ring_started = None, None, False, None
                call.head = True
                call.declined_by.add(agent.username)
                await call.link.requeued("agent_lost")
        agent.call = None
        await self._event(
            NO_CALL, ALL_TENANTS, EventName.AGENTLOGOFF, agent=agent.username, reason=reason
        )  # pairs AGENTLOGIN
        agent.state = AgentState.OFFLINE

    async def _set(self, agent: Agent, state: AgentState) -> None:
        previous = agent.state
        if previous == state:
            return
        agent.state = state
        if state == AgentState.AVAILABLE:
            agent.idle_since = self.clock()
        if state == AgentState.BREAK or previous == AgentState.BREAK:
            await self._event(
                NO_CALL,
                ALL_TENANTS,
                EventName.PAUSE if state == AgentState.BREAK else EventName.UNPAUSE,
                agent=agent.username,
            )
        log.info("agent.state", extra={"agent": agent.username, "state": state.value, "previous": previous.value})
        await self._send_state(agent)

    async def _send_state(self, agent: Agent) -> None:
        await agent.link.send({"type": "state", "state": agent.state.value})

    async def _event(self, call_id: str, tenant: str, name: EventName, **data: Any) -> None:
        data = {k: v for k, v in data.items() if v is not None}
        try:
            await self._log_event(CallEvent(call_id, tenant, self.clock(), name, data))
        except Exception:  # the log must not take a caller's place in the queue with it
            log.exception("queue.event_not_logged", extra={"event": name, "call_id": call_id})
