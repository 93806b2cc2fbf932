"""Tenants: the companies this center answers for, and what the dialog asks of them.

Business hours, the product catalogue, FAQ answers and queues live in `ivr.yml`
so that a business changes them without retraining the dialog model: the NLU
only recognizes *that* a caller asks about shipping costs or names a product;
the answer and the product come from here at call time. Everything here is a
pure function of the settings and its arguments (the clock is passed in, never
read), so the behaviour is tested without a server or a fake clock.

The classes below are also the description of a tenant in `ivr.yml` (see
ivr.yaml_config): types, defaults and validators for times, time zones,
holiday regions, duplicate SKUs and texts missing in the tenant's own language.
`ivr.settings` loads the file.
"""

import re
from dataclasses import field
from datetime import date, datetime, time, timedelta
from difflib import SequenceMatcher
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import holidays
from pydantic import StrictStr, root_validator, validator

from ivr.yaml_config import (
    Text,
    checked,
    config,
    empty_means_default,
    integer,
    matching,
    non_empty,
    number,
    problems,
    raise_problems,
)

FAQ_TOPICS: tuple[str, ...] = (
    "opening_hours",
    "shipping_time",
    "shipping_cost",
    "delivery_countries",
    "returns",
    "exchange",
    "payment_methods",
    "invoice_copy",
    "warranty",
    "repair",
    "data_protection",
    "contact_address",
    "order_change",
    "vouchers",
    "business_customers",
    "product_availability",
    "account_password",
    "store_locations",
)
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
LOOKAHEAD = timedelta(days=14)
DEFAULT_QUEUE = "default"
DEFAULT_MAX_QUANTITY = 99  # per order line, when a product sets none; larger orders are a case for a person
LANGUAGES: tuple[str, ...] = ("de", "en")
Language = Literal[LANGUAGES]
if TYPE_CHECKING:
    Key = str
else:
    Key = matching(r"^[a-z][a-z0-9_]*$")  # FAQ topics, queue purposes, dispositions

# Product matching. Whole words are compared after folding umlauts, so the
# umlaut plural "Töpfe" still starts with "topf". A heard word that is a term
# plus a German/English inflection ending counts as a match; otherwise difflib's
# ratio must reach MATCH_CUTOFF, which lets through one or two letters an ASR
# got wrong in a long word ("kafeemaschine") but not a different word that
# shares a part ("kaffee", "maschine" ≈ 0.6–0.73 against "kaffeemaschine").
# Terms shorter than MIN_FUZZY_LENGTH only match exactly or inflected: one wrong
# letter in "pen" is another word ("pan", "open").
MATCH_CUTOFF = 0.86
MIN_FUZZY_LENGTH = 5
_ENDINGS = frozenset({"s", "e", "n", "en", "er", "es", "ern"})
_FOLD = str.maketrans({"ä": "a", "ö": "o", "ü": "u", "ß": "ss"})
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def parse_range(text: str) -> tuple[int, int]:
    """'08:00-18:00' → (480, 1080) minutes since midnight; '24:00' may end a range.

    Raises ValueError with a message for the settings file: a range that runs
    past midnight must be split, because it belongs to two weekdays.
    """
    match = _RANGE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time range like '08:00-18:00'")
    sh, sm, eh, em = map(int, match.groups())
    start, end = sh * 60 + sm, eh * 60 + em
    if sh > 23 or sm > 59 or em > 59 or end > 24 * 60:
        raise ValueError(f"{text!r} has a time outside 00:00-24:00")
    if start >= end:
        raise ValueError(f"{text!r} must start before it ends (split ranges past midnight at 24:00)")
    return start, end


@cache
def public_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    """The `holidays` calendar of a region; it adds years as dates are looked up.

    Raises NotImplementedError for a country or subdivision the package lacks.
    """
    return holidays.country_holidays(country, subdiv=subdivision)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive time would silently be read as the server's local time.
        raise ValueError("business hours need a timezone-aware datetime")
    return at


@config
class HolidayRegion:
    """Public holidays of a country (ISO code) and optionally a subdivision, as the `holidays` package knows them."""

    country: Text
    subdivision: Text | None = None

    @root_validator(skip_on_failure=True)
    def _known(cls, values: dict[str, Any]) -> dict[str, Any]:
        country, subdivision = values["country"], values.get("subdivision")
        known = holidays.list_supported_countries()
        if country not in known:
            message = f"no public holidays known for country {country!r} (ISO code, e.g. DE, GB)"
            raise problems([(("country",), message)])
        try:
            public_holidays(country, subdivision)
        except NotImplementedError:
            message = f"unknown subdivision {subdivision!r} of {country}; known: {', '.join(known[country])}"
            raise problems([(("subdivision",), message)]) from None
        return values


