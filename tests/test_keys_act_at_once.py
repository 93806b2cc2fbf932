"""Keys act at once (issue 18), against the fake line of tests/test_legs.py.

A caller who pressed 0 during the greeting waited 27 s for an agent: the
greeting and the menu were one prompt that could not be interrupted, and the
queue announced itself before anybody was offered the call. Now the AI
disclosure stays uninterruptible, a key pressed during it acts the moment it
ends, the menu after it gives way to keys and speech, and a handed-off caller
is in the queue while the handoff sentence still plays. (How fast, on the real
server, is measured by bench/key_to_agent.py.)
"""

from __future__ import annotations

import asyncio

from ivr.dialog.payloads import BotReply, Handoff, ReplyPart
from ivr.queue import announcements as say
from ivr.queue import hold_music
from ivr.session.queue_leg import QueueLeg
from tests import test_legs
from tests.test_legs import FakeDialog, Rig, until

rig = test_legs.rig  # the fixture: a call's context on fakes

DISCLOSURE = "Willkommen. Sie sprechen mit einem automatischen Sprachassistenten."
MENU = "Wie kann ich Ihnen helfen? Drücken Sie die 1 für eine Bestellung oder die 0 für einen Mitarbeiter."
GREETING = BotReply(
    f"{DISCLOSURE} {MENU}",
    barge_in=False,
    expect="menu",
    dtmf={"1": "/place_order"},
    parts=(ReplyPart(DISCLOSURE, False), ReplyPart(MENU, True)),
)
HANDOFF = BotReply("Einen Moment bitte, ich verbinde Sie.", handoff=Handoff("dtmf_agent", "default"))


def dialog() -> FakeDialog:
    return FakeDialog(**{"/start_call": GREETING, "/request_human": HANDOFF})


async def greeting(r: Rig):
    leg = r.bot()
    await leg.greet()
    assert [(p.text, p.barge_in) for p in r.line.said] == [(DISCLOSURE, False), (MENU, True)]
    return leg


async def test_a_key_during_the_disclosure_acts_the_moment_it_ends_and_cuts_the_menu(rig):
    r = rig(dialog=dialog())
    await greeting(r)
    await r.line.key("0")
    await asyncio.sleep(0.05)
    assert r.dialog.texts == ["/start_call"]  # not before the disclosure is over
    assert not r.line.barged and r.line.playing[0].text == DISCLOSURE
    disclosure = await r.line.played_out()  # the far end played the disclosure to its end
    assert not disclosure.interrupted
    await until(lambda: r.dialog.texts[-1:] == ["/request_human"], what="the key's turn")
    assert r.line.barged == ["[dtmf 0]"]  # the menu gave way
    await r.line.hang_up("caller_hangup")
    assert not r.line.failures


async def test_the_disclosure_is_never_cut_by_speech_or_keys(rig):
    r = rig(dialog=dialog(), barge_in={"enabled": True, "min_words": 0})
    leg = await greeting(r)
    assert not leg.on_speech_started()
    await leg.on_partial("hallo hallo hallo")
    await r.line.key("1")
    await asyncio.sleep(0.05)
    assert not r.line.barged and [p.text for p in r.line.playing] == [DISCLOSURE, MENU]
    assert r.dialog.texts == ["/start_call"]


async def test_the_menu_is_cut_by_a_key(rig):
    r = rig(dialog=dialog())
    await greeting(r)
    await r.line.played_out()  # the disclosure
    await r.line.key("1")
    await until(lambda: r.dialog.texts[-1:] == ["/place_order"], what="the menu key's turn")
    assert r.line.barged == ["[dtmf 1]"]
    await r.line.hang_up("caller_hangup")


async def test_the_menu_is_cut_by_speech(rig):
    r = rig(dialog=dialog(), barge_in={"enabled": True, "min_words": 1})
    leg = await greeting(r)
    await r.line.played_out()  # the disclosure
    assert leg.on_speech_started()  # heard, not ignored, during the menu
    await leg.on_partial("bestellen")
    assert r.line.barged == ["bestellen"] and not r.line.playing


async def test_a_handed_off_caller_is_in_the_queue_while_the_handoff_sentence_plays(rig):
    r = rig(dialog=dialog())
    await greeting(r)
    await r.line.played_out()
    await r.line.key("0")
    await until(lambda: r.acd.enqueued, what="entering the queue")
    # The sentence has not been played out: the caller is offered to agents while hearing it.
    assert [p.text for p in r.line.playing][:1] == [HANDOFF.text]
    assert isinstance(r.line.leg, QueueLeg)
    assert r.acd.enqueued[0].handoff_id  # the context package was stored first
    await r.line.hang_up("caller_hangup")
    assert not r.line.failures


async def test_a_ringing_agent_means_music_not_an_announcement(rig):
    r = rig(dialog=dialog())
    await greeting(r)
    await r.line.played_out()
    r.acd.ringing_calls.add(r.ctx.call_id)  # the offer goes out as the caller enters the queue
    await r.line.key("0")
    await until(lambda: r.acd.enqueued, what="entering the queue")
    await until(lambda: len(r.line.said) == 4, what="music behind the handoff sentence")
    assert r.line.said[2].text == HANDOFF.text
    assert r.line.said[3].meta.music and r.line.said[3].text == hold_music.LABEL
    await r.line.played_out()  # the handoff sentence; the music plays while the agent's phone rings
    r.line.said[3].first_frame_at = 1.0  # the fake line does not send frames: the music has started
    await asyncio.sleep(0.1)
    assert len(r.line.said) == 4  # no announcement while it rings
    r.acd.ringing_calls.clear()  # the agent declined: the wait goes on, announced
    await until(lambda: len(r.line.said) == 5, what="the announcement after the ring")
    assert say.welcome("de") in r.line.texts[4]
    await r.line.hang_up("caller_hangup")
    assert not r.line.failures
