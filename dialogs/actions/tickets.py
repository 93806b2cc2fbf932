"""Tickets (faults, complaints) and callback requests.

The description is kept in the caller's own words. The callback number
defaults to the caller ID, but only after the caller confirmed it (a withheld
or office number is common). Ticket numbers are read back digit by digit; the
caller can have them repeated ("repeat" replays the last prompt).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions import answers
from dialogs.actions.answers import Invalid
from dialogs.actions.context import language_of, storage, tenant_of
from dialogs.actions.forms import IvrForm
from dialogs.actions.handoff import clear_form_slots, log_event
from ivr.dialog.numbers import spoken_digits
from ivr.storage import EventName

CATEGORIES = ("defect", "delivery", "billing", "service", "other")
PHONE_DIGITS = (6, 15)
MENU = {"1": "defect", "2": "delivery", "3": "billing", "4": "service", "5": "other"}


def entity_value(tracker: Tracker, entity: str) -> Any:
    return next(
        (e.get("value") for e in tracker.latest_message.get("entities") or [] if e.get("entity") == entity), None
    )


def caller_number(tracker: Tracker) -> str | None:
    number = tracker.get_slot("caller_number") or ""
    digits = "".join(ch for ch in number if ch.isdigit())
    return number if PHONE_DIGITS[0] <= len(digits) <= PHONE_DIGITS[1] else None


class CallbackNumberSlots:
    """`callback_ok` (use the caller ID?) then `callback_number` if not."""

    confirm_when_unsure: tuple[str, ...] = ("callback_number",)

    def callback_slots(self, tracker: Tracker) -> list[str]:
        if caller_number(tracker) is None:
            return ["callback_number"]
        return ["callback_ok"] + (["callback_number"] if tracker.get_slot("callback_ok") is False else [])

    async def parse_callback_ok(self, text: str, tracker: Tracker) -> bool:
        return answers.yes_no(tracker)

    async def parse_callback_number(self, text: str, tracker: Tracker) -> str:
        return answers.digits(text, tracker, *PHONE_DIGITS)

    async def on_filled(
        self, slot: str, value: Any, tracker: Tracker, dispatcher: CollectingDispatcher
    ) -> list[EventType]:
        if slot == "callback_ok" and value:
            return [SlotSet("callback_number", caller_number(tracker))]
        return []


class ValidateTicketForm(CallbackNumberSlots, IvrForm):
    form = "ticket_form"
    submit = "action_create_ticket"
    prefillable = ("ticket_category",)

    def slots(self, tracker: Tracker) -> list[str]:
        return ["ticket_category", "ticket_description", *self.callback_slots(tracker), "urgency"]

    async def prefill(self, text: str, tracker: Tracker, dispatcher: CollectingDispatcher) -> list[EventType]:
        events = await super().prefill(text, tracker, dispatcher)
        if entity_value(tracker, "urgency") in ("high", "normal"):
            events.append(SlotSet("urgency", entity_value(tracker, "urgency")))
        return events

    async def parse_ticket_category(self, text: str, tracker: Tracker) -> str:
        value = entity_value(tracker, "ticket_category") or MENU.get(text.strip(" #"))
        if value not in CATEGORIES:
            raise Invalid()
        return value

    async def parse_ticket_description(self, text: str, tracker: Tracker) -> str:
        return answers.free_text(tracker, min_words=2)

    async def parse_urgency(self, text: str, tracker: Tracker) -> str:
        said = entity_value(tracker, "urgency")
        if said in ("high", "normal"):
            return said
        return "high" if answers.yes_no(tracker) else "normal"


class ActionCreateTicket(Action):
    def name(self) -> str:
        return "action_create_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        tenant_number, tenant = tenant_of(tracker)
        ticket = await storage().create_ticket(
            tenant=tenant_number,
            category=tracker.get_slot("ticket_category"),
            description=tracker.get_slot("ticket_description"),
            callback_number=tracker.get_slot("callback_number"),
            urgency=tracker.get_slot("urgency"),
            call_id=tracker.sender_id,
            caller=tracker.get_slot("caller_number"),
        )
        await log_event(tracker, EventName.FORM_COMPLETED, form="ticket_form")
        await log_event(tracker, EventName.TICKET_CREATED, ticket_number=ticket.ticket_number, category=ticket.category)
        spoken = spoken_digits(ticket.ticket_number)
        done = [*clear_form_slots(domain, "ticket_form"), SlotSet("last_ticket_number", ticket.ticket_number)]
        if ticket.urgency == "high" and tenant.is_open(datetime.now(timezone.utc)):
            # Urgent callers get a person now; the agent sees the ticket in the handoff package.
            dispatcher.utter_message(response="utter_ticket_created_urgent", ticket_number=spoken)
            return [*done, SlotSet("handoff_reason", "urgent"), FollowupAction("action_handoff")]
        dispatcher.utter_message(response="utter_ticket_created", ticket_number=spoken)
        return [*done, FollowupAction("utter_anything_else")]


class ValidateCallbackForm(CallbackNumberSlots, IvrForm):
    form = "callback_form"
    submit = "action_request_callback"

    def slots(self, tracker: Tracker) -> list[str]:
        return self.callback_slots(tracker)


class ActionRequestCallback(Action):
    def name(self) -> str:
        return "action_request_callback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        tenant_number, _ = tenant_of(tracker)
        number = tracker.get_slot("callback_number")
        await storage().add_callback(
            tenant=tenant_number, number=number, reason=tracker.get_slot("handoff_reason") or "closed",
            language=language_of(tracker), call_id=tracker.sender_id,
        )  # fmt: skip
        await log_event(tracker, EventName.CALLBACK_REQUESTED, reason=tracker.get_slot("handoff_reason"))
        dispatcher.utter_message(response="utter_callback_booked", number=spoken_digits(number))
        return clear_form_slots(domain, "callback_form")
