"""Storage behaviour: migrations, orders, tickets, callbacks, handoffs, the event log, seed data.

Every test takes `db_url`, a fresh empty database. Here that is an SQLite
file; tests/test_storage_postgres.py runs the same tests on a real PostgreSQL
server by overriding that one fixture.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ivr.errors import ConfigError
from ivr.storage import (
    ORDER_STATUSES,
    CallEvent,
    Customer,
    EventName,
    Handoff,
    Order,
    OrderLine,
    SqlStorage,
    Utterance,
    Wrapup,
)
from ivr.storage.migrations import HERE as MIGRATIONS
from ivr.storage.seed import seed
from ivr.storage.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
DE, UK = "+4930123456", "+442071234567"
LINES = [OrderLine("KM-100", "Kaffeemaschine", 1, Decimal("89.90")), OrderLine("KW-800", "Küchenwaage", 2, 19.9)]
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
# Scripts for run_together: after their imports, wait for the common start time (argv[1]).
WAIT = "import sys, time\ntime.sleep(max(0, float(sys.argv[1]) - time.time()))\n"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ivr.db'}"


@pytest.fixture
async def storage(db_url: str):
    opened = SqlStorage(db_url)
    yield opened
    await opened.close()


def revision(url: str) -> str:
    engine = sa.create_engine(url, future=True)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def run_together(script: str, args: list[list[str]]) -> None:
    """Run `python -c script *a` for every `a` in separate processes that start work at the same moment."""
    start_at = str(time.time() + 4)  # when every interpreter has imported SQLAlchemy and Alembic
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, start_at, *a], env=env, stderr=subprocess.PIPE, text=True)
        for a in args
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(errors)


# Migrations


async def test_new_database_is_created_at_the_newest_revision(db_url: str):
    await SqlStorage(db_url).close()
    assert revision(db_url) == HEAD


async def test_tables_match_the_migrations(storage: SqlStorage):
    with storage.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


OLD_METADATA = sa.MetaData()  # the schema `metadata.create_all` made before migrations existed
sa.Table(
    "calls",
    OLD_METADATA,
    sa.Column("call_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("company", sa.String(200), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("dialled", sa.String(32)),
    sa.Column("caller", sa.String(32)),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("end_reason", sa.String(64)),
)
sa.Table(
    "utterances",
    OLD_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False, index=True),
    sa.Column("speaker", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("asr_confidence", sa.Float),
    sa.Column("intent", sa.String(100)),
    sa.Column("intent_confidence", sa.Float),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),
)


async def test_database_made_before_migrations_keeps_its_calls_and_gains_the_new_tables(db_url: str):
    engine = sa.create_engine(db_url, future=True)
    OLD_METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            OLD_METADATA.tables["calls"].insert(),
            dict(
                call_id="old-1",
                tenant=DE,
                company="Muster Versand GmbH",
                language="de",
                channel="text",
                started_at=100.0,
                ended_at=160.0,
                end_reason="hangup",
            ),  # fmt: skip
        )
        conn.execute(
            OLD_METADATA.tables["utterances"].insert(),
            dict(
                call_id="old-1",
                speaker="caller",
                text="wann haben sie geöffnet",
                start=101.0,
                end=102.5,
                intent="opening_hours",
                meta='{"dtmf": false}',
            ),  # fmt: skip
        )
    engine.dispose()

    storage = SqlStorage(db_url)
    try:
        call = await storage.get_call("old-1")
        assert (call.company, call.ended_at, call.end_reason) == ("Muster Versand GmbH", 160.0, "hangup")
        [line] = await storage.transcript("old-1")
        assert (line.text, line.intent, line.meta) == ("wann haben sie geöffnet", "opening_hours", {"dtmf": False})
        await storage.add_utterance(Utterance("old-1", "bot", "Wir haben von 8 bis 18 Uhr geöffnet.", 103.0, 105.0))
        assert len(await storage.transcript("old-1")) == 2
        order = await storage.place_order(DE, "10001", LINES, "Invalidenstraße 12, 10115 Berlin", call_id="old-1")
        assert await storage.get_order(DE, order.order_number) == order
    finally:
        await storage.close()
    assert revision(db_url) == HEAD


async def test_reopening_keeps_everything(db_url: str):
    first = SqlStorage(db_url)
    order = await first.place_order(DE, "10001", LINES, "Invalidenstraße 12, 10115 Berlin")
    await first.close()
    second = SqlStorage(db_url)
    try:
        assert await second.get_order(DE, order.order_number) == order
    finally:
        await second.close()


OPEN = "from ivr.storage import SqlStorage\n" + WAIT + "SqlStorage(sys.argv[2])\n"


def test_processes_starting_together_on_a_new_database_all_succeed(db_url: str):
    run_together(OPEN, [[db_url]] * 4)
    assert revision(db_url) == HEAD


WRITE_EVENTS_AND_AN_ORDER = (
    """
