"""Storage: calls and transcripts, business records and the call-event log (SQLite by default, any SQLAlchemy URL)."""

from ivr.storage.base import (
    CANCELLABLE_STATUSES,
    ORDER_STATUSES,
    CallbackRequest,
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
from ivr.storage.events import CallEvent, EventName
from ivr.storage.sql import SqlStorage

__all__ = [
    "CANCELLABLE_STATUSES",
    "ORDER_STATUSES",
    "CallbackRequest",
    "CallEvent",
    "EventName",
    "CallRecord",
    "CancelResult",
    "Customer",
    "Handoff",
    "Order",
    "OrderLine",
    "Storage",
    "Ticket",
    "Utterance",
    "Wrapup",
    "SqlStorage",
    "open_storage",
]


def open_storage(url: str) -> Storage:
    return SqlStorage(url)
