"""The WebSocket media endpoint shared by all media serializers.

It turns wire messages into frames with the protocol's serializer, starts a
call session on `start`, and guarantees clean-up: whatever happens to the
connection (caller hang-up, network drop, bad messages), the session is closed,
its transcript finished, and other calls are untouched.

A stream always ends with a close code and a reason: 1003 for a malformed
message before `start` (or after too many), 1008 for a client over a limit
(audio much faster than real time), 1011 with
"internal error" if something on our side failed. Never a bare 1006.

A stream is a call from the upgrade on, so admission control (ivr/session/
admission.py) decides before it: over the limit the handshake is answered
`503` with `Retry-After` and a JSON body naming the reason, and the provider
goes on with its own routing (Twilio: the `<Connect>` fails and the next
TwiML verb runs). A browser cannot read a refused handshake, so the phone
page's stream is upgraded and closed at once with 1013 and the reason. While a tenant has `overflow: callback`, such a stream is
taken on an overflow slot instead (overflow.py). The slot is released in the
`finally` that ends the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.admission import Refusal
from ivr.session.call import CallSession
from ivr.session.events import WireError
from ivr.session.frames import AudioIn, CallStart
from ivr.session.limits import RealTimeGuard
from ivr.transports.overflow import TRY_AGAIN_LATER, overflow_stream
from ivr.transports.ws_sink import Serializer, WebSocketSink, close_reason

log = logging.getLogger("ivr.transport")

MAX_PROTOCOL_ERRORS = 20  # a client this broken is not a call any more
__all__ = ["Serializer", "WebSocketSink", "close_reason", "media_socket"]  # the first three live in ws_sink.py


async def media_socket(
    request: web.Request, runtime: Runtime, make_serializer: Callable[[], Serializer]
) -> web.StreamResponse:
    serializer = make_serializer()
    ticket = runtime.admission.try_admit(serializer.channel)
    if isinstance(ticket, Refusal):
        # Answered already by the provider: a tenant may want the caller told, and called back (overflow.py).
        slot = (
            runtime.admission.try_overflow(ticket, serializer.channel) if runtime.settings.overflow_callbacks else None
        )
        if slot is not None:
            return await overflow_stream(request, runtime, serializer, ticket, slot)
        if serializer.refuse_after_upgrade:
            return await refused_after_upgrade(request, ticket)
        return refused(ticket)
    try:
        return await _run_stream(request, runtime, serializer)
    finally:
        ticket.release()


def refused(refusal: Refusal) -> web.Response:
    """The handshake answered 503 before any upgrade: the client sees the reason and when to try again."""
    body = {"error": refusal.text, "reason": refusal.reason.value, "retry_after_s": refusal.retry_after_s}
    return web.json_response(body, status=503, headers={"Retry-After": str(refusal.retry_after_s)})


async def refused_after_upgrade(request: web.Request, refusal: Refusal) -> web.WebSocketResponse:
    """For clients that cannot read a refused handshake (browsers): upgraded, then closed with 1013 and the reason."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=TRY_AGAIN_LATER, message=close_reason(refusal.text))
    return ws


async def _run_stream(request: web.Request, runtime: Runtime, serializer: Serializer) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)
    sink = WebSocketSink(ws, serializer)
    realtime = RealTimeGuard(runtime.settings.limits.media_burst_s)
    session: CallSession | None = None
    errors = 0
    end_reason = "connection_lost"
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                frame = serializer.decode(msg.data)
                if isinstance(frame, AudioIn):
                    _check_pace(realtime, frame, serializer.sample_rate)
                if isinstance(frame, CallStart):
                    if session is not None:
                        raise ProtocolError("second 'start' on one stream")
                    session = await _open_session(runtime, sink, frame)
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
                log.warning("transport.bad_message", extra={"channel": serializer.channel, "error": str(exc),
                                                            "call_id": session.call_id if session else None})  # fmt: skip
                await sink.send_event(WireError(str(exc)))
                if exc.fatal or session is None or errors >= MAX_PROTOCOL_ERRORS:
                    await ws.close(code=exc.close_code, message=close_reason(str(exc)))
                    end_reason = "protocol_error"
                    break
    except Exception:
        # A failure on our side (storage, a bug): this stream ends with a reason; other calls go on.
        log.exception(
            "transport.failed", extra={"channel": serializer.channel, "call_id": session.call_id if session else None}
        )
        end_reason = "internal_error"
        if not ws.closed:
            await ws.close(code=1011, message=b"internal error")
    finally:
        if session is not None and not session.closed:
            await session.close(end_reason)
        elif session is not None:
            # Closed by another task (shutdown, an agent's hang-up): its close broke our receive loop; let it
            # send its close frame with the reason before this handler ends and aiohttp closes without one.
            await session.finished.wait()
    return ws


def _check_pace(realtime: RealTimeGuard, frame: AudioIn, sample_rate: int) -> None:
    """Audio much faster than real time is not a caller: it is a flood, and it would hold up every call."""
    if not realtime.add(len(frame.pcm) / 2 / sample_rate):
        raise ProtocolError(
            f"media: audio arrives faster than real time ({realtime.level_s:.1f} s ahead; "
            f"limits.media_burst_s allows {realtime.burst_s:g} s)",
            close_code=1008,
            fatal=True,
        )


async def _open_session(runtime: Runtime, sink: WebSocketSink, frame: CallStart) -> CallSession:
    """A session for a valid start; a number no tenant has is a protocol error, and nothing is stored for it."""
    try:
        return CallSession(runtime, sink, frame)
    except LookupError as exc:
        raise ProtocolError(str(exc)) from exc
