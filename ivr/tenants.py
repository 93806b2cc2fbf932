"""Tenants: the companies this center answers for, and what the dialog asks of them.

Business hours, the product catalogue, FAQ answers and queues live in `ivr.yml`
so that a business changes them without retraining the dialog model: the NLU
only recognizes *that* a caller asks about shipping costs or names a product;
the answer and the product come from here at call time. Everything here is a
pure function of the settings and its arguments (the clock is passed in, never
read), so the behaviour is tested without a server or a fake clock.

`ivr.settings` owns the schema and the loading; this module turns one
schema-valid tenant mapping into a `Tenant` (`tenant_from_dict`) and finds the
problems a schema cannot express (`tenant_problems`): times, time zones,
holiday regions, duplicate SKUs, missing texts in the tenant's own language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any, Optional
from zoneinfo import ZoneInfo

import holidays

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


@lru_cache(maxsize=None)
def public_holidays(country: str, subdivision: Optional[str]) -> holidays.HolidayBase:
    """The `holidays` calendar of a region; it adds years as dates are looked up.

    Raises NotImplementedError for a country or subdivision the package lacks.
    """
    return holidays.country_holidays(country, subdiv=subdivision)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive time would silently be read as the server's local time.
        raise ValueError("business hours need a timezone-aware datetime")
    return at


@dataclass(frozen=True)
class Hours:
    """When a tenant's agents take calls; a day missing from `weekly` is closed."""

    timezone: str
    weekly: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)  # sorted minute ranges [start, end)
    holiday_region: Optional[tuple[str, Optional[str]]] = None  # (country, subdivision)
    closed: frozenset[date] = frozenset()

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

    def next_opening(self, at: datetime) -> Optional[datetime]:
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


@dataclass(frozen=True)
class Product:
    sku: str
    name: dict[str, str]  # language → name
    price: float  # in the tenant's currency
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_quantity: int = DEFAULT_MAX_QUANTITY

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


@dataclass(frozen=True)
class Tenant:
    """A company served by this center, selected by the dialled number."""

    company: str
    language: str = "de"
    voice: Optional[str] = None
    greeting: Optional[str] = None
    currency: str = "EUR"  # how prices are read out
    hours: Optional[Hours] = None  # None: always open
    catalogue: tuple[Product, ...] = ()
    faq: dict[str, dict[str, str]] = field(default_factory=dict)  # topic → language → answer
    queues: dict[str, str] = field(default_factory=dict)  # purpose → queue name
    handoff: Optional[str] = None  # queue | telephony; None = the center's `queue.handoff`

    def is_open(self, at: datetime) -> bool:
        if self.hours is None:
            _aware(at)  # the same contract with or without hours
            return True
        return self.hours.is_open(at)

    def next_opening(self, at: datetime) -> Optional[datetime]:
        """When agents answer next: `at` if open now, else within 14 days, else None."""
        return self.hours.next_opening(at) if self.hours else _aware(at)

    def find_product(self, text: str, language: str) -> Optional[Product]:
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

    def faq_answer(self, topic: str, language: str) -> Optional[str]:
        """The answer in the caller's language, else in the tenant's; None if not configured."""
        answers = self.faq.get(topic, {})
        return answers.get(language) or answers.get(self.language)

    def queue_for(self, purpose: str) -> str:
        """The agent queue for a purpose (orders, complaints, …), else the tenant's default."""
        return self.queues.get(purpose) or self.queues.get(DEFAULT_QUEUE, DEFAULT_QUEUE)


def tenant_from_dict(data: dict[str, Any]) -> Tenant:
    """A Tenant from a mapping that passed the schema and `tenant_problems`."""
    hours = data.get("hours")
    return Tenant(
        company=data["company"],
        language=data.get("language", "de"),
        voice=data.get("voice"),
        greeting=data.get("greeting"),
        currency=data.get("currency", "EUR"),
        hours=_hours_from_dict(hours) if hours else None,
        catalogue=tuple(
            Product(
                sku=p["sku"],
                name=dict(p["name"]),
                price=p["price"],
                synonyms={lang: tuple(words) for lang, words in (p.get("synonyms") or {}).items()},
                max_quantity=p.get("max_quantity", DEFAULT_MAX_QUANTITY),
            )
            for p in data.get("catalogue") or ()
        ),
        faq={topic: dict(answers) for topic, answers in (data.get("faq") or {}).items()},
        queues=dict(data.get("queues") or {}),
        handoff=data.get("handoff"),
    )


def _hours_from_dict(data: dict[str, Any]) -> Hours:
    region = data.get("holidays")
    return Hours(
        timezone=data["timezone"],
        weekly={day: tuple(sorted(map(parse_range, ranges))) for day, ranges in (data.get("weekly") or {}).items()},
        holiday_region=(region["country"], region.get("subdivision")) if region else None,
        closed=frozenset(date.fromisoformat(d) for d in data.get("closed") or ()),
    )


Problem = tuple[tuple[Any, ...], str]  # (path inside the tenant, message)


def tenant_problems(data: dict[str, Any]) -> list[Problem]:
    """What a schema-valid tenant mapping still gets wrong, with the path to blame."""
    own = data.get("language", "de")
    problems: list[Problem] = []
    if data.get("hours"):
        problems += [(("hours", *path), msg) for path, msg in _hours_problems(data["hours"])]
    first_sku: dict[str, int] = {}
    for i, product in enumerate(data.get("catalogue") or ()):
        sku = product["sku"]
        if sku in first_sku:
            problems.append((("catalogue", i, "sku"), f"duplicate SKU {sku!r} (also catalogue.{first_sku[sku]})"))
        first_sku.setdefault(sku, i)
        if own not in product["name"]:
            problems.append((("catalogue", i, "name"), f"no name in the tenant's language {own!r}"))
    for topic, answers in (data.get("faq") or {}).items():
        if topic not in FAQ_TOPICS:
            problems.append((("faq", topic), f"unknown FAQ topic {topic!r}; known: {', '.join(FAQ_TOPICS)}"))
        elif own not in answers:
            problems.append((("faq", topic), f"no answer in the tenant's language {own!r}"))
    return problems


def _hours_problems(hours: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    try:
        ZoneInfo(hours["timezone"])
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        problems.append((("timezone",), f"unknown time zone {hours['timezone']!r} (e.g. Europe/Berlin)"))
    for day, ranges in (hours.get("weekly") or {}).items():
        parsed = []
        for i, text in enumerate(ranges):
            try:
                parsed.append((*parse_range(text), i, text))
            except ValueError as exc:
                problems.append((("weekly", day, i), str(exc)))
        parsed.sort()
        for (_, end, _, _), (start, _, i, text) in zip(parsed, parsed[1:]):
            if start < end:
                problems.append((("weekly", day, i), f"{text!r} overlaps another range on {day}"))
    region = hours.get("holidays")
    if region:
        problems += _holiday_problems(region["country"], region.get("subdivision"))
    for i, text in enumerate(hours.get("closed") or ()):
        try:
            date.fromisoformat(text)
        except ValueError:
            problems.append((("closed", i), f"{text!r} is not a date like '2026-12-24'"))
    return problems


def _holiday_problems(country: str, subdivision: Optional[str]) -> list[Problem]:
    known = holidays.list_supported_countries()
    if country not in known:
        return [(("holidays", "country"), f"no public holidays known for country {country!r} (ISO code, e.g. DE, GB)")]
    try:
        public_holidays(country, subdivision)
    except NotImplementedError:
        message = f"unknown subdivision {subdivision!r} of {country}; known: {', '.join(known[country])}"
        return [(("holidays", "subdivision"), message)]
    return []
