"""The MediaSink a SIP call gives its CallSession (`RtpSink`).

Its own module so that call.py holds the dialog and nothing else. The sink
sees the call only through `SinkCall` (its RTP stream, transfer and
hang-up), so this module does not import call.py, which imports it.
"""

from __future__ import annotations

from typing import Protocol

from ivr.session.events import HandBack, OutboundEvent
from ivr.transports.sip.stream import RtpStream


class SinkCall(Protocol):
    """What the sink needs of the call (SipCall)."""

    stream: RtpStream

    async def transfer(self, event: HandBack) -> None: ...

    async def hang_up(self, reason: str) -> None: ...


class RtpSink:
    """The MediaSink a CallSession talks to: prompt audio into the RTP clock, hang-up as BYE."""

    sample_rate = 8000
    supports_marks = True  # the RTP clock knows exactly when a prompt's last frame left

    def __init__(self, call: SinkCall):
        self.call = call

    async def send_audio(self, pcm: bytes) -> None:
        self.call.stream.send_audio(pcm)

    async def send_mark(self, name: str) -> None:
        self.call.stream.send_mark(name)

    async def clear(self) -> None:
        self.call.stream.clear()

    async def send_event(self, event: OutboundEvent) -> None:
        if isinstance(event, HandBack):
            await self.call.transfer(event)

    async def hangup(self, reason: str) -> None:
        await self.call.hang_up(reason)
