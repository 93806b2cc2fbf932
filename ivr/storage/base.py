"""The storage interface the sessions and the dialog actions write through.

Call transcripts are append-only (call start/end, one row per utterance) so a
backend can write each line as it happens: a crash mid-call loses nothing
already said. Business records (customers, orders, tickets, callbacks,
handoffs, agents' wrap-ups) and the flat call-event log live behind the same
interface so that the IVR process and the Rasa action server share one
database. Lookups take the tenant: one center serves several companies, and a
caller of one must never reach another's data. Only handoffs (by their random
id), wrap-ups (by call id) and the event log (for center-wide KPIs) can also be
read across tenants: the API checks the reader's tenants (ivr/agents/api.py).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ivr.storage.events import CallEvent


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    tenant: str
    company: str
    language: str
    channel: str  # media_stream, browser, text
    dialled: str | None = None
    caller: str | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    end_reason: str | None = None
    provider_call_id: str | None = None  # the telephony side's id (CallSid, SIP Call-ID); ours is call_id


@dataclass(frozen=True)
class Utterance:
    """One line of a transcript: who said what, when, and how sure we were."""

    call_id: str
    speaker: str  # caller | bot | system
    text: str
    start: float
    end: float
    asr_confidence: float | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Customer:
    """A tenant's customer, found by number or by name and postcode when the caller has no number at hand."""

    tenant: str
    customer_number: str
    name: str
    postcode: str
    street: str
    city: str
    phone: str | None = None


@dataclass(frozen=True)
class OrderLine:
    """One article of an order. Prices are kept as exact cents: a float price is rounded to cents once, here."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal | float

    def __post_init__(self) -> None:
        price = Decimal(str(self.unit_price)).quantize(Decimal("0.01"))
        object.__setattr__(self, "unit_price", price)


ORDER_STATUSES: tuple[str, ...] = ("placed", "packed", "shipped", "delivered", "cancelled")
# The one place that says when an order may still be cancelled: before it left the warehouse.
CANCELLABLE_STATUSES: tuple[str, ...] = ("placed", "packed")


@dataclass(frozen=True)
class Order:
    """An order with its lines; `order_number` is what callers read out (6 digits, unique per tenant)."""

    order_number: str
    tenant: str
    customer_number: str
    lines: list[OrderLine]
    status: str
    created_at: float
    call_id: str | None
    delivery_address: str

    @property
    def cancellable(self) -> bool:
        return self.status in CANCELLABLE_STATUSES


@dataclass(frozen=True)
class CancelResult:
    """What a cancel attempt did; `status` is the order's status afterwards (None when there is no such order)."""

    outcome: Literal["cancelled", "not_found", "not_cancellable"]
    status: str | None = None


@dataclass(frozen=True)
class Ticket:
    """A service ticket; `ticket_number` (8 digits, unique per tenant) is read out to the caller for follow-ups."""

    ticket_number: str
    tenant: str
    category: str
    description: str
    callback_number: str | None
    urgency: str
    status: str
    created_at: float
    call_id: str | None
    caller: str | None


@dataclass(frozen=True)
class CallbackRequest:
    """A caller asked to be called back (e.g. outside opening hours); `id` is None until stored."""

    id: int | None
    tenant: str
    number: str
    reason: str
    language: str
    created_at: float
    call_id: str | None
    status: str


@dataclass(frozen=True)
class Handoff:
    """The context an agent gets with a transferred call, so the caller need not repeat anything.

    `package` holds the reason, intent history, slots, form state and transcript
    as JSON data; it comes back as stored (values JSON cannot hold are stored
    as their text).
    """

    handoff_id: str
    call_id: str
    tenant: str
    reason: str
    created_at: float
    package: dict[str, Any]


@dataclass(frozen=True)
class Wrapup:
    """An agent's after-call work: how the call ended for the business and what to know about it.

    `disposition` is one of the codes in `queue.dispositions` (checked by the
    desktop, not here: old records keep codes that were later removed).
    `handoff_id` links it to the context package the agent got, when there was one.
    """

    call_id: str
    tenant: str
    agent: str  # username
    disposition: str
    notes: str
    created_at: float
    handoff_id: str | None = None


