"""Seed data: customers and orders loaded from a YAML file (the demo tenants' data by default).

A seed file is written by people, so it is validated like `ivr.yml`: every
problem is reported as `file:line: dotted.path: message`. Loading upserts by
customer and order number, so running it again changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from ivr.errors import ConfigError
from ivr.settings import line_of, to_plain
from ivr.storage.base import ORDER_STATUSES, Customer, Order, OrderLine, Storage

DEMO_SEED = Path(__file__).resolve().parent / "demo_seed.yml"


def _obj(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_STR = {"type": "string", "minLength": 1}
_DIGITS = {"type": "string", "pattern": r"^[0-9]{1,32}$"}
_LINE = _obj(
    {
        "sku": _STR,
        "name": _STR,
        "quantity": {"type": "integer", "minimum": 1},
        "unit_price": {"type": "number", "minimum": 0},
    },
    ("sku", "name", "quantity", "unit_price"),
)
_CUSTOMER = _obj(
    {
        "customer_number": _DIGITS,
        "name": _STR,
        "postcode": _STR,
        "street": _STR,
        "city": _STR,
        "phone": {"type": ["string", "null"]},
    },
    ("customer_number", "name", "postcode", "street", "city"),
)
_ORDER = _obj(
    {
        "order_number": {"type": "string", "pattern": r"^[1-9][0-9]{5}$"},
        "customer_number": _DIGITS,
        "status": {"enum": list(ORDER_STATUSES)},
        "created_at": _STR,
        "delivery_address": _STR,
        "lines": {"type": "array", "minItems": 1, "items": _LINE},
    },
    ("order_number", "customer_number", "status", "created_at", "lines"),
)
SCHEMA = _obj(
    {
        "tenants": {
            "type": "object",
            "propertyNames": {"pattern": r"^\+?[0-9*#]{2,20}$"},
            "additionalProperties": _obj(
                {"customers": {"type": "array", "items": _CUSTOMER}, "orders": {"type": "array", "items": _ORDER}}, ()
            ),
        }
    },
    ("tenants",),
)


def _timestamp(text: str) -> Optional[float]:
    """Seconds since the epoch for an ISO date and time with UTC offset, else None."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None


def _records(data: dict[str, Any], problem: Any) -> tuple[list[Customer], list[Order]]:
    """Customers and orders of a schema-valid file; `problem(path, message)` reports what the schema cannot check."""
    customers: list[Customer] = []
    orders: list[Order] = []
    for tenant, records in data["tenants"].items():
        known: dict[str, Customer] = {}
        for i, raw in enumerate(records.get("customers") or []):
            if raw["customer_number"] in known:
                problem(["tenants", tenant, "customers", i, "customer_number"], "appears twice")
            known[raw["customer_number"]] = Customer(tenant=tenant, **raw)
        seen: set[str] = set()
        for i, raw in enumerate(records.get("orders") or []):
            path = ["tenants", tenant, "orders", i]
            if raw["order_number"] in seen:
                problem([*path, "order_number"], "appears twice")
            seen.add(raw["order_number"])
            customer = known.get(raw["customer_number"])
            if customer is None:
                problem([*path, "customer_number"], f"{raw['customer_number']!r} is not a customer of this tenant")
                continue
            created_at = _timestamp(raw["created_at"])
            if created_at is None:
                problem([*path, "created_at"], "needs a date and time with UTC offset, like 2024-06-03T09:12:00+02:00")
                continue
            address = raw.get("delivery_address") or f"{customer.street}, {customer.postcode} {customer.city}"
            lines = [OrderLine(**line) for line in raw["lines"]]
            number, status = raw["order_number"], raw["status"]
            orders.append(Order(number, tenant, customer.customer_number, lines, status, created_at, None, address))
        customers.extend(known.values())
    return customers, orders


def load_seed(path: str | Path = DEMO_SEED) -> tuple[list[Customer], list[Order]]:
    """Read and validate a seed file; raises ConfigError naming file, line and field of every problem."""
    path = Path(path)
    try:
        source = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read seed file: {exc.strerror}"]) from exc
    except MarkedYAMLError as exc:
        where = f"{path}:{exc.problem_mark.line + 1}" if exc.problem_mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from exc
    data = to_plain(source)
    problems: list[str] = []

    def problem(loc: list[Any], message: str) -> None:
        line = line_of(source, loc)
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        problems.append(f"{path}:{line}: {dotted}: {message}" if line else f"{path}: {dotted}: {message}")

    validator = jsonschema.Draft202012Validator(SCHEMA)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        problem(list(err.absolute_path), err.message)
    if problems:
        raise ConfigError(problems)
    records = _records(data, problem)
    if problems:
        raise ConfigError(problems)
    return records


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
