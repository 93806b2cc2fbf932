"""Automatic call distribution: which waiting caller goes to which agent, and when.

One `Acd` per process holds the logged-in agents and the waiting calls. A call
waits in its tenant's queue (tenant number + queue name); an agent takes calls
of the tenants they may see from the queues in their skills. Order of service:
callers put back after an agent was lost first, then higher priority, then
longest waiting. Among the available agents the one idle longest is offered the
call; an offer rings for `ring_timeout_s`, after which the next agent is tried
and the silent one is set to not-responding, as ACDs do, so callers are not
offered to an empty desk again and again.

Both sides talk to the ACD through small protocols: the call session implements
`CallerLink`, the agent desktop's websocket implements `AgentLink`. All state
changes happen under one lock on the event loop; links only send, they never
call back into the ACD while it holds the lock.

The nouns (agent states, `QueuedCall`, `Agent`, the links) are in model.py;
the registry of agents and calls, its queries and the event log in state.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ivr.queue.model import ALL_TENANTS, NO_CALL, SELECTABLE, AcdError, Agent, AgentLink, AgentState, QueuedCall
from ivr.queue.state import AcdState
from ivr.settings import AgentUser
from ivr.storage import EventName


class Acd(AcdState):
    """One per process: the agents' and callers' requests, and distribution of waiting calls to agents."""

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
