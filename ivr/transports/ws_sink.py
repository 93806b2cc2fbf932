"""What a media WebSocket sends through: the serializer protocol, the `MediaSink` over aiohttp, close reasons.

Shared by the call's stream (websocket.py) and the overflow stream (overflow.py).
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from ivr.session.events import HangUp, OutboundEvent
from ivr.session.frames import InboundFrame

MAX_REASON_BYTES = 123  # of a WebSocket close reason (RFC 6455 §5.5: control frames carry 125 bytes)


def close_reason(text: str) -> bytes:
    """A close reason within the frame limit, cut on a character boundary (a cut UTF-8 sequence
    is invalid, and clients fail the whole close frame over it)."""
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


class Serializer(Protocol):
    channel: str
    supports_marks: bool
    refuse_after_upgrade: bool  # admission refusals as a 1013 close (browsers), not an HTTP 503 (providers)

    @property
    def sample_rate(self) -> int: ...

    def decode(self, message: str | bytes) -> InboundFrame: ...
    def encode_audio(self, pcm: bytes) -> str | bytes: ...
    def encode_mark(self, name: str) -> str: ...
    def encode_clear(self) -> str: ...
    def encode_event(self, event: OutboundEvent) -> str | None: ...


class WebSocketSink:
    """MediaSink over an aiohttp WebSocket; sends after the peer left are dropped."""

    def __init__(self, ws: web.WebSocketResponse, serializer: Serializer):
        self.ws = ws
        self.serializer = serializer
        self.supports_marks = serializer.supports_marks

    @property
    def sample_rate(self) -> int:
        return self.serializer.sample_rate

    async def _send(self, message: str | bytes | None) -> None:
        if message is None or self.ws.closed:
            return
        try:
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)
        except ConnectionResetError:
            pass  # the reader loop notices the closed socket and ends the call

    async def send_audio(self, pcm: bytes) -> None:
        await self._send(self.serializer.encode_audio(pcm))

    async def send_mark(self, name: str) -> None:
        await self._send(self.serializer.encode_mark(name))

    async def clear(self) -> None:
        await self._send(self.serializer.encode_clear())

    async def send_event(self, event: OutboundEvent) -> None:
        await self._send(self.serializer.encode_event(event))

    async def hangup(self, reason: str) -> None:
        await self._send(self.serializer.encode_event(HangUp(reason)))
        if not self.ws.closed:
            await self.ws.close(code=1000, message=close_reason(reason))
