"""IVR conventions for every form, in one base class.

VoiceXML and Asterisk practice, applied to Rasa forms:

* Every requested slot is mapped `from_text` (see the domain), except when the
  caller used a universal command (help, repeat, a person, cancel, goodbye, an
  FAQ question): then nothing is extracted, the form rejects, and the generic
  rules run `action_help`, `action_repeat`, `action_handoff`, `action_cancel`
  or `action_answer_faq`, which resume or end the form.
* The caller's words are parsed here by `parse_<slot>(text, tracker)`, with the
  tenant's catalogue and the number normalizer, not by the NLU model alone: a
  phone answer is often just "drei" or "ja genau".
* Counted no-match and no-input per prompt: 1st a short reprompt, 2nd help with
  examples and the keypad alternative, 3rd a person (or a callback when the
  center is closed). The caller is never hung up on for being confused.
* A value the caller corrects later ("nein, drei Stück" at the read-back)
  replaces the old one.
"""

from __future__ import annotations

import abc
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction

from dialogs.actions.answers import Invalid, yes_no
from dialogs.actions.context import language_of, latest_intent, latest_text, settings
from dialogs.actions.handoff import log_event
from ivr.dialog.numbers import digit_string, spoken_digits
from ivr.storage import EventName

UNSURE = "unsure_confirmed"
UNIVERSAL_INTENTS = frozenset({"request_human", "angry", "cancel", "goodbye", "help", "repeat", "faq", "bot_challenge"})
MAX_TRIES = 3


