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

# The database has been unreachable so long that a new call could not be recorded (ivr/storage/write_behind.py).
STORAGE_UNAVAILABLE = {
    "de": "Entschuldigung, wegen einer technischen Störung können wir Ihren Anruf gerade nicht annehmen. "
    "Bitte rufen Sie in einigen Minuten wieder an.",
    "en": "Sorry, because of a technical fault we cannot take your call right now. Please call again in a few minutes.",
}

# A media stream arriving while the machine is full, for a tenant with `overflow: callback` (ivr/transports/overflow.py).
ALL_LINES_BUSY_CALLBACK = {
    "de": "Alle unsere Leitungen sind besetzt. Wir rufen Sie unter dieser Nummer zurück.",
    "en": "All our lines are busy; we will call you back at this number.",
}
ALL_LINES_BUSY_CALL_AGAIN = {  # no number to call back
    "de": "Alle unsere Leitungen sind besetzt. Bitte rufen Sie in einigen Minuten wieder an.",
    "en": "All our lines are busy. Please call again in a few minutes.",
}

# The dialog answered with nothing to say (a failed action, a broken story): never silence on the line.
SAY_AGAIN = {
    "de": "Entschuldigung, das hat gerade nicht geklappt. Bitte sagen Sie es noch einmal.",
    "en": "Sorry, that did not work just now. Please say it again.",
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
