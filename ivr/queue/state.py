"""What the ACD knows and what it writes down: agents, calls, handle times, and the call-event log.

`AcdState` holds the logged-in agents and the waiting calls and answers the
questions asked of them (position, staffing, expected wait, the supervisor
snapshot). It also owns the two things every step of distribution ends in:
an agent's state change (sent to the desktop) and a line in the event log.

Every step is written to the call-event log with Asterisk's queue_log verbs
(ENTERQUEUE, RINGNOANSWER, CONNECT, COMPLETEAGENT/COMPLETECALLER, TRANSFER,
ABANDON, EXITWITHTIMEOUT, EXITWITHKEY, AGENTLOGIN/AGENTLOGOFF, PAUSE/UNPAUSE),
so service level, ASA, AHT and abandon rate can be computed from the log alone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ivr.queue.model import ALL_TENANTS, NO_CALL, STAFFED, Agent, AgentState, EventSink, QueuedCall
from ivr.settings import AgentUser, QueueSettings
from ivr.storage import CallEvent, EventName

log = logging.getLogger("ivr.queue")

HANDLE_TIME_SAMPLES = 50  # completed calls per queue the handle-time average is taken over


class AcdState:
    """The agents and calls of one ACD, the questions asked of them, state changes and event logging."""

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

    def ringing(self, call_id: str) -> bool:
        """An agent's phone rings with this call (offered, not yet answered): the caller hears music, not
        an announcement of a wait that is about to end."""
        call = self.calls.get(call_id)
        return call is not None and call.agent is not None and call.connected_at is None

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

    def _record_handle_time(self, call: QueuedCall, now: float) -> None:
        if call.connected_at is None:
            return
        samples = self._handle_times.setdefault((call.tenant, call.queue), deque(maxlen=HANDLE_TIME_SAMPLES))
        samples.append(max(now - call.connected_at, 1.0))

    def _cancel_ring(self, call_id: str) -> None:
        timer = self._ring_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def _cancel_wrap_timer(self, agent: Agent) -> None:
        timer = self._wrap_timers.pop(agent.username, None)
        if timer is not None:
            timer.cancel()

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
