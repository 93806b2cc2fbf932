"""The start of a call and what happens when the caller is not understood.

The greeting names the tenant's company (or says the tenant's own greeting)
and always discloses that the caller talks to an automated assistant; it
cannot be barged into. Outside business hours the caller hears so at once.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions import answers
from dialogs.actions.context import latest_intent, tenant_of
from dialogs.actions.forms import MAX_TRIES, IvrForm
from dialogs.actions.handoff import log_event
from ivr.storage import EventName

NO_MATCH_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "inform", "dont_know"})


class ActionGreet(Action):
    def name(self) -> str:
        return "action_greet"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        _, tenant = tenant_of(tracker)
        if tenant.greeting:
            dispatcher.utter_message(response="utter_greet_custom", greeting=tenant.greeting)
        else:
            dispatcher.utter_message(response="utter_greet")
        if not tenant.is_open(datetime.now(timezone.utc)):
            dispatcher.utter_message(response="utter_closed_announcement")
        dispatcher.utter_message(response="utter_how_can_i_help")
        return []


def consecutive_no_matches(tracker: Tracker) -> int:
    """Caller turns in a row, up to this one, that matched nothing (counted from the events, so never stale)."""
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        if ((event.get("parse_data") or {}).get("intent") or {}).get("name") not in NO_MATCH_INTENTS:
            break
        count += 1
    return count


class ActionNoMatch(Action):
    """1st: short reprompt with examples, 2nd: full help with the keypad, 3rd: a person."""

    def name(self) -> str:
        return "action_no_match"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        count = consecutive_no_matches(tracker)
        await log_event(tracker, EventName.NO_MATCH, count=count, intent=latest_intent(tracker))
        if count >= MAX_TRIES:
            return [SlotSet("handoff_reason", "no_match"), FollowupAction("action_handoff")]
        dispatcher.utter_message(response="utter_default" if count == 1 else "utter_help")
        return []


class ValidateHandoffOfferForm(IvrForm):
    """ "Shall I connect you with a person?" after a question the bot cannot answer."""

    form = "handoff_offer_form"
    submit = "action_handoff_offer_done"

    def slots(self, tracker: Tracker) -> list[str]:
        return ["handoff_wanted"]

    async def parse_handoff_wanted(self, text: str, tracker: Tracker) -> bool:
        return answers.yes_no(tracker)


class ActionHandoffOfferDone(Action):
    def name(self) -> str:
        return "action_handoff_offer_done"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        wanted = tracker.get_slot("handoff_wanted")
        if wanted:
            return [SlotSet("handoff_wanted", None), SlotSet("handoff_reason", "unanswered_question"),
                    FollowupAction("action_handoff")]  # fmt: skip
        return [SlotSet("handoff_wanted", None), FollowupAction("utter_anything_else")]
