"""Typed frames that transports hand to a call session.

Serializers (one per wire protocol, in ivr/transports/) turn wire messages into
these frames, decoding the codec on the way, so a session only ever sees
16-bit PCM at the line rate and plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallStart:
    """A call begins. `call_id` is always made by the server; what the wire names is `provider_call_id`.

    A client that chose the id could name a live call's and end it, log under
    another tenant, or wipe its dialog state.
    """

    call_id: str
    dialled: str | None
    caller: str | None
    sample_rate: int
    channel: str
    parameters: dict[str, str] = field(default_factory=dict)
    provider_call_id: str | None = None


@dataclass(frozen=True)
class AudioIn:
    """Caller audio, PCM16 mono at the call's line rate."""

    pcm: bytes


@dataclass(frozen=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True)
class MarkAck:
    """The far end has played everything sent before the mark named `name`."""

    name: str


@dataclass(frozen=True)
class CallStop:
    reason: str = "caller_hangup"


@dataclass(frozen=True)
class Ignored:
    """A well-formed message the session has no use for (e.g. `connected`)."""

    kind: str


InboundFrame = CallStart | AudioIn | DtmfIn | MarkAck | CallStop | Ignored
