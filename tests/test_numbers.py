"""Spoken numbers → digits, with utterances as callers say them on the phone."""

import pytest

from ivr.dialog.numbers import digit_string, normalize, quantity, spoken_digits


@pytest.mark.parametrize(
    "text, expected",
    [
        ("zwei stück", "2 stück"),
        ("ich hätte gern drei kaffeemaschinen", "ich hätte gern 3 kaffeemaschinen"),
        ("Zwei Stück bitte", "2 Stück bitte"),
        ("zwo", "2"),
        ("noch eins", "noch 1"),
        ("null", "0"),
        ("zweiundvierzig", "42"),
        ("ein hundert", "100"),  # "ein" inside a number is a number
        ("ein und zwanzig", "21"),
        ("zweitausendsechsundzwanzig", "2026"),
        ("zwölf vierunddreißig sechsundfünfzig", "12 34 56"),  # groups stay apart
        # the article stays a word
        ("ich möchte einen kaffee", "ich möchte einen kaffee"),
        ("ich habe ein problem", "ich habe ein problem"),
        ("eine kaffeemaschine bitte", "eine kaffeemaschine bitte"),
        ("ein paar fragen", "ein paar fragen"),
        ("mit einem freund", "mit einem freund"),
        # ordinals stay words
        ("der dritte", "der dritte"),
        ("zum zweiten mal", "zum zweiten mal"),
        # nothing to convert
        ("wann haben sie geöffnet", "wann haben sie geöffnet"),
        ("nein danke", "nein danke"),
        ("", ""),
    ],
)
def test_normalize_german(text, expected):
    assert normalize(text, "de") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("three boxes please", "3 boxes please"),
        ("I would like two", "I would like 2"),
        ("twenty-one", "21"),
        ("one hundred and two", "102"),
        ("double four", "4 4"),
        ("triple seven two", "7 7 7 2"),
        ("seven oh four", "7 0 4"),
        ("double oh seven", "0 0 7"),
        # pronouns, ordinals and interjections stay words
        ("this one please", "this one please"),
        ("the other one", "the other one"),
        ("one second please", "1 second please"),
        ("wait a second", "wait a second"),
        ("the first order", "the first order"),
        ("oh no", "oh no"),
        ("uh oh", "uh oh"),
        ("oh, one two three", "oh, 1 2 3"),
        ("can i order something", "can i order something"),
        ("it's for my office too", "it's for my office too"),
    ],
)
def test_normalize_english(text, expected):
    assert normalize(text, "en") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("eins zwei drei vier fünf sechs", "123456"),
        ("zwölf vierunddreißig sechsundfünfzig", "123456"),
        ("meine kundennummer ist vier acht zwei eins drei neun sieben sieben", "48213977"),
        ("ähm vier acht zwei äh eins drei neun sieben sieben", "48213977"),  # hesitations
        ("eins zwei drei und vier fünf sechs", "123456"),
        ("achtundvierzig einundzwanzig neununddreißig siebenundsiebzig", "48213977"),
        ("null eins eins null sieben", "01107"),  # postcode with a leading zero
        ("null null sieben", "007"),
        ("zwo zwo null", "220"),
        ("ein zwei drei", "123"),  # "ein" said for "eins" between digits
        ("eins zwei drei, nein, eins zwei vier", "124"),  # a correction wins
        ("meine nummer ist eins zwei drei vier fünf sechs und ich habe zwei fragen", "123456"),  # the longest
        ("bestellung 1 2 3 4 5 6 bitte", "123456"),
        ("123456#", "123456"),  # keypad
        ("12 34 56", "123456"),
        ("zwei", "2"),
    ],
)
def test_digit_string_german(text, expected):
    assert digit_string(text, "de") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("one two three four five six", "123456"),
        ("twelve thirty four fifty six", "123456"),
        ("double four", "44"),
        ("four double seven one", "4771"),
        ("triple five nine", "5559"),
        ("oh one one seven", "0117"),
        ("seven oh oh", "700"),
        ("my account number is uh four eight two one three nine seven seven", "48213977"),
        ("zero one one zero seven", "01107"),
        ("one two three, no sorry, one two four", "124"),
        ("1 2 3 4 5 6", "123456"),
        ("123456#", "123456"),
    ],
)
def test_digit_string_english(text, expected):
    assert digit_string(text, "en") == expected


@pytest.mark.parametrize(
    "text, language",
    [
        ("ich weiß meine nummer nicht", "de"),
        ("ich habe ein problem", "de"),
        ("der dritte", "de"),
        ("einen moment bitte", "de"),
        ("keine ahnung", "de"),
        ("I don't have it here", "en"),
        ("this one", "en"),
        ("oh", "en"),
        ("uh oh", "en"),
        ("wait a second", "en"),
        ("", "de"),
        ("#", "de"),
    ],
)
def test_digit_string_none_without_digits(text, language):
    assert digit_string(text, language) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("drei stück", 3),
        ("zwei", 2),
        ("zwo stück bitte", 2),
        ("ich hätte gerne zehn", 10),
        ("nein, drei stück", 3),  # a correction
        ("zwei, nein drei", 3),
        ("fünf äh nein doch lieber vier", 4),
        ("eine bitte", 1),  # the article as one
        ("einen", 1),
        ("nur eins", 1),
        ("ich möchte einen kaffeeautomaten", 1),
        ("ein dutzend", 12),
        ("zwei dutzend", 24),
        ("ein halbes dutzend", 6),
        ("zwanzig", 20),
        ("3#", 3),  # keypad
        ("ein paar", None),  # vague
        ("mehrere", None),
        ("weiß ich noch nicht", None),
        ("keine ahnung", None),
        ("", None),
    ],
)
def test_quantity_german(text, expected):
    assert quantity(text, "de") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("three boxes", 3),
        ("two please", 2),
        ("no, three please", 3),
        ("two, sorry, make that five", 5),
        ("just one", 1),
        ("a box of pens", 1),
        ("an office chair", 1),
        ("a dozen", 12),
        ("half a dozen", 6),
        ("two dozen", 24),
        ("a couple", 2),
        ("a hundred", 100),
        ("a few", None),
        ("several", None),
        ("I'm not sure yet", None),
    ],
)
def test_quantity_english(text, expected):
    assert quantity(text, "en") == expected


@pytest.mark.parametrize(
    "number, spoken",
    [
        ("48213977", "4 8 2, 1 3 9, 7 7"),
        ("123456", "1 2 3, 4 5 6"),
        ("01107", "0 1 1, 0 7"),
        ("1234567", "1 2 3, 4 5, 6 7"),  # never a lone digit at the end
        ("1234", "1 2, 3 4"),
        ("12", "1 2"),
        ("7", "7"),
        ("48-21 39/77", "4 8 2, 1 3 9, 7 7"),  # separators are dropped
        ("", ""),
    ],
)
def test_spoken_digits(number, spoken):
    assert spoken_digits(number) == spoken


@pytest.mark.parametrize("number", ["48213977", "01107", "1234567890"])
def test_spoken_digits_round_trip(number):
    assert digit_string(spoken_digits(number), "de") == number