import asyncio
from ivr.storage import CallEvent, OrderLine, SqlStorage
"""
    + WAIT
    + """
async def main(url, call_id):
    storage = SqlStorage(url)
    for i in range(50):
        await storage.log_event(CallEvent(call_id, "t", float(i), "INTENT", {"i": i}))
    await storage.place_order("t", "1", [OrderLine("A", "a", 1, 1.0)], "x", call_id=call_id)
    await storage.close()

asyncio.run(main(sys.argv[2], sys.argv[3]))
"""
)


async def test_processes_writing_together_lose_nothing(db_url: str):
    await SqlStorage(db_url).close()
    run_together(WRITE_EVENTS_AND_AN_ORDER, [[db_url, "ivr"], [db_url, "actions"], [db_url, "ivr-2"]])
    storage = SqlStorage(db_url)
    try:
        for call_id in ("ivr", "actions", "ivr-2"):
            assert [e.data["i"] for e in await storage.events(call_id=call_id)] == list(range(50))
        assert len(await storage.orders_for_customer("t", "1")) == 3
    finally:
        await storage.close()


# Orders


async def test_placed_order_is_found_with_its_lines(storage: SqlStorage):
    before = time.time()
    order = await storage.place_order(DE, "10001", LINES, "Invalidenstraße 12, 10115 Berlin", call_id="call-1")
    assert re.fullmatch(r"[1-9][0-9]{5}", order.order_number)
    assert (order.tenant, order.customer_number, order.status, order.call_id) == (DE, "10001", "placed", "call-1")
    assert before <= order.created_at <= time.time()

    found = await storage.get_order(DE, order.order_number)
    assert found == order
    assert found.lines == [
        OrderLine("KM-100", "Kaffeemaschine", 1, Decimal("89.90")),
        OrderLine("KW-800", "Küchenwaage", 2, Decimal("19.90")),
    ]
    assert found.delivery_address == "Invalidenstraße 12, 10115 Berlin"
    assert await storage.orders_for_customer(DE, "10001") == [order]
    assert await storage.get_order(DE, "999999") is None


async def test_order_without_lines_is_refused(storage: SqlStorage):
    with pytest.raises(ValueError):
        await storage.place_order(DE, "10001", [], "Invalidenstraße 12, 10115 Berlin")
    assert await storage.orders_for_customer(DE, "10001") == []


async def test_order_numbers_are_unique_six_digit_numbers(storage: SqlStorage):
    placed = [await storage.place_order(DE, "10001", LINES[:1], "x") for _ in range(150)]
    numbers = [o.order_number for o in placed]
    assert all(re.fullmatch(r"[1-9][0-9]{5}", n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    assert sorted(o.order_number for o in await storage.orders_for_customer(DE, "10001")) == sorted(numbers)


def numbers_from(*values: str):
    source: Iterator[str] = iter(values)
    return lambda digits: next(source)


async def test_a_taken_number_is_replaced_by_another_and_numbers_are_per_tenant(db_url: str):
    storage = SqlStorage(db_url, numbers=numbers_from("111111", "111111", "222222", "111111", "30000000"))
    try:
        first = await storage.place_order(DE, "10001", LINES, "x")
        second = await storage.place_order(DE, "10001", LINES, "x")
        other_tenant = await storage.place_order(UK, "20001", LINES, "y")
        ticket = await storage.create_ticket(DE, "defect", "Display dunkel", None, "normal")
        assert (first.order_number, second.order_number, other_tenant.order_number) == ("111111", "222222", "111111")
        assert ticket.ticket_number == "30000000"
        assert (await storage.get_order(UK, "111111")).customer_number == "20001"
        assert (await storage.get_order(DE, "111111")).customer_number == "10001"
    finally:
        await storage.close()


async def test_when_no_number_is_free_the_order_fails_and_nothing_is_stored(db_url: str):
    storage = SqlStorage(db_url, numbers=lambda digits: "111111")
    try:
        await storage.place_order(DE, "10001", LINES, "x")
        with pytest.raises(RuntimeError, match="no free orders.order_number"):
            await storage.place_order(DE, "10002", LINES, "x")
        assert await storage.orders_for_customer(DE, "10002") == []
    finally:
        await storage.close()


def order(number: str, status: str, tenant: str = DE, customer: str = "10001") -> Order:
    return Order(number, tenant, customer, list(LINES), status, 1717398720.0, None, "Invalidenstraße 12, 10115 Berlin")


async def test_cancel_rules(storage: SqlStorage):
    placed = await storage.place_order(DE, "10001", LINES, "x")
    assert placed.cancellable
    result = await storage.cancel_order(DE, placed.order_number)
    assert (result.outcome, result.status) == ("cancelled", "cancelled")
    assert (await storage.get_order(DE, placed.order_number)).status == "cancelled"

    again = await storage.cancel_order(DE, placed.order_number)
    assert (again.outcome, again.status) == ("not_cancellable", "cancelled")

    await storage.upsert_order(order("271828", "shipped"))
    shipped = await storage.cancel_order(DE, "271828")
    assert (shipped.outcome, shipped.status) == ("not_cancellable", "shipped")
    assert (await storage.get_order(DE, "271828")).status == "shipped"

    unknown = await storage.cancel_order(DE, "999999")
    assert (unknown.outcome, unknown.status) == ("not_found", None)


@pytest.mark.parametrize("status", ORDER_STATUSES)
async def test_cancelling_succeeds_exactly_for_the_statuses_orders_call_cancellable(storage: SqlStorage, status: str):
    stored = order("314159", status)
    await storage.upsert_order(stored)
    result = await storage.cancel_order(DE, "314159")
    assert (result.outcome == "cancelled") == stored.cancellable
    assert stored.cancellable == (status in ("placed", "packed"))


async def test_of_concurrent_cancels_exactly_one_wins(storage: SqlStorage, db_url: str):
    other_process = SqlStorage(db_url)  # e.g. the action server, next to the IVR
    try:
        placed = [await storage.place_order(DE, "10001", LINES, "x") for _ in range(8)]
        for o in placed:
            attempts = [s.cancel_order(DE, o.order_number) for s in (storage, other_process, storage, other_process)]
            outcomes = sorted(r.outcome for r in await asyncio.gather(*attempts))
            assert outcomes == ["cancelled"] + ["not_cancellable"] * 3
    finally:
        await other_process.close()


async def test_a_failing_order_write_stores_nothing(storage: SqlStorage):
    bad_lines = [LINES[0], OrderLine("TO-300", "Toaster", 0, 29.9)]  # quantity must be positive
    with pytest.raises(sa.exc.IntegrityError):
        await storage.place_order(DE, "10001", bad_lines, "x")
    assert await storage.orders_for_customer(DE, "10001") == []

    await storage.upsert_order(order("314159", "placed"))
    with pytest.raises(sa.exc.IntegrityError):
        await storage.upsert_order(Order("314159", DE, "10001", bad_lines, "packed", 1.0, None, "anders"))
    assert await storage.get_order(DE, "314159") == order("314159", "placed")


async def test_tenants_never_see_each_others_records(storage: SqlStorage):
    mine = await storage.place_order(DE, "10001", LINES, "x")
    assert await storage.get_order(UK, mine.order_number) is None
    assert (await storage.cancel_order(UK, mine.order_number)).outcome == "not_found"
    assert (await storage.get_order(DE, mine.order_number)).status == "placed"
    assert await storage.orders_for_customer(UK, "10001") == []

    await storage.upsert_customer(Customer(DE, "10001", "Jürgen Schneider", "10115", "Invalidenstraße 12", "Berlin"))
    assert await storage.find_customer(UK, "10001") is None
    assert await storage.find_customer_by_name(UK, "Jürgen Schneider", "10115") is None

    ticket = await storage.create_ticket(DE, "defect", "kaputt", None, "high")
    assert await storage.get_ticket(UK, ticket.ticket_number) is None
    await storage.add_callback(DE, "+4930231250101", "Rückruf", "de")
    assert await storage.callbacks(UK) == []
    await storage.save_handoff(Handoff("h-1", "call-1", DE, "agent_requested", 1.0, {}))
    assert await storage.get_handoff("h-1", tenant=UK) is None
    assert (await storage.get_handoff("h-1", tenant=DE)).tenant == DE
    await storage.log_event(CallEvent("call-1", DE, 1.0, EventName.CALL_START))
    assert await storage.events(tenant=UK) == []


# Customers, tickets, callbacks, handoffs, events


async def test_customers_are_found_by_number_and_by_name_and_postcode(storage: SqlStorage):
    oliver = Customer(UK, "20001", "Oliver Bennett", "M3 2BW", "14 Deansgate", "Manchester", "+441614960101")
    await storage.upsert_customer(oliver)
    assert await storage.find_customer(UK, "20001") == oliver
    assert await storage.find_customer(UK, "20002") is None
    assert await storage.find_customer_by_name(UK, "oliver  BENNETT", "m32bw") == oliver
    assert await storage.find_customer_by_name(UK, "Oliver Bennett", "M3 3AP") is None

    moved = Customer(UK, "20001", "Oliver Bennett", "LS1 5HD", "8 Park Row", "Leeds", None)
    await storage.upsert_customer(moved)
    assert await storage.find_customer(UK, "20001") == moved
    assert await storage.find_customer_by_name(UK, "Oliver Bennett", "M3 2BW") is None

    await storage.upsert_customer(Customer(DE, "10003", "Mehmet Öztürk", "50823", "Venloer Straße 241", "Köln"))
    assert (await storage.find_customer_by_name(DE, "MEHMET ÖZTÜRK", "50823")).customer_number == "10003"


async def test_an_ambiguous_name_finds_nobody(storage: SqlStorage):
    for number in ("10005", "10006"):
        await storage.upsert_customer(Customer(DE, number, "Thomas Müller", "80802", "Leopoldstraße 1", "München"))
    assert await storage.find_customer_by_name(DE, "Thomas Müller", "80802") is None


async def test_tickets(storage: SqlStorage):
    ticket = await storage.create_ticket(
        UK, "delivery", "Parcel arrived damaged", "+441134960102", "high", call_id="call-7", caller="+441134960102"
    )
    assert re.fullmatch(r"[1-9][0-9]{7}", ticket.ticket_number)
    assert (ticket.status, ticket.category, ticket.urgency) == ("open", "delivery", "high")
    assert await storage.get_ticket(UK, ticket.ticket_number) == ticket
    assert await storage.get_ticket(UK, "12345678") is None
    numbers = {(await storage.create_ticket(UK, "other", "x", None, "low")).ticket_number for _ in range(50)}
    assert len(numbers | {ticket.ticket_number}) == 51


async def test_callbacks_are_listed_oldest_first(storage: SqlStorage):
    first = await storage.add_callback(DE, "+4930231250101", "Außerhalb der Öffnungszeiten", "de", call_id="c-1")
    second = await storage.add_callback(DE, "+4930231250102", "Reklamation", "de")
    assert first.id is not None and second.id is not None and first.id != second.id
    assert (first.status, first.call_id, second.call_id) == ("pending", "c-1", None)
    assert await storage.callbacks(DE) == [first, second]


async def test_handoff_package_round_trips_as_json(storage: SqlStorage):
    package = {
        "reason": "agent_requested",
        "intents": [{"name": "order_status", "confidence": 0.93}, {"name": "human_handoff", "confidence": 0.99}],
        "slots": {"order_number": "314159", "language": "de", "callback": None, "confirmed": True},
        "form": {"name": "cancel_order_form", "requested_slot": "confirm"},
        "transcript": [{"speaker": "caller", "text": "Ich möchte mit jemandem sprechen", "start": 12.5}],
    }
    await storage.save_handoff(Handoff("h-42", "call-42", DE, "agent_requested", 1717398720.5, package))
    found = await storage.get_handoff("h-42")
    assert found == Handoff("h-42", "call-42", DE, "agent_requested", 1717398720.5, package)
    assert await storage.get_handoff("h-43") is None


async def test_wrapups_are_kept_per_call_oldest_first(storage: SqlStorage):
    first = Wrapup("call-7", DE, "anna", "follow_up", "Kundin ruft wegen Rücksendung zurück.", 200.0, "h-7")
    second = Wrapup("call-7", DE, "ben", "resolved", "", 150.0)  # recorded later, but the call ended earlier for ben
    other = Wrapup("call-8", UK, "carl", "wrong_number", "", 100.0)
    for wrapup in (first, second, other):
        await storage.save_wrapup(wrapup)
    assert await storage.wrapups("call-7") == [second, first]
    assert await storage.wrapups("call-8") == [other]
    assert await storage.wrapups("call-9") == []


async def test_event_log_is_in_time_order_and_filters(storage: SqlStorage):
    logged = [
        CallEvent("a", DE, 10.0, EventName.CALL_START),
        CallEvent("a", DE, 12.0, EventName.INTENT, {"intent": "order_status", "confidence": 0.9}),
        CallEvent("b", UK, 11.0, EventName.CALL_START),
        CallEvent("a", DE, 12.0, EventName.NO_MATCH),  # same time as the INTENT: logging order decides
        CallEvent("b", UK, 20.0, EventName.HANGUP, {"reason": "caller"}),
        CallEvent("a", DE, 9.0, EventName.INTENT, {"intent": "greet"}),  # logged late, happened first
    ]
    for event in logged:
        await storage.log_event(event)
    assert await storage.events() == [logged[i] for i in (5, 0, 2, 1, 3, 4)]
    assert await storage.events(call_id="a") == [logged[i] for i in (5, 0, 1, 3)]
    assert await storage.events(tenant=UK) == [logged[2], logged[4]]
    assert await storage.events(since=12.0) == [logged[1], logged[3], logged[4]]
    assert await storage.events(call_id="a", tenant=DE, since=10.0) == [logged[i] for i in (0, 1, 3)]
    assert await storage.events(call_id="a", tenant=UK) == []


# Seed data


async def test_seeding_twice_duplicates_nothing(storage: SqlStorage):
    count = await seed(storage)
    assert count > 0
    assert await seed(storage) == count
    for tenant, number, status in [
        (DE, "314159", "placed"), (DE, "271828", "shipped"), (DE, "161803", "delivered"),
        (UK, "500100", "placed"), (UK, "500300", "shipped"), (UK, "500400", "delivered"),
    ]:  # fmt: skip
        assert (await storage.get_order(tenant, number)).status == status
    assert [o.order_number for o in await storage.orders_for_customer(DE, "10001")] == ["271828", "314159"]
    assert len((await storage.get_order(DE, "314159")).lines) == 2
    assert (await storage.find_customer_by_name(UK, "james o'connor", "EH2 2NN")).customer_number == "20003"
    assert (await storage.cancel_order(UK, "500400")).outcome == "not_cancellable"


SEED = """\
tenants:
  "+4930123456":
    customers:
      - {customer_number: "10001", name: Jürgen Schneider, postcode: "10115", street: Hauptstr. 1, city: Berlin}
  "+442071234567":
    customers:
      - {customer_number: "20001", name: Oliver Bennett, postcode: M3 2BW, street: 14 Deansgate, city: Manchester}
    orders:
      - order_number: "500100"
        customer_number: "20001"
        status: placed
        created_at: "2026-11-23T10:05:00+00:00"
        lines:
          - {sku: PAP-A4, name: A4 copier paper, quantity: 4, unit_price: 24.99}
