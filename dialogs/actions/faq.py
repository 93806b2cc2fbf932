"""FAQ answers from the tenant's configuration, not from the trained model.

Rasa's ResponseSelector decides *which* topic the caller asks about
(`faq/opening_hours`); the words they hear come from the tenant's `faq`
settings, so a business changes an answer without retraining. A topic the
tenant has no answer for is not guessed at: the caller is offered a person or
a ticket.
"""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions.context import language_of, tenant_of
from dialogs.actions.handoff import log_event
from ivr.storage import EventName


def faq_topic(tracker: Tracker) -> str | None:
    """`opening_hours` from the ResponseSelector's `faq/opening_hours`."""
    selector = tracker.latest_message.get("response_selector") or {}
    key = ((selector.get("faq") or {}).get("response") or {}).get("intent_response_key") or ""
    return key.split("/", 1)[1] if key.startswith("faq/") else None


class ActionAnswerFaq(Action):
    def name(self) -> str:
        return "action_answer_faq"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        _, tenant = tenant_of(tracker)
        topic = faq_topic(tracker)
        answer = tenant.faq_answer(topic, language_of(tracker)) if topic else None
        await log_event(tracker, EventName.FAQ, topic=topic, answered=answer is not None)
        form = tracker.active_loop.get("name") if tracker.active_loop else None
        if answer is None:
            dispatcher.utter_message(response="utter_faq_no_answer")
            return [SlotSet("faq_topic", topic), FollowupAction(form or "handoff_offer_form")]
        dispatcher.utter_message(text=answer)
        if form:  # a question in the middle of a form: answer it, then go on where we were
            return [SlotSet("faq_topic", topic), FollowupAction(form)]
        return [SlotSet("faq_topic", topic), FollowupAction("utter_anything_else")]
