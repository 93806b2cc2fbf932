"""Parsing a caller's short answers: yes/no, digit strings, quantities, free text.

Shared by all forms. Keypad answers arrive as digit strings ("1" yes, "2" no
on a yes/no prompt; "123456" for a number finished with #), spoken numbers are
turned into digits by ivr.dialog.numbers (text2num), and the NLU intent decides
yes/no when the words alone do not.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Tracker

from dialogs.actions.context import language_of, latest_intent, latest_text
from ivr.dialog import numbers


class Invalid(Exception):
    """The caller's words do not answer the question; `response` says why (or None: just reprompt)."""

    def __init__(self, response: str | None = None, reset: tuple[str, ...] = (), **values: Any):
        super().__init__(response)
        self.response = response
        self.reset = reset  # slots to ask again (e.g. name and postcode that matched no customer)
        self.values = values


YES = {"de": ("ja", "jawohl", "genau", "richtig", "stimmt", "korrekt", "gerne", "gern", "okay", "ok", "passt"),
       "en": ("yes", "yeah", "yep", "correct", "right", "sure", "okay", "ok", "please do")}  # fmt: skip
NO = {"de": ("nein", "nee", "ne", "nö", "falsch", "nicht"), "en": ("no", "nope", "wrong", "not")}
DTMF_YES, DTMF_NO = "1", "2"
FILLERS = re.compile(r"^(?:(?:äh+m?|ähm|hm+|also|ja|okay|ok|uh+|um+|so|well)\s+)+", re.IGNORECASE)


def yes_no(tracker: Tracker) -> bool:
    """True for yes, False for no; Invalid when the answer is neither."""
    text = latest_text(tracker).lower().strip(" .!?#")
    if text == DTMF_YES:
        return True
    if text == DTMF_NO:
        return False
    intent = latest_intent(tracker)
    if intent == "affirm":
        return True
    if intent == "deny":
        return False
    words = set(re.findall(r"\w+", text))
    language = language_of(tracker)
    yes, no = bool(words & set(YES[language])), bool(words & set(NO[language]))
    if yes != no:
        return yes
    raise Invalid()


def keyed(tracker: Tracker) -> bool:
    """The answer came from the keypad (the front end marks DTMF input)."""
    return bool(((tracker.get_last_event_for("user") or {}).get("metadata") or {}).get("dtmf"))


def digits(text: str, tracker: Tracker, minimum: int, maximum: int) -> str:
    """A number said digit by digit or in groups, or typed on the keypad."""
    found = numbers.digit_string(text, language_of(tracker))
    if found is None or not minimum <= len(found) <= maximum:
        raise Invalid()
    return found


def quantity(text: str, tracker: Tracker) -> int | None:
    return numbers.quantity(text, language_of(tracker))


def free_text(tracker: Tracker, min_words: int = 2) -> str:
    """The caller's own words, kept verbatim apart from leading fillers (numbers as said, not as digits)."""
    metadata = (tracker.get_last_event_for("user") or {}).get("metadata") or {}
    text = FILLERS.sub("", str(metadata.get("said") or latest_text(tracker))).strip()
    if len(text.split()) < min_words:
        raise Invalid()
    return text
