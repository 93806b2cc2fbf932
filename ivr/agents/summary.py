"""A one-paragraph English summary of a handoff package, for the agent's call pop.

The package (see `Conversation.hand_off`) holds the reason, the form the caller
was in, the collected slots and the intent history. The agent reads this line
while the phone rings, so it says in plain words why the caller wants a person,
what the bot already collected and what the caller said last, e.g.

    Asked for a person while placing an order. Collected: product Kaffeemaschine,
    quantity 2. Last intents: place_order, inform, request_human.

Values are the caller's as stored (in the caller's language); nothing here is
translated or interpreted beyond the fixed phrases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Why the bot handed over (reasons of dialogs/actions and the voice front end).
REASONS = {
    "caller_request": "Asked for a person",
    "dtmf_agent": "Pressed 0 for a person",
    "angry_caller": "Sounded upset and was handed over",
    "no_input": "Did not answer the bot's questions",
    "no_match": "The bot did not understand the caller",
    "address_change": "Wants a different delivery address",
    "unanswered_question": "Had a question the bot could not answer",
    "urgent": "Reported an urgent problem",
    "closed": "Called outside opening hours",
}
# What the caller was doing (the form active when they were handed over).
FORMS = {
    "order_form": "placing an order",
    "order_status_form": "asking where an order is",
    "cancel_order_form": "cancelling an order",
    "ticket_form": "reporting a problem",
    "callback_form": "arranging a callback",
    "handoff_offer_form": "deciding whether to talk to a person",
}
# Slots that are dialog bookkeeping or shown elsewhere in the pop (caller number).
HIDDEN_SLOTS = frozenset(
    {"handoff_reason", "handoff_wanted", "caller_number", "caller_number_spoken", "unsure_confirmed", "no_match_count"}
)
MAX_VALUE_CHARS = 60
MAX_SLOTS = 8
LAST_INTENTS = 3


def summarize(package: Mapping[str, Any]) -> str:
    """Why, what was collected, and the last intents, in at most three short sentences."""
    sentences = [_why(package)]
    slots = _section(package, "slots")
    collected = [f"{_label(k)} {_value(v)}" for k, v in slots.items() if k not in HIDDEN_SLOTS and _shown(v)]
    if collected:
        more = len(collected) - MAX_SLOTS
        listed = ", ".join(collected[:MAX_SLOTS]) + (f" and {more} more" if more > 0 else "")
        sentences.append(f"Collected: {listed}.")
    form = _section(package, "form")
    requested = form.get("requested_slot")
    if requested and form.get("name") and requested not in HIDDEN_SLOTS:
        sentences.append(f"Was being asked for the {_label(str(requested))}.")
    intents = [
        str(i.get("intent")) for i in (package.get("intents") or []) if isinstance(i, Mapping) and i.get("intent")
    ]
    if intents:
        sentences.append(f"Last intents: {', '.join(intents[-LAST_INTENTS:])}.")
    return " ".join(sentences)


def _section(package: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested mapping of the package, empty when it is missing or not a mapping."""
    value = package.get(key)
    return value if isinstance(value, Mapping) else {}


def _why(package: Mapping[str, Any]) -> str:
    reason = str(package.get("reason") or "")
    why = REASONS.get(reason) or (f"Handed over ({reason.replace('_', ' ')})" if reason else "Handed over")
    form = _section(package, "form")
    name = form.get("name")
    if name:
        doing = FORMS.get(str(name)) or f"in the {str(name).removesuffix('_form').replace('_', ' ')} dialog"
        why += f" while {doing}" if doing in FORMS.values() else f" {doing}"
    return why + "."


def _label(slot: str) -> str:
    return slot.replace("_", " ")


def _shown(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_value(v) for v in value)
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
