"""Text conversation endpoint: the same dialog as a call, without audio.

For businesses testing their flows and for automated checks. Each turn
returns the bot's replies plus what the dialog understood (intent and
confidence, entities, requested slot, handoff/hang-up).

    POST   /api/conversations                 {"to": "+4930…", "from": "+49171…"}
    POST   /api/conversations/{id}/messages   {"text": "…"[, "asr_confidence": 0.4]} | {"dtmf": "0"} | {"no_input": true}
    DELETE /api/conversations/{id}
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ivr.dialog.payloads import DialogTurn
from ivr.runtime import Runtime
from ivr.session.conversation import Conversation
from ivr.storage import CallRecord

CONVERSATIONS = web.AppKey("text_conversations", dict)


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
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="request body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


def routes(runtime: Runtime) -> list[web.RouteDef]:
    async def create(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            number, tenant = runtime.settings.tenant_for(body.get("to"))
        except LookupError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        call = CallRecord(
            call_id=f"text-{uuid.uuid4().hex[:16]}",
            tenant=number,
            company=tenant.company,
            language=tenant.language,
            channel="text",
            dialled=body.get("to"),
            caller=body.get("from"),
            started_at=time.time(),
        )
        conversation = Conversation(call, tenant, runtime.dialog, runtime.write_behind, runtime.settings.timeouts.max_no_input)
        request.app[CONVERSATIONS][call.call_id] = conversation
        turn = await conversation.start()
        now = time.time()
        await conversation.bot_said(turn.reply, now, now)
        result = await _turn_json(conversation, turn)
        if result["ended"]:  # handed over or refused at once: nothing more will come for this conversation
            await _end(request.app, conversation, "handoff" if turn.reply.handoff else "bot_hangup")
        return web.json_response(result)

    def _get(request: web.Request) -> Conversation:
        conversation = request.app[CONVERSATIONS].get(request.match_info["cid"])
        if conversation is None or conversation.ended:
            raise web.HTTPNotFound(text=f"no open conversation {request.match_info['cid']!r}")
        return conversation

    async def message(request: web.Request) -> web.Response:
        conversation = _get(request)
        body = await _body(request)
        if isinstance(body.get("text"), str) and body["text"].strip():
            now = time.time()
            confidence = body.get("asr_confidence")
            if confidence is not None and not (isinstance(confidence, (int, float)) and 0 <= confidence <= 1):
                raise web.HTTPBadRequest(text="asr_confidence must be a number from 0 to 1")
            # `asr_confidence` lets a test say how sure a recognizer would have been of this text.
            turn = await conversation.caller_said(body["text"], now, now, confidence, meta={"typed": True})
        elif isinstance(body.get("dtmf"), str) and body["dtmf"]:
            turn = await conversation.dtmf(body["dtmf"])
        elif body.get("no_input") is True:
            turn = await conversation.no_input()
        else:
            raise web.HTTPBadRequest(text='send {"text": "..."}, {"dtmf": "1"} or {"no_input": true}')
        now = time.time()
        await conversation.bot_said(turn.reply, now, now)
        result = await _turn_json(conversation, turn)
        if result["ended"]:
            await _end(request.app, conversation, "handoff" if turn.reply.handoff else "bot_hangup")
        return web.json_response(result)

    async def delete(request: web.Request) -> web.Response:
        await _end(request.app, _get(request), "caller_hangup")
        return web.json_response({"ended": True})

    return [
        web.post("/api/conversations", create),
        web.post("/api/conversations/{cid}/messages", message),
        web.delete("/api/conversations/{cid}", delete),
    ]


async def end_all(app: web.Application) -> None:
    """On shutdown (aiohttp's on_shutdown): no text conversation is left open in storage."""
    for conversation in list(app[CONVERSATIONS].values()):
        await _end(app, conversation, "server_shutdown")


async def _end(app: web.Application, conversation: Conversation, reason: str) -> None:
    app[CONVERSATIONS].pop(conversation.call.call_id, None)
    await conversation.end(reason)
