"""Universal commands that work in every state: a person, cancel, help, repeat.

They run when a form rejects the caller's words (see forms.py: utterances with
these intents never fill a slot), so they end or resume whatever form is active.
A handoff outside business hours offers a callback instead of a queue nobody
answers.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions.context import ivr_payload, latest_intent, storage, tenant_of
from ivr.storage import CallEvent, EventName

REASON_BY_INTENT = {"request_human": "caller_request", "angry": "angry_caller"}
FORM_RESET = [ActiveLoop(None), SlotSet("requested_slot", None)]


def handoff_reason(tracker: Tracker) -> str:
    """Why the call goes to a person: the IVR's own reason (no input, DTMF 0) wins."""
    user = tracker.get_last_event_for("user") or {}
    metadata = user.get("metadata") or {}
    if metadata.get("reason"):
        return str(metadata["reason"])
    if metadata.get("dtmf") == "0":
        return "dtmf_agent"
    return tracker.get_slot("handoff_reason") or REASON_BY_INTENT.get(latest_intent(tracker) or "", "caller_request")


def purpose_of(tracker: Tracker) -> str:
    """Which queue fits: what the caller was doing when they asked for a person."""
    form = tracker.active_loop.get("name") if tracker.active_loop else None
    if form in ("order_form", "order_status_form", "cancel_order_form"):
        return "orders"
    if form == "ticket_form" or latest_intent(tracker) == "angry" or tracker.get_slot("handoff_reason") == "urgent":
        return "complaints"
    return "default"


async def log_event(tracker: Tracker, event: EventName, **data: Any) -> None:
    tenant, _ = tenant_of(tracker)
    await storage().log_event(CallEvent(tracker.sender_id, tenant, time.time(), event, data))


class ActionHandoff(Action):
    """Hand the call to a person, or offer a callback when nobody is there."""

    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        _, tenant = tenant_of(tracker)
        reason = handoff_reason(tracker)
        if not tenant.is_open(datetime.now(timezone.utc)):
            await log_event(tracker, EventName.CLOSED_HOURS, reason=reason)
            dispatcher.utter_message(response="utter_closed_offer_callback")
            return [*FORM_RESET, SlotSet("handoff_reason", reason), FollowupAction("callback_form")]
        queue = tenant.queue_for(purpose_of(tracker))
        dispatcher.utter_message(
            response="utter_handoff",
            json_message=ivr_payload(handoff={"reason": reason, "queue": queue}, barge_in=False),
        )
        return [*FORM_RESET, SlotSet("handoff_reason", reason)]


class ActionCancel(Action):
    """Stop the current form; nothing of it is stored."""

    def name(self) -> str:
        return "action_cancel"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        form: str | None = tracker.active_loop.get("name") if tracker.active_loop else None
        if form:
            await log_event(tracker, EventName.FORM_CANCELLED, form=form)
            dispatcher.utter_message(response="utter_cancelled")
        else:
            dispatcher.utter_message(response="utter_how_can_i_help")
        return [*FORM_RESET, *clear_form_slots(domain, form)]


def clear_form_slots(domain: dict, form: str | None) -> list[EventType]:
    if not form:
        return []
    slots = domain.get("forms", {}).get(form, {}).get("required_slots", [])
    return [SlotSet(slot, None) for slot in slots] + [SlotSet("no_match_count", 0)]


class ActionHelp(Action):
    """Help for the question being asked now (examples and the keypad alternative), then ask again."""

    def name(self) -> str:
        return "action_help"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        slot = tracker.get_slot("requested_slot")
        form = tracker.active_loop.get("name") if tracker.active_loop else None
        if form and slot:
            dispatcher.utter_message(response=f"utter_help_{slot}")
            return [FollowupAction(form)]
        dispatcher.utter_message(response="utter_help")
        return []


class ActionRepeat(Action):
    """Replay the last prompt (the voice front end keeps it), and stay in the form."""

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        dispatcher.utter_message(json_message=ivr_payload(repeat_last=True))
        form = tracker.active_loop.get("name") if tracker.active_loop else None
        return [FollowupAction(form)] if form else []
