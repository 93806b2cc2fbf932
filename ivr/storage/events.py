"""The flat call-event log: one row per thing that happened, named by `EventName`.

In the style of Asterisk's queue_log: nothing is aggregated when it is written,
so KPIs (containment, service level, abandon rate, form completion, …) are
computed from these rows later and new KPIs work on old calls too. The names
are one enum for writers and readers alike: a misspelt name is an
AttributeError where it is written, not a KPI that silently counts nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class EventName(str, enum.Enum):
    """Every event the log holds; the value is what is stored."""

    # The bot's part of a call
    CALL_START = "CALL_START"
    INTENT = "INTENT"
    NO_INPUT = "NO_INPUT"
    NO_MATCH = "NO_MATCH"
    NO_REPLY = (
        "NO_REPLY"  # the dialog answered a turn with nothing to say (e.g. an action failed); the IVR spoke instead
    )
    FAQ = "FAQ"
    FORM_STARTED = "FORM_STARTED"
    FORM_COMPLETED = "FORM_COMPLETED"
    FORM_CANCELLED = "FORM_CANCELLED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_UNAVAILABLE = "ORDER_UNAVAILABLE"
    TICKET_CREATED = "TICKET_CREATED"
    CALLBACK_REQUESTED = "CALLBACK_REQUESTED"
    CLOSED_HOURS = "CLOSED_HOURS"
    HANDOFF = "HANDOFF"
    HANGUP = "HANGUP"
    MEDIA_QUALITY = "MEDIA_QUALITY"  # SIP calls, when their media ends: loss, jitter and round trip both ways (RTCP)
    # The queue's part (Asterisk queue_log verbs)
    ENTERQUEUE = "ENTERQUEUE"
    CONNECT = "CONNECT"
    ABANDON = "ABANDON"
    EXITWITHKEY = "EXITWITHKEY"
    EXITWITHTIMEOUT = "EXITWITHTIMEOUT"
    EXITEMPTY = "EXITEMPTY"
    RINGNOANSWER = "RINGNOANSWER"
    COMPLETEAGENT = "COMPLETEAGENT"
    COMPLETECALLER = "COMPLETECALLER"
    TRANSFER = "TRANSFER"
    HOLD = "HOLD"
    UNHOLD = "UNHOLD"
    AGENTLOGIN = "AGENTLOGIN"
    AGENTLOGOFF = "AGENTLOGOFF"
    AGENTDUMP = "AGENTDUMP"
    PAUSE = "PAUSE"
    UNPAUSE = "UNPAUSE"
    WRAPUP = "WRAPUP"  # the agent's disposition (never the notes)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CallEvent:
    """One row of the call-event log."""

    call_id: str
    tenant: str
    ts: float
    event: EventName
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Rows read back from storage carry the stored string; an unknown one is a bug or a foreign writer.
        if not isinstance(self.event, EventName):
            object.__setattr__(self, "event", EventName(self.event))
