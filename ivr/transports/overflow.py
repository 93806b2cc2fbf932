"""Overflow: a media stream the machine has no room for, when the provider has answered the call already.

A Media Streams call reaches us after the provider answered the caller, and
its tenant is known only from the `start` message, after the WebSocket
upgrade. So while some tenant has `overflow: callback`, a stream refused by
admission control (ivr/session/admission.py) is taken on an overflow slot
instead of a 503. The first `start` names the tenant: a tenant with
`overflow: refuse` gets the stream closed with 1013 ("try again later") and
the refusal's reason; one with `overflow: callback` hears a short fixed
message in its language (ivr/session/prompts.py), a callback request to the
caller's number is stored, and the stream ends with 1000 `all_lines_busy`.

Deliberately cheap: no recognizer, no dialog, no call session; one prompt
(synthesized once, then from the voice's cache) and one row. Every wait is
bounded, so nobody is left in silence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from aiohttp import WSMsgType, web

from ivr.audio.codecs import frame_bytes
from ivr.audio.playback import MARK_GRACE_S
from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.admission import Refusal, Ticket
from ivr.session.frames import CallStart, MarkAck
from ivr.session.prompts import ALL_LINES_BUSY_CALL_AGAIN, ALL_LINES_BUSY_CALLBACK
from ivr.transports.ws_sink import Serializer, WebSocketSink, close_reason

log = logging.getLogger("ivr.overflow")

START_TIMEOUT_S = 5.0  # a provider sends `start` right after the upgrade
BUSY = "all_lines_busy"  # the mark after the message, the close reason and the callback's reason
T = TypeVar("T", CallStart, MarkAck)
TRY_AGAIN_LATER = 1013  # WebSocket close code (IANA registry): the server is overloaded, try again later


async def overflow_stream(
    request: web.Request, runtime: Runtime, serializer: Serializer, refusal: Refusal, slot: Ticket
) -> web.WebSocketResponse:
    """Runs one overflow stream to its end; the slot is released however it ends."""
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    try:
        await ws.prepare(request)
        sink = WebSocketSink(ws, serializer)
        start = await _next(ws, serializer, CallStart, START_TIMEOUT_S)
        try:
            number, tenant = runtime.settings.tenant_for(start.dialled) if start else ("", None)
        except LookupError:
            number, tenant = "", None
        if start is None or tenant is None or tenant.overflow != "callback":
            await ws.close(code=TRY_AGAIN_LATER, message=close_reason(refusal.text))
            return ws
        callback = sum(ch.isdigit() for ch in start.caller or "") >= 5
        texts = ALL_LINES_BUSY_CALLBACK if callback else ALL_LINES_BUSY_CALL_AGAIN
        await _say(ws, sink, runtime, runtime.settings.voice_for(tenant), texts[tenant.language])
        if callback:
            await runtime.storage.add_callback(number, start.caller or "", BUSY, tenant.language, start.call_id)
        log.info("call.overflow", extra={"tenant": number, "channel": serializer.channel,
                                         "reason": refusal.reason.value, "callback": callback})  # fmt: skip
        await sink.hangup(BUSY)
    except Exception:
        log.exception("overflow.failed", extra={"channel": serializer.channel})
        if not ws.closed:
            await ws.close(code=1011, message=b"internal error")
    finally:
        slot.release()
    return ws


async def _next(ws: web.WebSocketResponse, serializer: Serializer, kind: type[T], timeout_s: float) -> T | None:
    """The next frame of `kind` (others are skipped), or None after `timeout_s`, a bad message or the end."""

    async def read() -> T | None:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                frame = serializer.decode(msg.data)
            except ProtocolError:
                return None
            if isinstance(frame, kind):
                return frame
        return None

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        return None


async def _say(ws: web.WebSocketResponse, sink: WebSocketSink, runtime: Runtime, voice: str, text: str) -> None:
    """The message at once (the provider buffers it), then a mark; back when it was heard, or would have been."""
    rate = sink.sample_rate
    step = frame_bytes(rate)
    duration_s = 0.0
    async for chunk in runtime.synthesizer(voice).stream(text, rate):
        duration_s += chunk.duration_s
        for i in range(0, len(chunk.pcm), step):
            await sink.send_audio(chunk.pcm[i : i + step])
    if not sink.supports_marks:
        await asyncio.sleep(duration_s)
        return
    await sink.send_mark(BUSY)
    await _next(ws, sink.serializer, MarkAck, duration_s + MARK_GRACE_S)
