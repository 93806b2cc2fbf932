"""Text conversation endpoint: the same dialog as a call, without audio.

For businesses testing their flows and for automated checks. Each turn
returns the bot's replies plus what the dialog understood (intent and
confidence, entities, requested slot, handoff/hang-up).

    POST   /api/conversations                 {"to": "+4930…", "from": "+49171…"}
    POST   /api/conversations/{id}/messages   {"text": "…"[, "asr_confidence": 0.4]} | {"dtmf": "0"} | {"no_input": true}
    DELETE /api/conversations/{id}

Errors are JSON naming the field: `400 {"error": "...", "field": "text"}`.
Bodies are read up to MAX_BODY_BYTES (413 beyond), typed text up to
`limits.max_text_chars`, keys up to `limits.max_dtmf_digits`; conversations
idle for `limits.text_idle_s` are ended (docs/architecture.md, "Limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from ivr.dialog.payloads import DialogTurn
from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.conversation import Conversation
from ivr.storage import CallRecord
from ivr.transports import fields

log = logging.getLogger("ivr.transport")

# Enough for the longest text limits.max_text_chars allows (4000), each character written as a
# JSON escape pair (12 bytes), and the other fields. aiohttp's own limit is 1 MiB.
MAX_BODY_BYTES = 64 * 1024


@dataclass
class OpenConversation:
    """A text conversation between requests: when it was last used, and whether a request is running."""

    conversation: Conversation
    last_active: float = field(default_factory=time.monotonic)
    busy: int = 0


CONVERSATIONS = web.AppKey("text_conversations", dict)  # call id -> OpenConversation
IDLE_SWEEPER = web.AppKey("text_idle_sweeper", asyncio.Task)


def error(
    status: type[web.HTTPException], message: str, field_name: str | None = None, **extra: Any
) -> web.HTTPException:
    """An HTTP error whose JSON body says what is wrong and which field (`{"error": ..., "field": ...}`)."""
    body = {"error": message, **({"field": field_name} if field_name else {}), **extra}
    return status(text=json.dumps(body), content_type="application/json")


def _too_large() -> web.HTTPException:
    body = json.dumps({"error": f"request body is larger than {MAX_BODY_BYTES} bytes", "limit": MAX_BODY_BYTES})
    return web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, MAX_BODY_BYTES + 1, text=body, content_type="application/json")


async def _turn_json(conversation: Conversation, turn: DialogTurn) -> dict[str, Any]:
    reply = turn.reply
    ended = reply.hangup or reply.handoff is not None
    handoff_id = await conversation.hand_off(turn) if reply.handoff else None
    return {
        "conversation_id": conversation.call.call_id,
        "replies": [reply.text] if reply.text else [],
        "intent": turn.intent,
        "confidence": turn.confidence,
        "entities": turn.entities,
        "requested_slot": turn.requested_slot,
        "active_loop": turn.active_loop,
        "expect": reply.expect,
        "handoff": dict(asdict(reply.handoff), handoff_id=handoff_id) if reply.handoff else None,
        "slots": {k: v for k, v in turn.slots.items() if v is not None},
        "hangup": reply.hangup,
        "ended": ended,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request, read only up to MAX_BODY_BYTES (413 beyond)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
    try:
        body = fields.parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ProtocolError):
        raise error(web.HTTPBadRequest, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "request body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str) -> str | None:
    try:
        return fields.text(body.get(name), name, fields.MAX_NUMBER_CHARS)
    except ProtocolError as exc:
        raise error(web.HTTPBadRequest, str(exc), name) from None


def _text(body: dict[str, Any], limit: int) -> str:
    """What the caller typed: a non-empty string of at most `limit` characters (limits.max_text_chars)."""
    text = body["text"]
    if not isinstance(text, str):
        raise error(web.HTTPBadRequest, f"text must be a string, got {fields.type_name(text)}", "text")
    if not text.strip():
        raise error(web.HTTPBadRequest, 'text is empty; send {"no_input": true} for silence', "text")
    if len(text) > limit:
        message = f"text is {len(text)} characters long; at most {limit} are accepted (limits.max_text_chars)"
        raise error(web.HTTPBadRequest, message, "text", limit=limit)
    return text


def _keys(body: dict[str, Any], limit: int) -> str:
    """Keypad input: DTMF keys only, at most `limit` of them (limits.max_dtmf_digits)."""
    keys = body["dtmf"]
    if not isinstance(keys, str) or not keys:
        raise error(web.HTTPBadRequest, "dtmf must be a non-empty string of keys 0-9 * # A-D", "dtmf")
    if len(keys) > limit:
        raise error(web.HTTPBadRequest, f"dtmf has {len(keys)} keys; at most {limit} are accepted (limits.max_dtmf_digits)",
                    "dtmf", limit=limit)  # fmt: skip
    wrong = sorted(set(keys) - fields.DTMF_DIGITS)
    if wrong:
        raise error(web.HTTPBadRequest, f"dtmf {fields.shown(wrong[0])} is not a key; use 0-9 * # A-D", "dtmf")
    return keys


def _confidence(body: dict[str, Any]) -> float | None:
    confidence = body.get("asr_confidence")
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise error(web.HTTPBadRequest, "asr_confidence must be a number from 0 to 1", "asr_confidence")
    return float(confidence)


def routes(runtime: Runtime) -> list[web.RouteDef]:
    async def create(request: web.Request) -> web.Response:
        body = await _body(request)
        dialled, caller = _number(body, "to"), _number(body, "from")
        try:
            number, tenant = runtime.settings.tenant_for(dialled)
        except LookupError as exc:
            raise error(web.HTTPNotFound, str(exc), "to") from None
        call = CallRecord(
            call_id=f"text-{uuid.uuid4().hex[:16]}",
            tenant=number,
            company=tenant.company,
            language=tenant.language,
            channel="text",
            dialled=dialled,
            caller=caller,
            started_at=time.time(),
        )
        conversation = Conversation(
            call, tenant, runtime.dialog, runtime.write_behind, runtime.settings.timeouts.max_no_input
        )
        opened = request.app[CONVERSATIONS][call.call_id] = OpenConversation(conversation, busy=1)
        try:
            turn = await conversation.start()
            now = time.time()
            await conversation.bot_said(turn.reply, now, now)
            result = await _turn_json(conversation, turn)
        except BaseException:
            # A start that failed leaves no open conversation behind (nor an open call row).
            with contextlib.suppress(Exception):
                await _end(request.app, conversation, "start_failed")
            raise
        finally:
            opened.busy -= 1
            opened.last_active = time.monotonic()
        if result["ended"]:  # e.g. the dialog engine is down: handed over at once
            await _end(request.app, conversation, "handoff" if turn.reply.handoff else "bot_hangup")
        return web.json_response(result)

    @contextlib.asynccontextmanager
    async def _using(request: web.Request) -> AsyncIterator[Conversation]:
        """The open conversation of the URL, kept from idle expiry while the request runs."""
        opened = request.app[CONVERSATIONS].get(request.match_info["cid"])
        if opened is None or opened.conversation.ended:
            raise error(web.HTTPNotFound, f"no open conversation {fields.shown(request.match_info['cid'])}")
        opened.busy += 1
        try:
            yield opened.conversation
        finally:
            opened.busy -= 1
            opened.last_active = time.monotonic()

    async def message(request: web.Request) -> web.Response:
        async with _using(request) as conversation:
            body = await _body(request)
            limits = runtime.settings.limits
            if body.get("text") is not None:
                text, confidence = _text(body, limits.max_text_chars), _confidence(body)
                now = time.time()
                # `asr_confidence` lets a test say how sure a recognizer would have been of this text.
                turn = await conversation.caller_said(text, now, now, confidence, meta={"typed": True})
            elif body.get("dtmf") is not None:
                turn = await conversation.dtmf(_keys(body, limits.max_dtmf_digits))
            elif body.get("no_input") is True:
                turn = await conversation.no_input()
            else:
                raise error(web.HTTPBadRequest, 'send {"text": "..."}, {"dtmf": "1"} or {"no_input": true}', "text")
            now = time.time()
            await conversation.bot_said(turn.reply, now, now)
            result = await _turn_json(conversation, turn)
            if result["ended"]:
                await _end(request.app, conversation, "handoff" if turn.reply.handoff else "bot_hangup")
        return web.json_response(result)

    async def delete(request: web.Request) -> web.Response:
        async with _using(request) as conversation:
            await _end(request.app, conversation, "caller_hangup")
        return web.json_response({"ended": True})

    return [
        web.post("/api/conversations", create),
        web.post("/api/conversations/{cid}/messages", message),
        web.delete("/api/conversations/{cid}", delete),
    ]


async def end_all(app: web.Application) -> None:
    """On shutdown (aiohttp's on_shutdown): no text conversation is left open in storage."""
    for opened in list(app[CONVERSATIONS].values()):
        await _end(app, opened.conversation, "server_shutdown")


async def _end(app: web.Application, conversation: Conversation, reason: str) -> None:
    app[CONVERSATIONS].pop(conversation.call.call_id, None)
    await conversation.end(reason)


async def expire_idle(app: web.Application, idle_s: float, now: Callable[[], float] = time.monotonic) -> int:
    """End the text conversations nobody has used for `idle_s` (limits.text_idle_s); returns how many.

    A client that starts conversations and walks away would otherwise keep each
    one in memory and its call row open for good. Ended ones get ended_at, the
    end reason `idle_timeout` and a HANGUP event, as a caller's hang-up does.
    """
    idle = [o for o in app[CONVERSATIONS].values() if not o.busy and now() - o.last_active >= idle_s]
    for opened in idle:
        try:
            await _end(app, opened.conversation, "idle_timeout")
        except Exception:
            log.exception("text.expire_failed", extra={"call_id": opened.conversation.call.call_id})
    if idle:
        log.info("text.expired", extra={"count": len(idle)})
    return len(idle)


def setup(app: web.Application, runtime: Runtime) -> None:
    """The open conversations and the task that expires idle ones (checked every idle_s / 10, at most a minute)."""
    idle_s = runtime.settings.limits.text_idle_s
    app[CONVERSATIONS] = {}

    async def sweep() -> None:
        while True:
            await asyncio.sleep(min(60.0, idle_s / 10))
            await expire_idle(app, idle_s)

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        app[IDLE_SWEEPER] = asyncio.create_task(sweep())
        yield
        app[IDLE_SWEEPER].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[IDLE_SWEEPER]

    app.cleanup_ctx.append(sweeper)
