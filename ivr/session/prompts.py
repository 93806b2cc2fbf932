"""Words the front end itself says or listens for, per language.

The dialog's own prompts live in Rasa's domain; these are the few the voice
layer needs when Rasa cannot be asked (it is down) and the grammars used when a
prompt expects yes/no or digits.
"""

from __future__ import annotations

TECHNICAL_PROBLEM = {
    "de": "Entschuldigung, wir haben gerade ein technisches Problem. Ich verbinde Sie mit einem Mitarbeiter.",
    "en": "Sorry, we are having a technical problem right now. I am putting you through to an agent.",
}

GRAMMARS = {
    "yes_no": {
        "de": ["ja", "nein", "genau", "richtig", "stimmt", "nicht", "korrekt", "falsch"],
        "en": ["yes", "no", "yeah", "nope", "correct", "right", "wrong", "not"],
    },
    "digits": {
        "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zwo"],
        "en": ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    },
}

# Keys with a fixed meaning on every prompt.
DTMF_AGENT = "0"
DTMF_REPEAT = "*"