def _time_range(value: Any) -> tuple[int, int]:
    """A range as written in the file ('08:00-18:00') or already as minutes (480, 1080)."""
    if isinstance(value, str):
        return parse_range(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(type(v) is int for v in value):
        start, end = value
        if 0 <= start < end <= 24 * 60:
            return start, end
    raise ValueError(f"{value!r} is not a time range like '08:00-18:00'")


def _day_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """One weekday's ranges, sorted; each range that does not parse or overlaps another is reported at its index."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{value!r} is not of type 'array'")
    parsed, found = [], []
    for i, item in enumerate(value):
        try:
            parsed.append((*_time_range(item), i))
        except ValueError as exc:
            found.append(((i,), str(exc)))
    parsed.sort()
    for (_, end, _), (start, _, i) in pairwise(parsed):
        if start < end:
            found.append(((i,), f"{value[i]!r} overlaps another range that day"))
    raise_problems(found)
    return tuple((start, end) for start, end, _ in parsed)


def _closed_day(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a date like '2026-12-24'") from None


Weekday = Literal[WEEKDAYS]
if TYPE_CHECKING:  # what the values are to the code that reads them
    DayRanges = tuple[tuple[int, int], ...]
    ClosedDay = date
else:
    DayRanges = checked("DayRanges", _day_ranges)
    ClosedDay = checked("ClosedDay", _closed_day)


@config
class Hours:
    """When a tenant's agents take calls; a day missing from `weekly` is closed.

    `weekly` maps a weekday to its ranges ('08:00-12:00'), kept sorted as
    minutes since midnight [start, end); `closed` lists extra closed days.
    """

    timezone: Text
    weekly: dict[Weekday, DayRanges] = field(default_factory=dict)
    holidays: HolidayRegion | None = None
    closed: frozenset[ClosedDay] = frozenset()

    _empty = validator("weekly", "closed", pre=True, allow_reuse=True)(empty_means_default)

    @validator("timezone")
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @property
    def holiday_region(self) -> tuple[str, str | None] | None:
        """(country, subdivision) whose public holidays are closed, or None."""
        return (self.holidays.country, self.holidays.subdivision) if self.holidays else None

    def ranges_on(self, day: date) -> tuple[tuple[int, int], ...]:
        if day in self.closed:
            return ()
        if self.holiday_region and day in public_holidays(*self.holiday_region):
            return ()
        return self.weekly.get(WEEKDAYS[day.weekday()], ())

    def is_open(self, at: datetime) -> bool:
        local = _aware(at).astimezone(ZoneInfo(self.timezone))
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return any(start * 60 <= seconds < end * 60 for start, end in self.ranges_on(local.date()))

    def next_opening(self, at: datetime) -> datetime | None:
        """`at` itself when open, else the next range start within LOOKAHEAD (tenant's local time)."""
        zone = ZoneInfo(self.timezone)
        local = _aware(at).astimezone(zone)
        if self.is_open(local):
            return local
        for offset in range(LOOKAHEAD.days + 1):
            day = local.date() + timedelta(days=offset)
            for start, _ in self.ranges_on(day):
                opening = datetime.combine(day, time(start // 60, start % 60), tzinfo=zone)
                if opening > local:
                    return opening if opening - local <= LOOKAHEAD else None
        return None


@config
class Product:
    sku: Text
    name: dict[Language, Text]  # language → name
    price: number(ge=0)  # in the tenant's currency
    synonyms: dict[Language, tuple[Text, ...]] = field(default_factory=dict)
    max_quantity: integer(ge=1) = DEFAULT_MAX_QUANTITY

    _some_name = validator("name", allow_reuse=True)(non_empty("needs a name in at least one language"))

    def name_in(self, language: str, fallback: str) -> str:
        """The name to say to a caller; the tenant's language always has one (validated)."""
        return self.name.get(language) or self.name[fallback]

    def terms(self, language: str) -> list[str]:
        return [t for t in (self.name.get(language), *self.synonyms.get(language, ())) if t]


def _fold_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower().translate(_FOLD))


def _similarity(heard: str, term: str) -> float:
    if heard == term:
        return 1.0
    if heard.startswith(term) and heard[len(term) :] in _ENDINGS:
        return 0.99
    if len(term) < MIN_FUZZY_LENGTH:
        return 0.0
    return SequenceMatcher(None, heard, term).ratio()


def _term_score(words: list[str], term: str) -> float:
    """Best match of `term` against any run of the caller's words.

    Runs one word longer or shorter than the term are joined without spaces,
    so "kaffee maschine" (an ASR split compound) finds "Kaffeemaschine" and
    "a 4 paper" finds "A4 paper".
    """
    term_words = _fold_words(term)
    target = "".join(term_words)
    n = len(term_words)
    best = 0.0
    for size in {max(1, n - 1), n, n + 1}:
        for i in range(len(words) - size + 1):
            best = max(best, _similarity("".join(words[i : i + size]), target))
    return best


@config
class Tenant:
    """A company served by this center, selected by the dialled number."""

    company: Text
    language: Language = "de"
    voice: StrictStr | None = None
    greeting: StrictStr | None = None
    currency: Literal["EUR", "GBP", "CHF", "USD"] = "EUR"  # how prices are read out
    hours: Hours | None = None  # None: always open
    catalogue: tuple[Product, ...] = ()
    faq: dict[Key, dict[Language, Text]] = field(default_factory=dict)  # topic → language → answer
    queues: dict[Key, Text] = field(default_factory=dict)  # purpose → queue name
    handoff: Literal["queue", "telephony"] | None = None  # None = the center's `queue.handoff`
    # A media stream arriving while the machine is full (docs/architecture.md, "Admission control"): `refuse`
    # closes it with 1013 and the reason; `callback` says that all lines are busy and stores a callback request.
    overflow: Literal["refuse", "callback"] = "refuse"

    _empty = validator("catalogue", "faq", "queues", pre=True, allow_reuse=True)(empty_means_default)

    @validator("catalogue")
    def _unique_and_named(cls, catalogue: tuple[Product, ...], values: dict[str, Any]) -> tuple[Product, ...]:
        """SKUs are unique, and every product can be named in the tenant's language."""
        own = values.get("language")
        first_sku: dict[str, int] = {}
        found = []
        for i, product in enumerate(catalogue):
            if product.sku in first_sku:
                found.append(((i, "sku"), f"duplicate SKU {product.sku!r} (also catalogue.{first_sku[product.sku]})"))
            first_sku.setdefault(product.sku, i)
            if own and own not in product.name:
                found.append(((i, "name"), f"no name in the tenant's language {own!r}"))
        raise_problems(found)
        return catalogue

    @validator("faq")
    def _known_topics(cls, faq: dict[str, dict[str, str]], values: dict[str, Any]) -> dict[str, dict[str, str]]:
        own = values.get("language")
        found = []
        for topic, answers in faq.items():
            if topic not in FAQ_TOPICS:
                found.append(((topic,), f"unknown FAQ topic {topic!r}; known: {', '.join(FAQ_TOPICS)}"))
            elif not answers:
                found.append(((topic,), "needs an answer in at least one language"))
            elif own and own not in answers:
                found.append(((topic,), f"no answer in the tenant's language {own!r}"))
        raise_problems(found)
        return faq

    def is_open(self, at: datetime) -> bool:
        if self.hours is None:
            _aware(at)  # the same contract with or without hours
            return True
        return self.hours.is_open(at)

    def next_opening(self, at: datetime) -> datetime | None:
        """When agents answer next: `at` if open now, else within 14 days, else None."""
        return self.hours.next_opening(at) if self.hours else _aware(at)

    def find_product(self, text: str, language: str) -> Product | None:
        """The catalogue product the caller's words name, if any.

        Names and synonyms in the caller's language and in the tenant's own are
        tried; the best score at or above MATCH_CUTOFF wins, the earlier
        product on a tie.
        """
        words = _fold_words(text)
        languages = dict.fromkeys((language, self.language))

        def score(product: Product) -> float:
            return max((_term_score(words, t) for lang in languages for t in product.terms(lang)), default=0.0)

        best = max(self.catalogue, key=score, default=None)  # max keeps the first of equals
        return best if best is not None and score(best) >= MATCH_CUTOFF else None

    def faq_answer(self, topic: str, language: str) -> str | None:
        """The answer in the caller's language, else in the tenant's; None if not configured."""
        answers = self.faq.get(topic, {})
        return answers.get(language) or answers.get(self.language)

    def queue_for(self, purpose: str) -> str:
        """The agent queue for a purpose (orders, complaints, …), else the tenant's default."""
        return self.queues.get(purpose) or self.queues.get(DEFAULT_QUEUE, DEFAULT_QUEUE)
