"""The ACD's nouns: agent states, the waiting call, the logged-in agent, and the links to both sides.

Both sides talk to the ACD through small protocols: the call session implements
`CallerLink`, the agent desktop's websocket implements `AgentLink`. Links only
send; they never call back into the ACD while it holds its lock.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.settings import AgentUser
from ivr.storage import CallEvent

NO_CALL = "NONE"  # call_id of agent events, as in queue_log
ALL_TENANTS = "*"


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
