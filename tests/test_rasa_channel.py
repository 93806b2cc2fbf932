"""What the IVR channel reports per turn (runs Rasa's event classes, no model needed)."""

from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered

from ivr.dialog.payloads import DialogTurn
from ivr.dialog.rasa_channel import collected_this_turn


def test_values_a_form_set_and_reset_in_one_turn_are_still_reported():
    events = [
        UserUttered("2"),
        SlotSet("requested_slot", "order_number"),
        UserUttered("271828"),
        SlotSet("order_number", "271828"),
        ActionExecuted("action_order_status"),
        SlotSet("order_number", None),  # the form is done and clears its slot
        SlotSet("requested_slot", None),
    ]
    assert collected_this_turn(events) == {"order_number": "271828"}


def test_only_the_last_turn_counts_and_the_later_value_wins():
    events = [
        UserUttered("a"),
        SlotSet("product", "toaster"),
        UserUttered("b"),
        SlotSet("quantity", 1),
        SlotSet("quantity", 3),
    ]
    assert collected_this_turn(events) == {"quantity": 3}


def test_the_turn_payload_carries_them():
    turn = DialogTurn.from_json(
        {"messages": [], "slots": {"order_number": None}, "collected": {"order_number": "271828"}}
    )
    assert turn.collected == {"order_number": "271828"} and turn.slots == {"order_number": None}
