"""Orders: place one (with read-back and explicit confirmation), ask where one is, cancel one.

Nothing is stored until the caller has heard the whole order read back and
said yes; a "no, three" at the read-back corrects the quantity and reads the
order back again. Order numbers are read back digit by digit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions import answers
from dialogs.actions.answers import Invalid
from dialogs.actions.context import language_of, storage, tenant_of
from dialogs.actions.forms import IvrForm, escalate
from dialogs.actions.handoff import clear_form_slots, log_event
from ivr.dialog.numbers import spoken_digits
from ivr.storage import EventName, OrderLine

ORDER_NUMBER_DIGITS = 6
CUSTOMER_NUMBER_DIGITS = (4, 8)
UNKNOWN = "unknown"


def money(amount: Decimal | float, tenant: Any, language: str) -> str:
    """An amount as the voice should say it: "269,70 Euro", "£12.50"."""
    value = Decimal(str(amount)).quantize(Decimal("0.01"))
    currency = getattr(tenant, "currency", "EUR")
    if language == "de":
        text = f"{value:.2f}".replace(".", ",")
        return f"{text} {'Euro' if currency == 'EUR' else 'Pfund' if currency == 'GBP' else currency}"
    return f"{'£' if currency == 'GBP' else '€' if currency == 'EUR' else currency + ' '}{value:.2f}"


class ActionStartOrder(Action):
    """Only tenants with a catalogue take orders by phone; the others say so clearly."""

    def name(self) -> str:
        return "action_start_order"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        _, tenant = tenant_of(tracker)
        if not tenant.catalogue:
            await log_event(tracker, EventName.ORDER_UNAVAILABLE)
            dispatcher.utter_message(response="utter_no_catalogue")
            return [FollowupAction("utter_anything_else")]
        return [FollowupAction("order_form")]


class ValidateOrderForm(IvrForm):
    form = "order_form"
    submit = "action_place_order"
    confirm_when_unsure = ("customer_number", "postcode")
    prefillable = ("product", "quantity")

    def slots(self, tracker: Tracker) -> list[str]:
        who = ["customer_number"]
        if tracker.get_slot("customer_number") == UNKNOWN:
            who = ["customer_name", "postcode"]
        return ["product", "quantity", *who, "address_confirmed", "order_confirmed"]

    async def parse_product(self, text: str, tracker: Tracker) -> str:
        _, tenant = tenant_of(tracker)
        product = tenant.find_product(text, language_of(tracker))
        if product is None:
            raise Invalid("utter_unknown_product")
        return product.sku

    async def parse_quantity(self, text: str, tracker: Tracker) -> int:
        amount = answers.quantity(text, tracker)
        if amount is None:
            raise Invalid()
        product = self._product(tracker)
        if amount < 1 or (product is not None and amount > product.max_quantity):
            raise Invalid("utter_invalid_quantity", maximum=product.max_quantity if product else 1)
        return amount

    async def parse_customer_number(self, text: str, tracker: Tracker) -> str:
        if tracker.latest_message.get("intent", {}).get("name") == "dont_know":
            return UNKNOWN
        number = answers.digits(text, tracker, *CUSTOMER_NUMBER_DIGITS)
        tenant_number, _ = tenant_of(tracker)
        if await storage().find_customer(tenant_number, number) is None:
            raise Invalid("utter_customer_not_found", number=spoken_digits(number))
        return number

    async def parse_customer_name(self, text: str, tracker: Tracker) -> str:
        return answers.free_text(tracker, min_words=1)

    async def parse_postcode(self, text: str, tracker: Tracker) -> str:
        tenant_number, tenant = tenant_of(tracker)
        if tenant.language == "de":
            postcode = answers.digits(text, tracker, 5, 5)
        else:
            postcode = " ".join(text.upper().split())
        customer = await storage().find_customer_by_name(tenant_number, tracker.get_slot("customer_name"), postcode)
        if customer is None:
            raise Invalid("utter_customer_not_found_by_name", reset=("customer_name",))
        return postcode

    async def parse_address_confirmed(self, text: str, tracker: Tracker) -> bool:
        return answers.yes_no(tracker)

    async def parse_order_confirmed(self, text: str, tracker: Tracker) -> bool:
        """Yes, no, or a correction of product or quantity ("nein, drei Stück"); keys 1 and 2 are yes and no."""
        if answers.keyed(tracker):
            return answers.yes_no(tracker)
        correction = answers.quantity(text, tracker)
        _, tenant = tenant_of(tracker)
        product = tenant.find_product(text, language_of(tracker))
        if correction is not None or product is not None:
            raise Correction(product.sku if product else None, correction)
        return answers.yes_no(tracker)

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        try:
            return await super().run(dispatcher, tracker, domain)
        except Correction as change:
            return await self._correct(change, dispatcher, tracker)

    async def _correct(self, change: Correction, dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
        events: list[EventType] = []
        if change.sku:
            events.append(SlotSet("product", change.sku))
            tracker.slots["product"] = change.sku
        if change.quantity is not None:
            try:
                quantity = await self.parse_quantity(str(change.quantity), tracker)
            except Invalid as problem:
                dispatcher.utter_message(response=problem.response or "utter_not_understood_short", **problem.values)
                return [*events, SlotSet("requested_slot", "order_confirmed")]
            events.append(SlotSet("quantity", quantity))
            tracker.slots["quantity"] = quantity
        events += await self.summary(tracker)
        return [*events, SlotSet("order_confirmed", None), SlotSet("requested_slot", "order_confirmed")]

    async def on_filled(
        self, slot: str, value: Any, tracker: Tracker, dispatcher: CollectingDispatcher
    ) -> list[EventType]:
        if slot == "product":
            return [SlotSet("product_name", self._product_name(tracker))]
        if slot in ("customer_number", "postcode") and value != UNKNOWN:
            return await self._customer(tracker)
        if slot == "address_confirmed":
            if value is False:
                # A new address is a data change that a person makes.
                return escalate("address_change")
            return await self.summary(tracker)
        if slot == "order_confirmed" and value is False:
            dispatcher.utter_message(response="utter_order_restart")
            return [SlotSet("product", None), SlotSet("quantity", None), SlotSet("order_confirmed", None)]
        return []

    async def _customer(self, tracker: Tracker) -> list[EventType]:
        tenant_number, _ = tenant_of(tracker)
        if tracker.get_slot("customer_number") not in (None, UNKNOWN):
            customer = await storage().find_customer(tenant_number, tracker.get_slot("customer_number"))
        else:
            customer = await storage().find_customer_by_name(
                tenant_number, tracker.get_slot("customer_name"), tracker.get_slot("postcode")
            )
        if customer is None:
            return []
        address = f"{customer.street}, {customer.postcode} {customer.city}"
        return [SlotSet("customer_number", customer.customer_number), SlotSet("customer_name", customer.name),
                SlotSet("delivery_address", address)]  # fmt: skip

    def _product_name(self, tracker: Tracker) -> str:
        _, tenant = tenant_of(tracker)
        names = self._product(tracker).name
        return names.get(language_of(tracker)) or names[tenant.language]

    def _product(self, tracker: Tracker) -> Any:
        _, tenant = tenant_of(tracker)
        sku = tracker.get_slot("product")
        return next((p for p in tenant.catalogue if p.sku == sku), None)

    async def summary(self, tracker: Tracker) -> list[EventType]:
        """Slots the read-back prompt (`utter_ask_order_confirmed`) speaks."""
        _, tenant = tenant_of(tracker)
        product, language = self._product(tracker), language_of(tracker)
        quantity = tracker.get_slot("quantity")
        if product is None or quantity is None:
            return []
        total = Decimal(str(product.price)) * int(quantity)
        return [
            SlotSet("product_name", self._product_name(tracker)),
            SlotSet("order_total", money(total, tenant, language)),
        ]


class Correction(Exception):
    def __init__(self, sku: str | None, quantity: int | None):
        super().__init__(sku, quantity)
        self.sku = sku
        self.quantity = quantity


class ActionPlaceOrder(Action):
    """Stores the confirmed order and reads its number back digit by digit."""

    def name(self) -> str:
        return "action_place_order"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        tenant_number, tenant = tenant_of(tracker)
        product = next(p for p in tenant.catalogue if p.sku == tracker.get_slot("product"))
        line = OrderLine(product.sku, product.name[tenant.language], int(tracker.get_slot("quantity")), product.price)
        order = await storage().place_order(
            tenant_number, tracker.get_slot("customer_number"), [line], tracker.get_slot("delivery_address"),
            tracker.sender_id,
        )  # fmt: skip
        await log_event(tracker, EventName.FORM_COMPLETED, form="order_form")
        await log_event(tracker, EventName.ORDER_PLACED, order_number=order.order_number, lines=1)
        dispatcher.utter_message(response="utter_order_placed", order_number=spoken_digits(order.order_number))
        return [*clear_form_slots(domain, "order_form"), SlotSet("last_order_number", order.order_number),
                FollowupAction("utter_anything_else")]  # fmt: skip


class ValidateOrderStatusForm(IvrForm):
    form = "order_status_form"
    submit = "action_order_status"
    confirm_when_unsure = ("order_number",)
    prefillable = ("order_number",)

    def slots(self, tracker: Tracker) -> list[str]:
        return ["order_number"]

    async def parse_order_number(self, text: str, tracker: Tracker) -> str:
        number = answers.digits(text, tracker, ORDER_NUMBER_DIGITS, ORDER_NUMBER_DIGITS)
        tenant_number, _ = tenant_of(tracker)
        if await storage().get_order(tenant_number, number) is None:
            raise Invalid("utter_order_not_found", number=spoken_digits(number))
        return number


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        tenant_number, _ = tenant_of(tracker)
        number = tracker.get_slot("order_number")
        order = await storage().get_order(tenant_number, number)
        await log_event(tracker, EventName.FORM_COMPLETED, form="order_status_form")
        if order is None:  # the form found it; gone since (or the slot was set from outside the form)
            dispatcher.utter_message(response="utter_order_not_found", number=spoken_digits(number))
        else:
            dispatcher.utter_message(response=f"utter_order_status_{order.status}", number=spoken_digits(number))
        return [*clear_form_slots(domain, "order_status_form"), FollowupAction("utter_anything_else")]


class ValidateCancelOrderForm(ValidateOrderStatusForm):
    form = "cancel_order_form"
    submit = "action_cancel_order"

    def slots(self, tracker: Tracker) -> list[str]:
        return ["order_number", "cancel_confirmed"]

    async def on_filled(
        self, slot: str, value: Any, tracker: Tracker, dispatcher: CollectingDispatcher
    ) -> list[EventType]:
        if slot != "order_number":
            return []
        tenant_number, _ = tenant_of(tracker)
        order = await storage().get_order(tenant_number, value)
        if order is None:  # parse_order_number found it a moment ago; gone since: ask for the number again
            return [SlotSet("order_number", None)]
        events = [SlotSet("order_state", order.status), SlotSet("order_number_spoken", spoken_digits(value))]
        if not order.cancellable:
            # Nothing to confirm: the form ends and the caller hears why (see ActionCancelOrder).
            events.append(SlotSet("cancel_confirmed", False))
        return events

    async def parse_cancel_confirmed(self, text: str, tracker: Tracker) -> bool:
        return answers.yes_no(tracker)


class ActionCancelOrder(Action):
    def name(self) -> str:
        return "action_cancel_order"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        tenant_number, _ = tenant_of(tracker)
        number = tracker.get_slot("order_number")
        spoken = spoken_digits(number)
        await log_event(tracker, EventName.FORM_COMPLETED, form="cancel_order_form")
        if tracker.get_slot("cancel_confirmed"):
            result = await storage().cancel_order(tenant_number, number)
            if result.outcome == "cancelled":
                await log_event(tracker, EventName.ORDER_CANCELLED, order_number=number)
                dispatcher.utter_message(response="utter_order_cancelled", number=spoken)
            else:
                dispatcher.utter_message(response=f"utter_not_cancellable_{result.status}", number=spoken)
        elif tracker.get_slot("order_state") in ("placed", "packed"):
            dispatcher.utter_message(response="utter_order_kept", number=spoken)
        else:
            dispatcher.utter_message(response=f"utter_not_cancellable_{tracker.get_slot('order_state')}", number=spoken)
        return [*clear_form_slots(domain, "cancel_order_form"), SlotSet("order_state", None),
                FollowupAction("utter_anything_else")]  # fmt: skip
