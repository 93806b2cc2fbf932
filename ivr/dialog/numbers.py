"""Spoken numbers → digits: quantities, customer and order numbers, postcodes.

The recognizer writes what callers say ("zwölf vierunddreißig", "double four");
the dialog needs digits. text2num's `alpha2digit` does the number grammar of
both languages (including German "zwo", "null" and "eins", and keeping the
groups callers speak apart: "zwölf vierunddreißig" → "12 34"). This module adds
what phone calls need on top of it:

- The German indefinite article stays a word. text2num turns a lone "ein" into
  "1" ("ein problem" → "1 problem") while it leaves "eine", "einen", "einem",
  "einer" alone, so "ich möchte einen kaffee" is unchanged but "ein paar"
  would become "1 paar". `normalize` therefore keeps "ein" unless it is part of
  a larger number ("ein hundert", "ein und zwanzig"). Numerals are converted,
  "zwei stück" → "2 stück". Where one item is meant, `quantity` reads the
  article as 1 ("eine bitte", "a box"), and `digit_string` reads "ein" as 1
  between digits ("ein zwei drei").
- Ordinals stay words. text2num always converts them, and on the phone they are
  mostly not numbers: "one second please" would become "1 2nd please", "der
  dritte" → "der 3." looks like a sentence end.
- English "one" after a determiner is a pronoun: "this one", "the other one".
- English phone idioms: "oh" next to a digit is zero ("seven oh four"), and
  "double four" / "triple seven" repeat a digit.
"""

from __future__ import annotations

import re
from functools import lru_cache

from text_to_num import alpha2digit

_PUNCT = ".,;:!?\"'()#*"  # "#" and "*" end keypad input
_DIGITS = re.compile(r"^[0-9]+$")
_ORDINAL = {"de": re.compile(r"^[0-9]+\.$"), "en": re.compile(r"^[0-9]+(st|nd|rd|th)$")}
_MULTIPLIERS = {"de": {"hundert", "tausend", "million", "millionen", "milliarde", "milliarden"},
                "en": {"hundred", "thousand", "million", "billion"}}  # fmt: skip
_DE_TENS = {"zwanzig", "dreißig", "dreissig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"}
_EN_DETERMINERS = {"the", "this", "that", "which", "no", "any", "every", "each", "another", "other", "same", "right",
                   "wrong", "new", "old", "next", "last"}  # fmt: skip
_REPEAT = {"double": 2, "triple": 3}
# Words a caller says between the digits of one number without ending it.
_FILLERS = {"äh", "ähm", "öh", "öhm", "hm", "hmm", "ehm", "uh", "uhm", "um", "er", "erm",
            "und", "and", "dann", "then", "strich", "dash"}  # fmt: skip
_ARTICLES = {"de": {"ein", "eine", "einen"}, "en": {"a", "an"}}
_DOZEN = {"dutzend", "dozen"}
_HALF = {"halbes", "half"}
_PAIR = {"couple", "pair"}  # English "a couple/pair" is two; German "ein paar" is "a few"
_VAGUE = {"paar", "einige", "mehrere", "viele", "few", "several", "some", "lot", "many"}


def _bare(word: str) -> str:
    return word.strip(_PUNCT).lower()


@lru_cache(maxsize=4096)
def _is_ordinal(word: str, language: str) -> bool:
    return bool(_ORDINAL[language].match(alpha2digit(word, language, threshold=0)))


def _stays_word(words: list[str], i: int, language: str) -> bool:
    """Whether text2num must not see this word as a number (see the module docstring)."""
    word = _bare(words[i])
    if not word or _is_ordinal(word, language):
        return True
    following = [_bare(w) for w in words[i + 1 : i + 3]] + ["", ""]
    if following[0] in _MULTIPLIERS[language]:  # "ein hundert", "the one hundred sheets"
        return False
    if language == "de" and word == "ein":
        return not (following[0] == "und" and following[1] in _DE_TENS)  # "ein und zwanzig"
    return language == "en" and word == "one" and i > 0 and _bare(words[i - 1]) in _EN_DETERMINERS


def _is_digits(word: str) -> bool:
    return bool(_DIGITS.match(word.strip(_PUNCT)))


def _next_to_digit(words: list[str], start: int, end: int) -> bool:
    return (start > 0 and _is_digits(words[start - 1])) or (end < len(words) and _is_digits(words[end]))


