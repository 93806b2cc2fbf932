"""The WebSocket media endpoint shared by all media serializers.

It turns wire messages into frames with the protocol's serializer, starts a
call session on `start`, and guarantees clean-up: whatever happens to the
connection (caller hang-up, network drop, bad messages), the session is closed,
its transcript finished, and other calls are untouched.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol

from aiohttp import WSMsgType, web

from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.call import CallSession
from ivr.session.frames import CallStart, InboundFrame

log = logging.getLogger("ivr.transport")

MAX_PROTOCOL_ERRORS = 20  # a client this broken is not a call any more


class Serializer(Protocol):
    channel: str
    supports_marks: bool
    sample_rate: int

    def decode(self, message: str | bytes) -> InboundFrame: ...
    def encode_audio(self, pcm: bytes) -> str | bytes: ...
    def encode_mark(self, name: str) -> str: ...
    def encode_clear(self) -> str: ...
    def encode_event(self, event: dict[str, Any]) -> Optional[str]: ...


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

    async def send_event(self, event: dict[str, Any]) -> None:
        await self._send(self.serializer.encode_event(event))

    async def hangup(self, reason: str) -> None:
        await self._send(self.serializer.encode_event({"type": "hangup", "reason": reason}))
        if not self.ws.closed:
            await self.ws.close(code=1000, message=reason.encode()[:120])


async def media_socket(request: web.Request, runtime: Runtime, make_serializer: Callable[[], Serializer]) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)
    serializer = make_serializer()
    sink = WebSocketSink(ws, serializer)
    session: Optional[CallSession] = None
    errors = 0
    end_reason = "connection_lost"
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                frame = serializer.decode(msg.data)
                if isinstance(frame, CallStart):
                    if session is not None:
                        raise ProtocolError("second 'start' on one stream")
                    try:
                        session = CallSession(runtime, sink, frame)
                    except LookupError as exc:
                        raise ProtocolError(str(exc)) from exc
                    await session.begin()
                elif session is not None:
                    await session.handle(frame)
                    if session.closed:
                        # Closed here or by another task (an agent hung up): let it finish, so the
                        # hang-up message goes out before this handler ends the socket.
                        await session.finished.wait()
                        end_reason = "closed"
                        break
            except ProtocolError as exc:
                errors += 1
                log.warning("transport.bad_message", extra={"channel": serializer.channel, "error": str(exc)})
                await sink.send_event({"type": "error", "message": str(exc)})
                if session is None or errors >= MAX_PROTOCOL_ERRORS:
                    await ws.close(code=1003, message=str(exc).encode()[:120])
                    end_reason = "protocol_error"
                    break
    finally:
        if session is not None and not session.closed:
            await session.close(end_reason)
        elif session is not None:
            # Closed by another task (shutdown, an agent's hang-up): its close broke our receive loop; let it
            # send its close frame with the reason before this handler ends and aiohttp closes without one.
            await session.finished.wait()
    return ws