class Storage(abc.ABC):
    """What sessions and dialog actions need from storage; every method is safe to call from the event loop.

    Every write is one transaction: it is stored completely or not at all.
    """

    @abc.abstractmethod
    async def start_call(self, call: CallRecord) -> None: ...

    @abc.abstractmethod
    async def add_utterance(self, utterance: Utterance) -> None: ...

    @abc.abstractmethod
    async def end_call(self, call_id: str, ended_at: float, reason: str) -> None: ...

    @abc.abstractmethod
    async def get_call(self, call_id: str) -> CallRecord | None: ...

    @abc.abstractmethod
    async def calls_by_provider_id(self, provider_call_id: str) -> list[CallRecord]:
        """Our calls the telephony side knows by this id (usually one), oldest first."""

    @abc.abstractmethod
    async def transcript(self, call_id: str) -> list[Utterance]: ...

    @abc.abstractmethod
    async def upsert_customer(self, customer: Customer) -> None:
        """Insert the customer or replace the one with the same tenant and number."""

    @abc.abstractmethod
    async def find_customer(self, tenant: str, customer_number: str) -> Customer | None: ...

    @abc.abstractmethod
    async def find_customer_by_name(self, tenant: str, name: str, postcode: str) -> Customer | None:
        """The one customer with this full name or surname (any case and spacing) in this postcode.

        None when there is none or more than one: the dialog then asks for the
        customer number instead of guessing.
        """

    @abc.abstractmethod
    async def place_order(
        self,
        tenant: str,
        customer_number: str,
        lines: Sequence[OrderLine],
        delivery_address: str,
        call_id: str | None = None,
    ) -> Order:
        """Store a new `placed` order with a fresh order number and its lines."""

    @abc.abstractmethod
    async def upsert_order(self, order: Order) -> None:
        """Store an order exactly as given (number, status, lines), replacing one with the same number.

        For orders that come from elsewhere: the shop system, the demo seed.
        """

    @abc.abstractmethod
    async def get_order(self, tenant: str, order_number: str) -> Order | None: ...

    @abc.abstractmethod
    async def orders_for_customer(self, tenant: str, customer_number: str) -> list[Order]:
        """The customer's orders, oldest first (for callers who do not know the order number)."""

    @abc.abstractmethod
    async def cancel_order(self, tenant: str, order_number: str) -> CancelResult:
        """Cancel if still cancellable; checked and changed atomically, so of two concurrent cancels one wins."""

    @abc.abstractmethod
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
        """Store a new `open` ticket with a fresh ticket number."""

    @abc.abstractmethod
    async def get_ticket(self, tenant: str, ticket_number: str) -> Ticket | None: ...

    @abc.abstractmethod
    async def add_callback(
        self, tenant: str, number: str, reason: str, language: str, call_id: str | None = None
    ) -> CallbackRequest:
        """Store a `pending` callback request."""

    @abc.abstractmethod
    async def callbacks(self, tenant: str) -> list[CallbackRequest]:
        """The tenant's callback requests, oldest first."""

    @abc.abstractmethod
    async def save_handoff(self, handoff: Handoff) -> None: ...

    @abc.abstractmethod
    async def get_handoff(self, handoff_id: str, tenant: str | None = None) -> Handoff | None:
        """The handoff by its (globally unique) id; with `tenant`, only if it belongs to that tenant."""

    @abc.abstractmethod
    async def save_wrapup(self, wrapup: Wrapup) -> None:
        """Store an agent's wrap-up; a call may get several (e.g. after a transfer), none replaces another."""

    @abc.abstractmethod
    async def wrapups(self, call_id: str) -> list[Wrapup]:
        """The call's wrap-ups, oldest first."""

    @abc.abstractmethod
    async def log_event(self, event: CallEvent) -> None: ...

    @abc.abstractmethod
    async def events(
        self, call_id: str | None = None, tenant: str | None = None, since: float | None = None
    ) -> list[CallEvent]:
        """Logged events matching all given filters (`since` inclusive), in time order, then in logging order."""

    @abc.abstractmethod
    async def close(self) -> None: ...
