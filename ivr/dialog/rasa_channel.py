"""A Rasa input channel for the IVR, loaded by `rasa run` (see credentials).

Rasa's REST channel returns only the bot's messages; the IVR also needs what
Rasa understood (intent, confidence, entities, slots, active form) for the
transcript and for grammar choice, and it must set per-call slots (tenant
company, language, caller number) before the first message. One POST does all
of that, so a turn costs one local HTTP round trip.

Every request must carry the token of the `ivr serve` that started this
process (ivr/dialog/channel_token.py), so that a second instance on the same
machine cannot use it by mistake.

This module runs inside the Rasa process: it imports only Rasa, Sanic and that
small module.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.core.events import Event, SlotSet, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from ivr.dialog import channel_token

CHANNEL_NAME = "ivr"


class IvrInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hook = Blueprint("ivr_webhook", __name__)
        token = os.environ.get(channel_token.ENV)

        @hook.middleware("request")
        async def only_our_ivr(request: Request) -> Any:
            if not channel_token.accepted(token, request.headers.get(channel_token.HEADER)):
                return response.json({"error": f"missing or wrong {channel_token.HEADER}"}, status=401)
            return None

        @hook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            """Ready only with a loaded model: a broken model file must not look healthy."""
            agent = request.app.ctx.agent
            if agent is None or not agent.is_ready():
                return response.json({"status": "no model loaded"}, status=503)
            return response.json({"status": "ok"})

        @hook.route("/turn", methods=["POST"])
        async def turn(request: Request) -> HTTPResponse:
            body: dict[str, Any] = request.json or {}
            sender = body.get("sender")
            text = body.get("text")
            if not isinstance(sender, str) or not isinstance(text, str) or not text:
                return response.json({"error": "sender and text are required strings"}, status=400)
            agent = request.app.ctx.agent
            if agent is None or not agent.is_ready():
                return response.json({"error": "no model loaded"}, status=503)
            collector = CollectingOutputChannel()
            slots = body.get("slots") or {}
            if slots:
                # The IVR sends the call's slots with every turn; a tracker that lost them (Rasa restarted)
                # gets them back, one that holds them is left alone.
                tracker = await agent.processor.fetch_tracker_and_update_session(sender, collector)
                changed = [SlotSet(name, value) for name, value in slots.items() if tracker.get_slot(name) != value]
                if changed:
                    for event in changed:
                        tracker.update(event)
                    await agent.processor.save_tracker(tracker)
            await on_new_message(
                UserMessage(text, collector, sender, input_channel=CHANNEL_NAME, metadata=body.get("metadata"))
            )
            tracker = await agent.processor.get_tracker(sender)
            # The caller's message as Rasa understood it. Not `tracker.latest_message`: after a
            # form has run, the tracker store hands that back as the form's trigger message.
            latest = next((e for e in reversed(tracker.events) if isinstance(e, UserUttered)), None)
            return response.json(
                {
                    "messages": collector.messages,
                    "intent": latest.intent if latest else None,
                    "entities": latest.entities if latest else [],
                    "slots": tracker.current_slot_values(),
                    "collected": collected_this_turn(tracker.events),
                    "active_loop": tracker.active_loop_name,
                }
            )

        @hook.route("/end", methods=["POST"])
        async def end(request: Request) -> HTTPResponse:
            """Forget a finished call's tracker (the IVR keeps the transcript)."""
            sender = (request.json or {}).get("sender")
            agent = request.app.ctx.agent
            store: Any = agent.tracker_store if agent else None
            while hasattr(store, "_tracker_store"):  # unwrap Rasa's fail-safe/awaitable wrappers
                store = store._tracker_store
            if isinstance(sender, str) and isinstance(getattr(store, "store", None), dict):
                store.store.pop(sender, None)
            return response.json({"status": "ok"})

        return hook


def collected_this_turn(events: Any) -> dict[str, Any]:
    """Slot values set since the caller's last message, even if a form reset them again in the same turn.

    A form that completes clears its slots before the turn ends, so the final
    slot values would never show an agent the order number the bot just looked up.
    """
    turn: list[Event] = []
    for event in reversed(list(events)):
        if isinstance(event, UserUttered):
            break
        turn.append(event)
    return {e.key: e.value for e in reversed(turn) if isinstance(e, SlotSet) and e.value is not None}
