"""SQL storage with SQLAlchemy Core (SQLite by default, PostgreSQL by URL).

Database calls are short and synchronous; they run in a worker thread so the
event loop never waits on disk. Every write runs in one transaction. The
schema is created and upgraded by the Alembic migrations in
`ivr/storage/migrations` when the storage is opened; the tables are in
tables.py.

The IVR process and the Rasa action server write the same SQLite file, so
SQLite runs in WAL mode (readers never block the writer) with a busy timeout,
and write transactions take the write lock when they begin (BEGIN IMMEDIATE):
a writer then waits its turn instead of failing half-way through.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from ivr.storage import migrations
from ivr.storage.base import (
    CANCELLABLE_STATUSES,
    CallbackRequest,
    CallEvent,
    CallRecord,
    CancelResult,
    Customer,
    Handoff,
    Order,
    OrderLine,
    Storage,
    Ticket,
    Utterance,
    Wrapup,
)
from ivr.storage.tables import (
    call_events,
    callbacks,
    calls,
    customers,
    handoffs,
    order_lines,
    orders,
    tickets,
    utterances,
    wrapups,
)

SQLITE_BUSY_TIMEOUT_MS = 15000
NUMBER_ATTEMPTS = 20  # a random number collides rarely; twenty collisions in a row mean the range is full
_WRITE = "ivr_write"  # execution option marking write transactions (SQLite: BEGIN IMMEDIATE)
T = TypeVar("T")


def random_number(digits: int) -> str:
    """A random business number of exactly `digits` digits (no leading 0, so it reads out as a number)."""
    low = 10 ** (digits - 1)
    return str(low + secrets.randbelow(9 * low))


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


def _postcode_key(postcode: str) -> str:
    return "".join(postcode.casefold().split())


def _cents(price: Decimal | float) -> int:
    """Exact cents (OrderLine has made its price a Decimal; a float would first be rounded to cents)."""
    return int(Decimal(str(price)).quantize(Decimal("0.01")) * 100)


def _sqlite_setup(engine: sa.engine.Engine) -> None:
    """WAL, busy timeout and our own BEGIN (pysqlite's implicit transactions would not cover DDL or savepoints)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.engine.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class SqlStorage(Storage):
    def __init__(self, url: str, numbers: Callable[[int], str] = random_number):
        """Open (and create or upgrade) the database; `numbers` makes order and ticket numbers of n digits."""
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(
            url, future=True, json_serializer=lambda obj: json.dumps(obj, ensure_ascii=False, default=str)
        )
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._numbers = numbers
        with self._writer.begin() as conn:
            migrations.upgrade(conn)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` in one write transaction, in a worker thread."""

        def run() -> T:
            with self._writer.begin() as conn:
                return fn(conn, *args)

        return await asyncio.to_thread(run)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            with self.engine.connect() as conn:
                return fn(conn, *args)

        return await asyncio.to_thread(run)

    async def _execute(self, statement: sa.sql.Executable) -> None:
        await self._write(lambda conn: conn.execute(statement))

    # Calls and transcripts

    async def start_call(self, call: CallRecord) -> None:
        await self._execute(calls.insert().values(**call.__dict__))

    async def add_utterance(self, utterance: Utterance) -> None:
        values = dict(utterance.__dict__, meta=json.dumps(utterance.meta, default=str))
        await self._execute(utterances.insert().values(**values))

    async def end_call(self, call_id: str, ended_at: float, reason: str) -> None:
        statement = (
            calls.update()
            .where(calls.c.call_id == call_id, calls.c.ended_at.is_(None))
            .values(ended_at=ended_at, end_reason=reason)
        )
        await self._execute(statement)

    async def get_call(self, call_id: str) -> CallRecord | None:
        query = calls.select().where(calls.c.call_id == call_id)
        row = await self._read(lambda conn: conn.execute(query).mappings().first())
        return CallRecord(**row) if row else None

    async def calls_by_provider_id(self, provider_call_id: str) -> list[CallRecord]:
        query = calls.select().where(calls.c.provider_call_id == provider_call_id).order_by(calls.c.started_at)
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        return [CallRecord(**row) for row in rows]

    async def transcript(self, call_id: str) -> list[Utterance]:
        query = utterances.select().where(utterances.c.call_id == call_id).order_by(utterances.c.id)
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        return [
            Utterance(**{k: v for k, v in row.items() if k not in ("id", "meta")}, meta=json.loads(row["meta"]))
            for row in rows
        ]

    # Customers

    async def upsert_customer(self, customer: Customer) -> None:
        values = dict(
            customer.__dict__, name_key=_name_key(customer.name), postcode_key=_postcode_key(customer.postcode)
        )
        key = (customers.c.tenant == customer.tenant, customers.c.customer_number == customer.customer_number)
        await self._write(_upsert, customers, key, values)

    async def find_customer(self, tenant: str, customer_number: str) -> Customer | None:
        query = customers.select().where(customers.c.tenant == tenant, customers.c.customer_number == customer_number)
        row = await self._read(lambda conn: conn.execute(query).mappings().first())
        return _customer(row) if row else None

    async def find_customer_by_name(self, tenant: str, name: str, postcode: str) -> Customer | None:
        # Callers give their surname or their full name: both match, but only one customer may.
        query = customers.select().where(
            customers.c.tenant == tenant, customers.c.postcode_key == _postcode_key(postcode)
        )
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        said = _name_key(name)
        matches = [row for row in rows if said in (row["name_key"], row["name_key"].rsplit(" ", 1)[-1])]
        return _customer(matches[0]) if len(matches) == 1 else None

    # Orders

    async def place_order(
        self,
        tenant: str,
        customer_number: str,
        lines: Sequence[OrderLine],
        delivery_address: str,
        call_id: str | None = None,
    ) -> Order:
        if not lines:
            raise ValueError("an order needs at least one line")
        values: dict[str, Any] = {
            "tenant": tenant,
            "customer_number": customer_number,
            "status": "placed",
            "created_at": time.time(),
            "call_id": call_id,
            "delivery_address": delivery_address,
        }

        def place(conn: sa.engine.Connection) -> str:
            number, order_id = self._insert_numbered(conn, orders, "order_number", 6, values)
            _insert_lines(conn, order_id, lines)
            return number

        number = await self._write(place)
        return Order(order_number=number, lines=list(lines), **values)

    async def upsert_order(self, order: Order) -> None:
        values = {k: v for k, v in order.__dict__.items() if k != "lines"}
        key = (orders.c.tenant == order.tenant, orders.c.order_number == order.order_number)

        def upsert(conn: sa.engine.Connection) -> None:
            _upsert(conn, orders, key, values)
            order_id = conn.execute(sa.select(orders.c.id).where(*key)).scalar_one()
            conn.execute(order_lines.delete().where(order_lines.c.order_id == order_id))
            _insert_lines(conn, order_id, order.lines)

        await self._write(upsert)

    async def get_order(self, tenant: str, order_number: str) -> Order | None:
        found = await self._read(_load_orders, orders.c.tenant == tenant, orders.c.order_number == order_number)
        return found[0] if found else None

    async def orders_for_customer(self, tenant: str, customer_number: str) -> list[Order]:
        return await self._read(_load_orders, orders.c.tenant == tenant, orders.c.customer_number == customer_number)

    async def cancel_order(self, tenant: str, order_number: str) -> CancelResult:
        key = (orders.c.tenant == tenant, orders.c.order_number == order_number)

        def cancel(conn: sa.engine.Connection) -> CancelResult:
            update = orders.update().where(*key, orders.c.status.in_(CANCELLABLE_STATUSES)).values(status="cancelled")
            if conn.execute(update).rowcount == 1:
                return CancelResult("cancelled", "cancelled")
            status = conn.execute(sa.select(orders.c.status).where(*key)).scalar()
            return CancelResult("not_found") if status is None else CancelResult("not_cancellable", status)

        return await self._write(cancel)

    # Tickets and callbacks

    async def create_ticket(
        self,
        tenant: str,
        category: str,
        description: str,
        callback_number: str | None,
        urgency: str,
        call_id: str | None = None,
        caller: str | None = None,
    ) -> Ticket:
        values: dict[str, Any] = {
            "tenant": tenant,
            "category": category,
            "description": description,
            "callback_number": callback_number,
            "urgency": urgency,
            "status": "open",
            "created_at": time.time(),
            "call_id": call_id,
            "caller": caller,
        }
        number, _ = await self._write(self._insert_numbered, tickets, "ticket_number", 8, values)
        return Ticket(ticket_number=number, **values)

    async def get_ticket(self, tenant: str, ticket_number: str) -> Ticket | None:
        query = tickets.select().where(tickets.c.tenant == tenant, tickets.c.ticket_number == ticket_number)
        row = await self._read(lambda conn: conn.execute(query).mappings().first())
        return Ticket(**{k: v for k, v in row.items() if k != "id"}) if row else None

    async def add_callback(
        self, tenant: str, number: str, reason: str, language: str, call_id: str | None = None
    ) -> CallbackRequest:
        values: dict[str, Any] = {
            "tenant": tenant,
            "number": number,
            "reason": reason,
            "language": language,
            "created_at": time.time(),
            "call_id": call_id,
            "status": "pending",
        }
        result = await self._write(lambda conn: conn.execute(callbacks.insert().values(**values)))
        return CallbackRequest(id=result.inserted_primary_key[0], **values)

    async def callbacks(self, tenant: str) -> list[CallbackRequest]:
        query = callbacks.select().where(callbacks.c.tenant == tenant).order_by(callbacks.c.created_at, callbacks.c.id)
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        return [CallbackRequest(**row) for row in rows]

    # Handoffs, wrap-ups and the call-event log

    async def save_handoff(self, handoff: Handoff) -> None:
        await self._execute(handoffs.insert().values(**handoff.__dict__))

    async def get_handoff(self, handoff_id: str, tenant: str | None = None) -> Handoff | None:
        query = handoffs.select().where(handoffs.c.handoff_id == handoff_id)
        if tenant is not None:
            query = query.where(handoffs.c.tenant == tenant)
        row = await self._read(lambda conn: conn.execute(query).mappings().first())
        return Handoff(**row) if row else None

    async def save_wrapup(self, wrapup: Wrapup) -> None:
        await self._execute(wrapups.insert().values(**wrapup.__dict__))

    async def wrapups(self, call_id: str) -> list[Wrapup]:
        query = wrapups.select().where(wrapups.c.call_id == call_id).order_by(wrapups.c.created_at, wrapups.c.id)
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        return [Wrapup(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

    async def log_event(self, event: CallEvent) -> None:
        await self._execute(call_events.insert().values(**{**event.__dict__, "event": event.event.value}))

    async def events(
        self, call_id: str | None = None, tenant: str | None = None, since: float | None = None
    ) -> list[CallEvent]:
        query = call_events.select().order_by(call_events.c.ts, call_events.c.id)
        if call_id is not None:
            query = query.where(call_events.c.call_id == call_id)
        if tenant is not None:
            query = query.where(call_events.c.tenant == tenant)
        if since is not None:
            query = query.where(call_events.c.ts >= since)
        rows = await self._read(lambda conn: conn.execute(query).mappings().all())
        return [CallEvent(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

    def _insert_numbered(
        self, conn: sa.engine.Connection, table: sa.Table, column: str, digits: int, values: dict[str, Any]
    ) -> tuple[str, int]:
        """Insert a row under a fresh random number, unique per tenant; returns the number and the row id.

        The unique constraint decides: each attempt runs in a savepoint, and an
        attempt whose number turned out to be taken (also by a concurrent
        transaction) is rolled back and retried with another number.
        """
        for _ in range(NUMBER_ATTEMPTS):
            number = self._numbers(digits)
            try:
                with conn.begin_nested():
                    result = conn.execute(table.insert().values(**values, **{column: number}))
                return number, result.inserted_primary_key[0]
            except sa.exc.IntegrityError:
                taken = sa.select(table.c.id).where(table.c.tenant == values["tenant"], table.c[column] == number)
                if conn.execute(taken).first() is None:
                    raise  # some other constraint failed: not a collision
        raise RuntimeError(f"no free {table.name}.{column} for tenant {values['tenant']} after {NUMBER_ATTEMPTS} tries")

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)


def _upsert(conn: sa.engine.Connection, table: sa.Table, key: tuple[Any, ...], values: dict[str, Any]) -> None:
    """Update the row matching `key`, or insert it (inside the caller's write transaction)."""
    if conn.execute(table.update().where(*key).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(**values))


def _insert_lines(conn: sa.engine.Connection, order_id: int, lines: Sequence[OrderLine]) -> None:
    rows = [
        dict(order_id=order_id, sku=x.sku, name=x.name, quantity=x.quantity, unit_price_cents=_cents(x.unit_price))
        for x in lines
    ]
    conn.execute(order_lines.insert(), rows)


def _load_orders(conn: sa.engine.Connection, *where: Any) -> list[Order]:
    """Orders matching `where` with their lines, oldest first."""
    rows = conn.execute(orders.select().where(*where).order_by(orders.c.created_at, orders.c.id)).mappings().all()
    lines: dict[int, list[OrderLine]] = defaultdict(list)
    if rows:
        query = order_lines.select().where(order_lines.c.order_id.in_([r["id"] for r in rows]))
        for line in conn.execute(query.order_by(order_lines.c.id)).mappings():
            price = Decimal(line["unit_price_cents"]) / 100
            lines[line["order_id"]].append(OrderLine(line["sku"], line["name"], line["quantity"], price))
    return [Order(lines=lines[r["id"]], **{k: v for k, v in r.items() if k != "id"}) for r in rows]


def _customer(row: Any) -> Customer:
    return Customer(**{k: v for k, v in row.items() if k not in ("name_key", "postcode_key")})
