"""Tenant behaviour: business hours, catalogue lookup, FAQ answers, queues.

Times are always passed in, so these tests name the exact moments they check
(weekdays, public holidays, DST changes) instead of depending on the clock.
"""

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.settings import Tenant as SettingsTenant
from ivr.settings import load_settings
from ivr.tenants import FAQ_TOPICS, Hours, Tenant, parse_range
from ivr.yaml_config import parse

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module")
def shipped() -> dict[str, Tenant]:
    return load_settings(ROOT / "ivr.yml", env={}).tenants


@pytest.fixture(scope="module")
def test_tenants() -> dict[str, Tenant]:
    return load_settings(ROOT / "tests" / "data" / "ivr.test.yml", env={}).tenants


@pytest.fixture(scope="module")
def muster(shipped) -> Tenant:
    return shipped["+4930123456"]


@pytest.fixture(scope="module")
def nordlicht(shipped) -> Tenant:
    return shipped["+4940987654"]


@pytest.fixture(scope="module")
def acme(shipped) -> Tenant:
    return shipped["+442071234567"]


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_tenant_is_reexported_from_settings():
    assert SettingsTenant is Tenant
    assert Tenant("Beispiel AG").is_open(datetime(2026, 1, 1, 3, tzinfo=timezone.utc))  # old constructor still works


# --- business hours -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at, is_open",
    [
        (berlin(2026, 3, 2, 7, 59, 59), False),  # Monday, before opening
        (berlin(2026, 3, 2, 8, 0), True),
        (berlin(2026, 3, 2, 17, 59, 59), True),
        (berlin(2026, 3, 2, 18, 0), False),  # the end of a range is closed
        (berlin(2026, 3, 7, 9, 30), True),  # Saturday morning
        (berlin(2026, 3, 7, 13, 0), False),
        (berlin(2026, 3, 8, 11, 0), False),  # Sunday: no range = closed
        (berlin(2026, 4, 3, 11, 0), False),  # Good Friday
        (berlin(2027, 3, 8, 11, 0), False),  # International Women's Day: a public holiday in Berlin only
        (berlin(2026, 10, 3, 10, 0), False),  # German Unity Day on a Saturday
        (berlin(2026, 12, 24, 10, 0), False),  # extra closed date
        (berlin(2026, 12, 23, 10, 0), True),
    ],
)
def test_muster_hours(muster, at, is_open):
    assert muster.is_open(at) is is_open


def test_holidays_follow_the_subdivision(muster, nordlicht):
    assert not muster.is_open(berlin(2027, 3, 8, 11)) and nordlicht.is_open(berlin(2027, 3, 8, 11))
    # Reformation Day is a holiday in Hamburg, not in Berlin.
    assert muster.is_open(berlin(2025, 10, 31, 11)) and not nordlicht.is_open(berlin(2025, 10, 31, 11))


def test_several_ranges_a_day(nordlicht):
    friday = (2026, 3, 6)
    assert nordlicht.is_open(berlin(*friday, 12, 29))
    assert not nordlicht.is_open(berlin(*friday, 13, 0))  # lunch break
    assert nordlicht.is_open(berlin(*friday, 13, 30))
    assert nordlicht.next_opening(berlin(*friday, 12, 45)) == berlin(*friday, 13, 30)


def test_hours_are_read_in_the_tenants_timezone(muster, acme):
    assert muster.is_open(datetime(2026, 3, 2, 7, 30, tzinfo=timezone.utc))  # 08:30 in Berlin
    assert not acme.is_open(berlin(2026, 3, 2, 9, 30))  # 08:30 in London
    assert acme.is_open(berlin(2026, 3, 2, 10, 0))
    assert acme.is_open(datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("America/New_York")))  # 17:00 in London
    assert not acme.is_open(datetime(2026, 3, 2, 12, 30, tzinfo=ZoneInfo("America/New_York")))


def test_daylight_saving_time(muster):
    # 06:30 UTC is 07:30 in winter (closed) and 08:30 in summer (open); DST began on 2026-03-29.
    assert not muster.is_open(datetime(2026, 3, 27, 6, 30, tzinfo=timezone.utc))
    assert muster.is_open(datetime(2026, 3, 30, 6, 30, tzinfo=timezone.utc))


def test_english_bank_holidays(acme):
    assert not acme.is_open(datetime(2026, 5, 25, 11, tzinfo=LONDON))  # Spring Bank Holiday
    assert not acme.is_open(datetime(2026, 12, 28, 11, tzinfo=LONDON))  # Boxing Day (observed)
    assert acme.is_open(datetime(2026, 12, 29, 11, tzinfo=LONDON))