class IvrForm(FormValidationAction):
    """Subclasses define `form` (name), `submit` (action), `slots()` (in order) and `parse_<slot>` methods."""

    form = ""
    submit = ""  # the action that acts on the completed form
    prefillable: tuple[str, ...] = ()
    confirm_when_unsure: tuple[str, ...] = ()  # slots read back when speech recognition was not sure

    def name(self) -> str:
        return f"validate_{self.form}"

    @abc.abstractmethod
    def slots(self, tracker: Tracker) -> list[str]:
        """The slots still to ask for, in order; may depend on earlier answers (abstract: rasa_sdk then
        does not register this base class as an action)."""

    async def prefill(self, text: str, tracker: Tracker, dispatcher: CollectingDispatcher) -> list[EventType]:
        """Slots the form-opening utterance already answers (only values that parse cleanly)."""
        events: list[EventType] = []
        for slot in self.prefillable:
            try:
                value = await getattr(self, f"parse_{slot}")(text, tracker)
            except Invalid:
                continue
            events += await self._fill(slot, value, tracker, dispatcher)
        return events

    async def _fill(self, slot: str, value: Any, tracker: Tracker, dispatcher: CollectingDispatcher) -> list[EventType]:
        """The slot's value plus what follows from it, applied to `tracker` for the next question."""
        tracker.slots[slot] = value
        events: list[EventType] = [SlotSet(slot, value)]
        events += await self.on_filled(slot, value, tracker, dispatcher)
        for event in events:
            if event.get("event") == "slot":
                tracker.slots[event["name"]] = event["value"]
        return events

    async def on_filled(
        self, slot: str, value: Any, tracker: Tracker, dispatcher: CollectingDispatcher
    ) -> list[EventType]:
        """Extra events when a slot was filled (e.g. a read-back value changed)."""
        return []

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        requested = tracker.get_slot("requested_slot")
        intent = latest_intent(tracker)
        if requested is None:
            # activation (Rasa has already set the active loop, but no slot was asked for yet):
            # the request itself may already carry answers ("zwei Kaffeemaschinen bitte")
            await log_event(tracker, EventName.FORM_STARTED, form=self.form)
            events = self._next(tracker, await self.prefill(latest_text(tracker), tracker, dispatcher))
            if events[-1]["value"] is None:
                # Answered completely by the request itself ("where is order 271828"): the form ends
                # in the same step that started it, where the rules' `active_loop` condition cannot
                # match yet, so the submit action is chained here.
                events.append(FollowupAction(self.submit))
            return events
        if intent in UNIVERSAL_INTENTS:
            # Setting only `requested_slot` rejects an answer (the generic rules handle the
            # command) or, when the form resumes after such a command, asks the same slot again.
            return self._next(tracker, [])
        if intent == "no_input":
            # Re-setting a counter is a validated slot for Rasa, so the form is not rejected
            # (rejected, the generic no-input rule would answer outside the form).
            same = SlotSet("no_match_count", tracker.get_slot("no_match_count") or 0)
            return [same, *self._retry(dispatcher, tracker, requested, no_input_count(tracker), None)]
        if requested == UNSURE:
            return await self._unsure_answered(dispatcher, tracker)
        if requested in self.confirm_when_unsure and recognition_unsure(tracker):
            heard = digit_string(latest_text(tracker), language_of(tracker))
            if heard:
                # A misheard number would find somebody else's order: read it back before using it.
                return [SlotSet("no_match_count", tracker.get_slot("no_match_count") or 0), SlotSet(requested, None),
                        SlotSet("unsure_slot", requested), SlotSet("unsure_value", heard),
                        SlotSet("unsure_spoken", spoken_digits(heard)), SlotSet("requested_slot", UNSURE)]  # fmt: skip
        try:
            value = await getattr(self, f"parse_{requested}")(latest_text(tracker), tracker)
        except Invalid as problem:
            count = int(tracker.get_slot("no_match_count") or 0) + 1
            return [SlotSet("no_match_count", count), *self._retry(dispatcher, tracker, requested, count, problem)]
        events = [SlotSet("no_match_count", 0), *await self._fill(requested, value, tracker, dispatcher)]
        return self._next(tracker, events)

    async def _unsure_answered(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
        slot, value = tracker.get_slot("unsure_slot"), tracker.get_slot("unsure_value")
        try:
            right = yes_no(tracker)
        except Invalid as problem:
            count = int(tracker.get_slot("no_match_count") or 0) + 1
            return [SlotSet("no_match_count", count), *self._retry(dispatcher, tracker, UNSURE, count, problem)]
        clear = [SlotSet(UNSURE, None), SlotSet("unsure_slot", None), SlotSet("unsure_value", None),
                 SlotSet("unsure_spoken", None), SlotSet("no_match_count", 0)]  # fmt: skip
        for event in clear:
            tracker.slots[event["name"]] = event["value"]
        if not right:
            return [*clear, SlotSet("requested_slot", slot)]  # ask again
        try:
            parsed = await getattr(self, f"parse_{slot}")(str(value), tracker)
        except Invalid as problem:  # heard right, but e.g. no such order: the caller says it again
            return [*clear, *self._retry(dispatcher, tracker, slot, 1, problem)]
        return self._next(tracker, [*clear, *await self._fill(slot, parsed, tracker, dispatcher)])

    def _next(self, tracker: Tracker, events: list[EventType]) -> list[EventType]:
        missing = [slot for slot in self.slots(tracker) if tracker.get_slot(slot) is None]
        return [*events, SlotSet("requested_slot", missing[0] if missing else None)]

    def _retry(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, slot: str, count: int, problem: Invalid | None
    ) -> list[EventType]:
        """Counted reprompts: what was wrong (if known), then help with examples, then a person."""
        if count >= MAX_TRIES:
            return escalate("no_match" if problem is not None else "no_input")
        if problem is not None:
            dispatcher.utter_message(response=problem.response or "utter_not_understood_short", **problem.values)
        if count >= 2:
            dispatcher.utter_message(response=f"utter_help_{slot}")
        # Rasa has already put the raw words into the asked slot (`from_text`): clear them.
        resets = [SlotSet(name, None) for name in (slot, *(problem.reset if problem is not None else ()))]
        for event in resets:
            tracker.slots[event["name"]] = None
        return self._next(tracker, resets)


def recognition_unsure(tracker: Tracker) -> bool:
    """Speech the recognizer was not sure of (the front end sends its confidence; typed and keyed input has none)."""
    metadata = (tracker.get_last_event_for("user") or {}).get("metadata") or {}
    confidence = metadata.get("asr_confidence")
    return confidence is not None and float(confidence) < settings().dialog.confirm_below_confidence


def no_input_count(tracker: Tracker) -> int:
    """The voice front end counts silent prompts in a row and sends the count with `/no_input`."""
    metadata = (tracker.get_last_event_for("user") or {}).get("metadata") or {}
    return int(metadata.get("count") or 1)


def escalate(reason: str) -> list[EventType]:
    """End the form and hand the call over (action_handoff offers a callback when closed)."""
    return [SlotSet("no_match_count", 0), SlotSet("handoff_reason", reason), ActiveLoop(None),
            SlotSet("requested_slot", None), FollowupAction("action_handoff")]  # fmt: skip
