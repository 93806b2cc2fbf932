"""Typed events a call session sends out, the outbound counterpart of frames.py.

A session hands these to its transport's `MediaSink.send_event`; the
transport decides what its wire makes of them: the browser phone gets each as
JSON (`to_wire()`), Twilio Media Streams nothing, SIP turns a `HandBack` into a
blind transfer (REFER). Nobody matches a dict's `"type"` across modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallInfo:
    """The call was answered: the page shows which company it reached."""

    call_id: str
    company: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "call", "call_id": self.call_id, "company": self.company}


@dataclass(frozen=True)
class Transcript:
    """A line of the live transcript: the caller (partial or final) or the bot."""

    speaker: str  # caller | bot
    text: str
    final: bool = True
    confidence: float | None = None  # final caller lines for the agent's screen
    at: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "transcript", "speaker": self.speaker, "text": self.text, "final": self.final}
        if self.confidence is not None or self.at is not None:
            wire.update(confidence=self.confidence, at=self.at)
        return wire


@dataclass(frozen=True)
class BargeIn:
    """The caller interrupted a prompt; `heard` is how much of it they heard."""

    heard: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "barge_in", "heard": self.heard}


@dataclass(frozen=True)
class AgentState:
    """The caller's side of the agent queue changed (`connected`)."""

    state: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "agent", "state": self.state}


@dataclass(frozen=True)
class HandBack:
    """The dialog handed off and the telephony side has the agents: the call goes back to the provider.

    Media Streams continue with the next TwiML verb; SIP transfers the call
    (REFER) to `sip.transfer_to` with `handoff_id`.
    """

    handoff_id: str | None
    reason: str
    queue: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "handoff", "handoff_id": self.handoff_id, "reason": self.reason, "queue": self.queue}


@dataclass(frozen=True)
class HangUp:
    """We end the call; `reason` goes on the wire (and into the WebSocket close frame)."""

    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "hangup", "reason": self.reason}


@dataclass(frozen=True)
class WireError:
    """A message from the far end was refused; `message` names the field."""

    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "error", "message": self.message}


OutboundEvent = CallInfo | Transcript | BargeIn | AgentState | HandBack | HangUp | WireError


class MediaSink(Protocol):
    """Where a call's outbound audio and events go: implemented by each transport."""

    supports_marks: bool

    @property
    def sample_rate(self) -> int: ...

    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of PCM16 at `sample_rate`."""

    async def send_mark(self, name: str) -> None:
        """Ask the far end to acknowledge when it has played everything sent so far."""

    async def clear(self) -> None:
        """Drop audio the far end has queued but not yet played (barge-in)."""

    async def send_event(self, event: OutboundEvent) -> None:
        """Transcript and state events (shown by the browser phone; a hand-back is a transfer on SIP)."""

    async def hangup(self, reason: str) -> None:
        """End the call from our side."""