@pytest.mark.parametrize(
    "at, expected",
    [
        (berlin(2026, 3, 2, 6, 0), berlin(2026, 3, 2, 8, 0)),  # later the same day
        (berlin(2026, 3, 2, 19, 0), berlin(2026, 3, 3, 8, 0)),  # the next morning
        (berlin(2026, 3, 7, 13, 0), berlin(2026, 3, 9, 8, 0)),  # Saturday afternoon → Monday
        (berlin(2026, 12, 24, 10, 0), berlin(2026, 12, 28, 8, 0)),  # Christmas Eve, two holidays, Sunday
        (berlin(2026, 4, 3, 10, 0), berlin(2026, 4, 4, 9, 0)),  # Good Friday → Saturday hours
        (berlin(2026, 3, 2, 9, 15), berlin(2026, 3, 2, 9, 15)),  # open now: now
    ],
)
def test_next_opening(muster, at, expected):
    opening = muster.next_opening(at)
    assert opening == expected
    assert opening.tzinfo == BERLIN  # in the tenant's local time, ready to be spoken


def test_next_opening_from_another_timezone(acme):
    opening = acme.next_opening(datetime(2026, 3, 6, 18, 0, tzinfo=LONDON))  # Friday evening
    assert opening == datetime(2026, 3, 9, 9, 0, tzinfo=LONDON)
    assert opening.tzinfo == LONDON


def test_next_opening_none_beyond_14_days():
    hours = Hours("Europe/Berlin", {"mon": ((480, 1080),)}, closed=frozenset({berlin(2026, 3, 9).date()}))
    tenant = Tenant("Urlaub GmbH", hours=hours)
    assert tenant.next_opening(berlin(2026, 3, 2, 19)) == berlin(2026, 3, 16, 8)  # 13 days 13 hours
    assert tenant.next_opening(berlin(2026, 3, 2, 7)) == berlin(2026, 3, 2, 8)
    closed_longer = Hours("Europe/Berlin", {"mon": ((480, 1080),)},
                          closed=frozenset({berlin(2026, 3, 9).date(), berlin(2026, 3, 16).date()}))  # fmt: skip
    assert Tenant("Urlaub GmbH", hours=closed_longer).next_opening(berlin(2026, 3, 2, 19)) is None


def test_test_tenants_open_and_closed(test_tenants):
    moments = [berlin(2026, 12, 25, 3, 0), berlin(2026, 3, 8, 23, 59, 59), datetime(2026, 1, 1, tzinfo=timezone.utc)]
    for at in moments:
        assert test_tenants["+4930123456"].is_open(at)
        assert test_tenants["+442071234567"].is_open(at)
        assert test_tenants["+4930888888"].is_open(at)  # no hours: always open
        assert not test_tenants["+4930999999"].is_open(at)
        assert test_tenants["+4930999999"].next_opening(at) is None
        assert test_tenants["+4930888888"].next_opening(at) == at