def _phone_idioms(words: list[str]) -> list[str]:
    """English: a run of "oh" next to a digit is zeros; "double 4" → "4 4", "triple 7" → "7 7 7".

    A lone "oh" or "oh," stays the interjection it usually is.
    """
    words = list(words)
    i = 0
    while i < len(words):
        end = i
        while end < len(words) and words[end].lower() == "oh":
            end += 1
        if end > i and _next_to_digit(words, i, end):
            words[i:end] = ["0"] * (end - i)
        i = max(end, i + 1)
    out: list[str] = []
    for word in words:
        digit = word.strip(_PUNCT)
        if out and out[-1].lower() in _REPEAT and len(digit) == 1 and _is_digits(digit):
            out[-1:] = [digit] * (_REPEAT[out[-1].lower()] - 1) + [word]
        else:
            out.append(word)
    return out


def normalize(text: str, language: str) -> str:
    """Spoken numbers as digits, other words kept: "zwei stück bitte" → "2 stück bitte".

    Whitespace is collapsed to single spaces (ASR text has no layout to keep).
    """
    words = text.split()
    out: list[str] = []
    chunk: list[str] = []
    for i, word in enumerate(words):
        if _stays_word(words, i, language):
            if chunk:
                out += alpha2digit(" ".join(chunk), language, threshold=0).split()
                chunk = []
            out.append(word)
        else:
            chunk.append(word)
    if chunk:
        out += alpha2digit(" ".join(chunk), language, threshold=0).split()
    return " ".join(_phone_idioms(out) if language == "en" else out)


def digit_string(text: str, language: str) -> str | None:
    """The digits of a number said digit by digit or in groups, keypad input included.

    "eins zwei drei vier fünf sechs", "zwölf vierunddreißig sechsundfünfzig",
    "double four", "123456#" → digits. Hesitations and "und"/"dann" between
    digits do not end the number; other words do. Of several numbers the
    longest wins and, among equally long ones, the last, so a caller who
    repeats a number to correct it ("eins zwei drei, nein, eins zwei vier")
    is taken at the correction. None when the text has no digits.
    """
    words = [w for w in re.split(r"[\s,;:!?#*/]+", normalize(text, language)) if w]
    best = ""
    run: list[str] = []
    for i, word in enumerate(words + [""]):  # the empty sentinel ends the last run
        bare = _bare(word)
        if _DIGITS.match(bare):
            run.append(bare)
        elif language == "de" and bare == "ein" and _next_to_digit(words, i, i + 1):
            run.append("1")
        elif run and bare in _FILLERS:
            continue
        else:
            if run and len("".join(run)) >= len(best):
                best = "".join(run)
            run = []
    return best or None


def quantity(text: str, language: str) -> int | None:
    """How many the caller wants: "drei stück" → 3, "nein, drei" → 3, "a dozen" → 12.

    The last number said wins, so corrections work ("zwei, nein drei").
    Without a numeral an indefinite article means one ("eine bitte", "a box"),
    which is right for the answer to "how many?" this is meant for. Vague
    amounts ("ein paar", "a few", "several") are None so the dialog asks again.
    """
    words = [_bare(w) for w in normalize(text, language).split()]
    amount: int | None = None
    article = vague = False
    for i, word in enumerate(words):
        before = words[max(0, i - 2) : i]
        if _DIGITS.match(word):
            amount = int(word)
        elif word in _DOZEN and before and _DIGITS.match(before[-1]):  # "zwei dutzend"
            amount = int(before[-1]) * 12
        elif word in _DOZEN:  # "a dozen", "half a dozen", "ein halbes dutzend"
            amount = 6 if _HALF & set(before) else 12
        elif language == "en" and word in _PAIR and before[-1:] == ["a"]:
            amount = 2
        elif word in _VAGUE:
            vague = True
        elif word in _ARTICLES[language]:
            article = True
    if amount is not None:
        return amount
    return None if vague or not article else 1


def spoken_digits(number: str) -> str:
    """A number for TTS to read digit by digit, in groups: "48213977" → "4 8 2, 1 3 9, 7 7".

    Written as one token, a voice reads "48213977" as forty-eight million…,
    which nobody can check against their letter. Spaces make it read single
    digits; the commas make Piper pause between groups of three (two at the
    end, never a lone digit), the way an agent reads a number back, so the
    caller can compare it chunk by chunk. Anything but digits is dropped.
    """
    digits = [c for c in number if "0" <= c <= "9"]
    sizes = [3] * (len(digits) // 3)
    if len(digits) % 3 == 2:
        sizes.append(2)
    elif len(digits) % 3 == 1:
        sizes = sizes[:-1] + [2, 2] if sizes else [1]
    groups, start = [], 0
    for size in sizes:
        groups.append(" ".join(digits[start : start + size]))
        start += size
    return ", ".join(groups)