"""


@pytest.mark.parametrize(
    "good, bad, line, field",
    [
        ("status: placed", "status: lost", 11, "orders.0.status"),
        ("quantity: 4", "quantity: four", 14, "orders.0.lines.0.quantity"),
        ('"20001"\n        status', '"29999"\n        status', 10, "orders.0.customer_number"),
        ("+00:00", "", 12, "orders.0.created_at"),
    ],
)
async def test_a_bad_seed_file_is_reported_by_line_and_field_and_nothing_is_stored(
    storage: SqlStorage, tmp_path: Path, good: str, bad: str, line: int, field: str
):
    path = tmp_path / "seed.yml"
    path.write_text(SEED.replace(good, bad), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        await seed(storage, path)
    assert f"{path}:{line}: tenants.+442071234567.{field}: " in str(error.value)
    assert await storage.find_customer(DE, "10001") is None


# SQLite only


def test_sqlite_processes_starting_while_another_one_writes_all_succeed(tmp_path: Path):
    """They queue behind the writer and then must not trip over each other (SQLite locks the whole file)."""
    path = tmp_path / "ivr.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("BEGIN IMMEDIATE")
    release = threading.Timer(6, writer.rollback)  # after all processes started and wait for the lock
    release.start()
    try:
        run_together(OPEN, [[f"sqlite:///{path}"]] * 3)
    finally:
        release.join()
        writer.close()
    assert revision(f"sqlite:///{path}") == HEAD


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(storage: SqlStorage):
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


async def test_a_customer_is_found_by_surname_alone_but_never_guessed(tmp_path):
    from ivr.storage import Customer, SqlStorage

    storage = SqlStorage(f"sqlite:///{tmp_path}/ivr.db")
    try:
        await storage.upsert_customer(
            Customer("+4930123456", "10001", "Jürgen Schneider", "10115", "Invalidenstr. 12", "Berlin", None)
        )
        found = await storage.find_customer_by_name("+4930123456", "schneider", "10115")
        assert found is not None and found.customer_number == "10001"
        assert (
            await storage.find_customer_by_name("+4930123456", "Jürgen  SCHNEIDER", "10115")
        ).customer_number == "10001"
        assert (
            await storage.find_customer_by_name("+4930123456", "jürgen", "10115") is None
        )  # a first name is not enough
        await storage.upsert_customer(
            Customer("+4930123456", "10009", "Petra Schneider", "10115", "Invalidenstr. 14", "Berlin", None)
        )
        assert (
            await storage.find_customer_by_name("+4930123456", "schneider", "10115") is None
        )  # two match: ask instead
    finally:
        await storage.close()
