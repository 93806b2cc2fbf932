"""What the voice front end reads from Rasa's messages (custom `ivr` payloads)."""

from ivr.dialog.payloads import BotReply


def test_a_menu_prompt_carries_its_keys_and_the_last_expectation_wins():
    reply = BotReply.from_messages(
        [
            {"text": "Willkommen bei Muster Versand GmbH."},
            {"custom": {"ivr": {"barge_in": False}}},
            {"text": "Wie kann ich Ihnen helfen?"},
            {"custom": {"ivr": {"expect": "menu", "dtmf": {"1": "/place_order", 2: "/order_status"}}}},
        ]
    )
    assert reply.text == "Willkommen bei Muster Versand GmbH. Wie kann ich Ihnen helfen?"
    assert reply.barge_in is False  # the disclosure in the same turn must not be talked over
    assert reply.expect == "menu" and reply.dtmf == {"1": "/place_order", "2": "/order_status"}


def test_a_handoff_names_reason_and_queue_and_unknown_values_are_ignored():
    reply = BotReply.from_messages(
        [
            {"text": "Einen Moment bitte."},
            {
                "custom": {
                    "ivr": {"handoff": {"reason": "angry_caller", "queue": "complaints"}, "expect": "poem", "dtmf": "1"}
                }
            },
        ]
    )
    assert reply.handoff is not None and (reply.handoff.reason, reply.handoff.queue) == ("angry_caller", "complaints")
    assert reply.expect is None and reply.dtmf == {}
    bare = BotReply.from_messages([{"custom": {"ivr": {"handoff": {}}}}])
    assert bare.handoff is not None and (bare.handoff.reason, bare.handoff.queue) == ("unspecified", "default")


def test_each_message_is_a_part_with_its_own_barge_in_flag():
    """The disclosure stays uninterruptible; the menu after it takes voice and keys (issue 18)."""
    reply = BotReply.from_messages(
        [
            {"text": "Willkommen. Sie sprechen mit einem automatischen Sprachassistenten."},
            {"custom": {"ivr": {"barge_in": False}}},
            {"text": "Wie kann ich Ihnen helfen?"},
            {"custom": {"ivr": {"expect": "menu"}}},
        ]
    )
    assert [(p.text, p.barge_in) for p in reply.spoken_parts] == [
        ("Willkommen. Sie sprechen mit einem automatischen Sprachassistenten.", False),
        ("Wie kann ich Ihnen helfen?", True),
    ]
    assert not reply.barge_in  # not every part may be talked over
    made_here = BotReply("Entschuldigung.", barge_in=False)
    assert [(p.text, p.barge_in) for p in made_here.spoken_parts] == [("Entschuldigung.", False)]
