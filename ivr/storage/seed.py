"""Seed data: customers and orders loaded from a YAML file (the demo tenants' data by default).

A seed file is written by people, so it is validated like `ivr.yml`: every
problem is reported as `file:line: dotted.path: message`. Loading upserts by
customer and order number, so running it again changes nothing.
"""

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import validator

from ivr.settings import TenantNumber
from ivr.storage.base import ORDER_STATUSES, Customer, Order, OrderLine, Storage
from ivr.yaml_config import (
    Loc,
    Text,
    checked,
    config,
    integer,
    load_file,
    matching,
    non_empty,
    number,
    raise_problems,
    validate,
)

DEMO_SEED = Path(__file__).resolve().parent / "demo_seed.yml"
if TYPE_CHECKING:
    Digits = str
else:
    Digits = matching(r"^[0-9]{1,32}$")


def _timestamp(text: Any) -> float:
    """Seconds since the epoch of an ISO date and time with UTC offset."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError("needs a date and time with UTC offset, like 2024-06-03T09:12:00+02:00")
    return moment.timestamp()


@config
class LineRecord:
    sku: Text
    name: Text
    quantity: integer(ge=1)
    unit_price: number(ge=0)


@config
class CustomerRecord:
    customer_number: Digits
    name: Text
    postcode: Text
    street: Text
    city: Text
    phone: Text | None = None


@config
class OrderRecord:
    order_number: matching(r"^[1-9][0-9]{5}$")  # what callers read out: six digits
    customer_number: Digits
    status: Literal[ORDER_STATUSES]
    created_at: checked("Timestamp", _timestamp)
    lines: tuple[LineRecord, ...]
    delivery_address: Text | None = None  # default: the customer's address

    _some = validator("lines", allow_reuse=True)(non_empty("[] should be non-empty"))


def _repeated(numbers: list[str], field: str) -> list[tuple[Loc, str]]:
    """Each number that an earlier record of the list already has, at its own index."""
    return [((i, field), "appears twice") for i, n in enumerate(numbers) if n in numbers[:i]]


@config
class TenantRecords:
    """One tenant's customers and their orders; numbers are unique, orders name a customer of the tenant."""

    customers: tuple[CustomerRecord, ...] = ()
    orders: tuple[OrderRecord, ...] = ()

    @validator("customers")
    def _unique_customers(cls, customers: tuple[CustomerRecord, ...]) -> tuple[CustomerRecord, ...]:
        twice = _repeated([c.customer_number for c in customers], "customer_number")
        raise_problems(twice)
        return customers

    @validator("orders")
    def _unique_orders_of_known_customers(
        cls, orders: tuple[OrderRecord, ...], values: dict[str, Any]
    ) -> tuple[OrderRecord, ...]:
        found = _repeated([o.order_number for o in orders], "order_number")
        if "customers" in values:
            known = {c.customer_number for c in values["customers"]}
            found += [
                ((i, "customer_number"), f"{o.customer_number!r} is not a customer of this tenant")
                for i, o in enumerate(orders)
                if o.customer_number not in known
            ]
        raise_problems(found)
        return orders


@config
class SeedFile:
    tenants: dict[TenantNumber, TenantRecords]


def load_seed(path: str | Path = DEMO_SEED) -> tuple[list[Customer], list[Order]]:
    """Read and validate a seed file; raises ConfigError naming file, line and field of every problem."""
    path = Path(path)
    data, source = load_file(path, "seed file")
    parsed = validate(SeedFile, data, source, str(path))
    customers: list[Customer] = []
    orders: list[Order] = []
    for tenant, records in parsed.tenants.items():
        known = {c.customer_number: Customer(tenant=tenant, **asdict(c)) for c in records.customers}
        for raw in records.orders:
            customer = known[raw.customer_number]
            address = raw.delivery_address or f"{customer.street}, {customer.postcode} {customer.city}"
            lines = [OrderLine(line.sku, line.name, line.quantity, line.unit_price) for line in raw.lines]
            orders.append(
                Order(raw.order_number, tenant, raw.customer_number, lines, raw.status, raw.created_at, None, address)
            )
        customers.extend(known.values())
    return customers, orders


async def seed(storage: Storage, path: str | Path | None = None) -> int:
    """Upsert the customers and orders of a seed file (default: the demo data); returns how many it holds.

    Orders get back the status the file gives them, so seeding again also
    resets a demo (e.g. an order cancelled during it).
    """
    customers, orders = load_seed(path or DEMO_SEED)
    for customer in customers:
        await storage.upsert_customer(customer)
    for order in orders:
        await storage.upsert_order(order)
    return len(customers) + len(orders)
