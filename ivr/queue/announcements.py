"""What a waiting caller hears, per language.

German telecom law (the TKG rules on waiting loops) requires the expected wait to be announced when
waiting starts, so every announcement states it, rounded the way people say
waiting times: "less than a minute", "about 3 minutes", above ten minutes in
steps of five. A caller who should not wait that long is offered a callback.
"""

from __future__ import annotations

import math
import re

from ivr.dialog.numbers import spoken_digits

# Words that ask for a callback instead of waiting (the recognizer's text, lower case).
_CALLBACK_WORDS = re.compile(
    r"\b(rückruf\w*|zurückruf\w*|zurückgerufen|ruf\w* .*\bzurück|callback|call me back|call back|ring me back)\b"
)  # "rufen Sie mich zurück": German splits the verb


def wait_phrase(seconds: float, language: str) -> str:
    """The expected wait as spoken: rounded up to whole minutes, above ten minutes to fives."""
    if seconds < 60:
        return "weniger als eine Minute" if language == "de" else "less than a minute"
    minutes = math.ceil(seconds / 60)
    if minutes > 10:
        minutes = math.ceil(minutes / 5) * 5
    if minutes == 1:
        return "etwa eine Minute" if language == "de" else "about one minute"
    return f"etwa {minutes} Minuten" if language == "de" else f"about {minutes} minutes"


def position_and_wait(position: int, wait_s: float | None, language: str) -> str:
    if language == "de":
        place = (
            "Sie sind als Nächstes an der Reihe."
            if position <= 1
            else f"Sie sind an Position {position} in der Warteschlange."
        )
        if wait_s is None:
            return place
        return f"{place} Die voraussichtliche Wartezeit beträgt {wait_phrase(wait_s, language)}."
    place = "You are next in line." if position <= 1 else f"You are number {position} in the queue."
    if wait_s is None:
        return place
    return f"{place} The expected waiting time is {wait_phrase(wait_s, language)}."


def welcome(language: str) -> str:
    return "Bitte bleiben Sie in der Leitung." if language == "de" else "Please stay on the line."


def callback_offer(language: str) -> str:
    if language == "de":
        return (
            "Wenn Sie lieber zurückgerufen werden möchten, statt zu warten, drücken Sie die 1 oder sagen Sie Rückruf."
        )
    return "If you would rather be called back than wait, press 1 or say call back."


def wants_callback(text: str) -> bool:
    return bool(_CALLBACK_WORDS.search(text.lower()))


# The callback and ticket lines: fixed sentences around the caller's number, so the fixed ones can be prerendered.
_CERTAINLY = {"de": "Gerne.", "en": "Certainly."}
_GOODBYE = {"de": "Auf Wiederhören.", "en": "Goodbye."}
_AGAIN = {"de": "Ich wiederhole:", "en": "Again:"}
_CALLBACK = {
    "de": "Wir rufen Sie unter der Nummer {digits} zurück, sobald ein Mitarbeiter frei ist.",
    "en": "We will call you back on {digits} as soon as an agent is free.",
}
_TICKET = {
    "de": "Wir haben Ihr Anliegen unter der Vorgangsnummer {digits} aufgenommen und melden uns bei Ihnen.",
    "en": "We have recorded your request under reference number {digits} and will get back to you.",
}


def _lang(language: str) -> str:
    """German for German callers, English for everyone else (as every announcement here)."""
    return "de" if language == "de" else "en"


def callback_taken(number: str, language: str) -> str:
    digits, lang = spoken_digits(number), _lang(language)
    return f"{_CERTAINLY[lang]} {_CALLBACK[lang].format(digits=digits)} {_GOODBYE[lang]}"


def ticket_taken(ticket_number: str, language: str) -> str:
    digits, lang = spoken_digits(ticket_number), _lang(language)
    return f"{_TICKET[lang].format(digits=digits)} {_AGAIN[lang]} {digits}. {_GOODBYE[lang]}"


def nobody_available(language: str) -> str:
    if language == "de":
        return "Im Moment ist leider kein Mitarbeiter erreichbar."
    return "Unfortunately no agent is available at the moment."


def waited_too_long(language: str) -> str:
    if language == "de":
        return "Leider sind alle Mitarbeiter weiterhin im Gespräch. Damit Sie nicht länger warten müssen:"
    return "All our agents are still busy. So that you do not have to wait any longer:"


def reconnecting(language: str) -> str:
    if language == "de":
        return "Die Verbindung zu Ihrem Ansprechpartner wurde unterbrochen. Ich verbinde Sie sofort wieder, Sie sind als Nächstes an der Reihe."
    return "The connection to your agent was lost. I am reconnecting you now, you are next in line."


def transferring(language: str) -> str:
    return (
        "Ich verbinde Sie weiter. Einen Moment bitte."
        if language == "de"
        else "I am transferring you. One moment please."
    )


def service_ending(language: str) -> str:
    """The server is being shut down while the caller waits: said before the callback (or ticket) line."""
    return "Wir müssen dieses Gespräch leider beenden." if language == "de" else "We have to end this call now."


def fixed_announcements(language: str) -> list[str]:
    """What waiting callers hear that no caller changes, for prerendering at start-up (ivr/runtime.py).

    Positions 1-5 with the waits up to ten minutes cover most queue announcements; the sentences of the
    callback and ticket lines around the caller's number are fixed too.
    """
    lang = _lang(language)
    waits = [None, 30.0, *(60.0 * minutes for minutes in range(1, 11))]
    return [
        welcome(language), callback_offer(language), nobody_available(language), waited_too_long(language),
        reconnecting(language), transferring(language), service_ending(language),
        _CERTAINLY[lang], _GOODBYE[lang], _AGAIN[lang],
        *(position_and_wait(position, wait, language) for position in range(1, 6) for wait in waits),
    ]  # fmt: skip