def test_naive_times_are_refused(muster, test_tenants):
    with pytest.raises(ValueError, match="timezone-aware"):
        muster.is_open(datetime(2026, 3, 2, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        test_tenants["+4930888888"].is_open(datetime(2026, 3, 2, 10))


def test_parse_range():
    assert parse_range("08:00-18:00") == (480, 1080)
    assert parse_range("00:00-24:00") == (0, 1440)
    assert parse_range(" 9:30 - 12:00 ") == (570, 720)
    for bad in ("18:00-08:00", "08:00-08:00", "25:00-26:00", "08:60-09:00", "8-18", "00:00-24:30"):
        with pytest.raises(ValueError):
            parse_range(bad)


# --- catalogue ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, sku",
    [
        ("ich möchte eine kaffeemaschine bestellen", "KM-100"),
        ("Kaffeemaschine", "KM-100"),
        ("zwei kaffeemaschinen bitte", "KM-100"),  # plural
        ("ich hätte gern einen kaffeeautomaten", "KM-100"),  # synonym, inflected
        ("eine kafeemaschine", "KM-100"),  # ASR misspelling
        ("die kaffee maschine", "KM-100"),  # compound split by the recognizer
        ("einen wasserkocher", "WK-200"),
        ("den wasserkessel", "WK-200"),
        ("drei toaster", "TO-300"),
        ("ein standmixer", "SM-400"),
        ("einen mixer", "SM-400"),
        ("ähm den staubsauger", "SS-500"),
        ("den staubsaugern", "SS-500"),
        ("einen staubsager", "SS-500"),  # ASR dropped a letter
        ("ein dampfbügeleisen", "BE-600"),
        ("ein bügeleisen", "BE-600"),
        ("zwei bratpfannen", "PF-700"),
        ("das pfannenset", "PF-700"),
        ("eine küchenwaage", "KW-800"),
        ("die kuechenwaage", "KW-800"),
    ],
)
def test_find_product_german(muster, text, sku):
    product = muster.find_product(text, "de")
    assert product is not None and product.sku == sku


@pytest.mark.parametrize(
    "text",
    [
        "ich möchte kaffee",  # part of a compound is another word
        "eine maschine",
        "wasser",
        "ich habe eine frage zu meiner rechnung",
        "wo bleibt mein paket",
        "mein wagen steht vor der tür",
        "eisen",
        "toast",
        "",
    ],
)
def test_find_product_german_no_false_positives(muster, text):
    assert muster.find_product(text, "de") is None


@pytest.mark.parametrize(
    "text, sku",
    [
        ("two boxes of a4 paper please", "PAP-A4"),
        ("some printer paper", "PAP-A4"),
        ("a 4 paper", "PAP-A4"),  # after the number normalizer
        ("a box of ballpoint pens", "PEN-BP50"),
        ("pens", "PEN-BP50"),
        ("a stapler", "STP-01"),
        ("three staplers", "STP-01"),
        ("a box of staples", "STP-26"),
        ("staples", "STP-26"),
        ("a toner cartridge for my printer", "TON-200"),
        ("toner", "TON-200"),
        ("ten lever arch files", "LAF-10"),
        ("sticky notes", "NOTE-76"),
        ("post its", "NOTE-76"),
        ("an office chair", "CH-ERGO"),
        ("two desk chairs", "CH-ERGO"),
        ("whiteboard markers", "WBM-4"),
        ("a white board marker", "WBM-4"),
    ],
)
def test_find_product_english(acme, text, sku):
    product = acme.find_product(text, "en")
    assert product is not None and product.sku == sku


@pytest.mark.parametrize(
    "text",
    ["i want to open an account", "where is my order", "i'd like to speak to someone", "can i pay by card",
     "i have a complaint about my delivery", "the file you sent", "stable", "open"],
)  # fmt: skip
def test_find_product_english_no_false_positives(acme, text):
    assert acme.find_product(text, "en") is None


def test_find_product_in_the_callers_or_the_tenants_language(muster, acme):
    assert muster.find_product("a coffee machine please", "en").sku == "KM-100"
    assert muster.find_product("einen Wasserkocher", "en").sku == "WK-200"  # the tenant's own words also work
    assert acme.find_product("zwei hefter", "de").sku == "STP-01"
    assert acme.find_product("heftklammern", "de").sku == "STP-26"
    assert muster.find_product("a kettle", "de") is None  # English synonyms are not German


def test_no_catalogue(nordlicht, test_tenants):
    assert nordlicht.catalogue == ()
    assert nordlicht.find_product("kaffeemaschine", "de") is None
    assert test_tenants["+4930888888"].find_product("eine kaffeemaschine", "de") is None


def test_product_details(muster):
    product = muster.find_product("kaffeemaschine", "de")
    assert (product.price, product.max_quantity) == (89.90, 10)
    assert product.name_in("en", muster.language) == "coffee machine"
    toaster = muster.find_product("toaster", "de")
    assert toaster.name_in("en", "de") == "toaster"
    assert product.name_in("fr", muster.language) == "Kaffeemaschine"


# --- FAQ and queues -------------------------------------------------------------------------------------------


def test_faq_topics():
    assert len(FAQ_TOPICS) == len(set(FAQ_TOPICS)) == 18


@pytest.mark.parametrize("number", ["+4930123456", "+442071234567"])
def test_demo_tenants_answer_every_topic_in_both_languages(shipped, number):
    tenant = shipped[number]
    for topic in FAQ_TOPICS:
        for language in ("de", "en"):
            answer = tenant.faq_answer(topic, language)
            assert answer and 20 < len(answer) < 300, (topic, language)


def test_faq_answer_language(muster, test_tenants):
    assert muster.faq_answer("shipping_cost", "de").startswith("Der Versand")
    assert muster.faq_answer("shipping_cost", "en").startswith("Shipping within Germany")
    ohne = test_tenants["+4930888888"]
    assert ohne.faq_answer("contact_address", "en") == ohne.faq_answer("contact_address", "de")  # falls back
    assert ohne.faq_answer("opening_hours", "en") == "We are here for you around the clock."
    assert ohne.faq_answer("returns", "de") is None  # a topic the tenant did not answer
    assert muster.faq_answer("no_such_topic", "de") is None


def test_queues(muster, nordlicht, test_tenants):
    assert muster.queue_for("orders") == "muster-orders"
    assert muster.queue_for("complaints") == "muster-complaints"
    assert muster.queue_for("something_else") == "muster-general"
    assert nordlicht.queue_for("orders") == "nordlicht-service"
    assert test_tenants["+4930888888"].queue_for("orders") == "default"


def test_tenant_from_minimal_mapping():
    tenant = parse(Tenant, {"company": "Beispiel AG"})
    assert tenant == Tenant("Beispiel AG", "de")
    assert tenant.hours is None and tenant.catalogue == () and tenant.faq == {} and tenant.queues == {}
    assert tenant.queue_for("orders") == "default"
