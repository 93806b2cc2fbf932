"""The legs of a call against a fake line: no speech models, no Rasa, no sockets.

`FakeLine` implements `LineControl` (ivr/session/leg.py): it records what a leg
says, plays, stops and hands back, and lets a test play the caller (speech
started, partials, finals, keys) and the far end (a prompt played out). The
dialog is a fake that answers from a script; storage is the test settings'
SQLite file behind the real write-behind; the ACD is a fake that says where the
caller stands. Timers are the real ones, set to tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from types import SimpleNamespace
from typing import Any

import pytest

from ivr.audio.playback import Prompt
from ivr.audio.tts import SpeechChunk
from ivr.dialog.payloads import BotReply, DialogTurn, Handoff
from ivr.queue import announcements as say
from ivr.session.agent_leg import AgentLeg
from ivr.session.bot_leg import BotLeg
from ivr.session.conversation import Conversation
from ivr.session.events import AgentState, BargeIn, HandBack, OutboundEvent
from ivr.session.leg import CallContext, Heard, Leg, PromptMeta, Timing
from ivr.session.queue_leg import QueueLeg
from ivr.storage import CallRecord, EventName

MUSTER = "+4930123456"  # hands off to our own queue
TELEPHONY = "+4930888888"  # hands off back to the provider
CALLER = "+4917012345678"


# ---- fakes ---------------------------------------------------------------------------------------


async def _silence() -> AsyncIterator[SpeechChunk]:
    return
    yield  # an async generator with nothing in it


class FakeLine:
    """A line without audio: prompts play until the test says they are done."""

    sample_rate = 8000

    def __init__(self) -> None:
        self.closed = False
        self.leg: Leg | None = None
        self.playing: list[Prompt] = []
        self.said: list[Prompt] = []  # say() and play(), in order
        self.barged: list[str] = []
        self.stops = 0
        self.events: list[OutboundEvent] = []
        self.grammar: str | None = None
        self.audio_out = bytearray()
        self.hung_up: str | None = None
        self.handed_back: HandBack | None = None
        self.in_speech = False
        self.recognizing = 0
        self.tasks: set[asyncio.Future] = set()
        self.failures: list[BaseException] = []

    # ---- LineControl ----
    @property
    def speaking(self) -> bool:
        return bool(self.playing)

    @property
    def barge_in_allowed(self) -> bool:
        return not self.playing or self.playing[0].barge_in

    def attach(self, leg: Leg) -> None:
        self.leg = leg

    def say(self, text: str, barge_in: bool = True, meta: PromptMeta | None = None) -> Prompt:
        return self.play(text, _silence(), barge_in, meta or PromptMeta())

    def play(self, label: str, audio: AsyncIterator[SpeechChunk], barge_in: bool, meta: PromptMeta) -> Prompt:
        prompt = Prompt(label, audio, barge_in, len(self.said) + 1, meta=meta)
        self.playing.append(prompt)
        self.said.append(prompt)
        return prompt

    async def send_audio(self, pcm16k: bytes) -> None:
        self.audio_out.extend(pcm16k)

    async def stop(self) -> None:
        self.stops += 1
        for prompt in self.playing:
            prompt.done.set()
        self.playing.clear()

    async def barge_in(self, partial: str) -> bool:
        if not self.playing:
            return False
        self.barged.append(partial)
        await self.stop()
        self.events.append(BargeIn(""))
        return True

    async def event(self, event: OutboundEvent) -> None:
        self.events.append(event)

    def set_grammar(self, expect: str | None) -> None:
        self.grammar = expect

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    async def hang_up(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.hung_up = reason
        assert self.leg is not None
        await self.leg.on_close(reason)

    async def hand_back(self, handoff: HandBack) -> None:
        self.handed_back = handoff
        await self.hang_up(f"handoff:{handoff.reason}")

    # ---- the test plays the caller and the far end ----
    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.said]

    async def played_out(self) -> Prompt:
        """The prompt at the head finished playing."""
        prompt = self.playing.pop(0)
        prompt.done.set()
        assert self.leg is not None
        await self.leg.on_prompt_done(prompt)
        return prompt

    async def utterance(self, text: str, confidence: float = 0.9) -> None:
        assert self.leg is not None
        now = time.time()
        heard = Heard(text, confidence, now - 1, now, Timing(time.monotonic(), 0.3, time.monotonic()), {})
        await self.leg.on_final(heard)

    async def key(self, key: str) -> None:
        """As the line does: a key is handled in a task of its own (it may wait for a prompt to play)."""
        assert self.leg is not None
        task = self.spawn(self.leg.on_key(key))
        await asyncio.sleep(0)  # let it start
        await asyncio.wait([task], timeout=0.05)


class FakeDialog:
    """Answers from `replies` by message (`*` for anything else); records what reached it."""

    def __init__(self, **replies: BotReply) -> None:
        self.replies = {"/start_call": BotReply("Willkommen.", barge_in=False), "*": BotReply("Gern."), **replies}
        self.texts: list[str] = []

    async def turn(self, sender: str, text: str, slots: Any = None, metadata: Any = None, **options: Any) -> DialogTurn:
        self.texts.append(text)
        reply = self.replies.get(text, self.replies["*"])
        return DialogTurn(reply, intent="other", confidence=0.9)

    async def end(self, sender: str) -> None: ...


class FakeAcd:
    """Three callers ahead and five minutes' wait; records what the legs tell it."""

    def __init__(self, staffed: int = 1) -> None:
        self._staffed = staffed
        self.enqueued: list[Any] = []
        self.left: list[tuple[str, EventName]] = []
        self.caller_events: list[dict[str, Any]] = []
        self.caller_audio_bytes = 0
        self.ringing_calls: set[str] = set()  # calls an agent's phone rings with

    def ringing(self, call_id: str) -> bool:
        return call_id in self.ringing_calls

    def staffed(self, tenant: str, queue: str) -> int:
        return self._staffed

    def position(self, call_id: str) -> int:
        return 3

    def estimated_wait(self, call_id: str) -> float | None:
        return 300.0

    async def enqueue(self, call: Any) -> int:
        self.enqueued.append(call)
        return 3

    async def leave(self, call_id: str, verb: EventName = EventName.ABANDON, **data: Any) -> None:
        self.left.append((call_id, verb))

    async def caller_event(self, call_id: str, message: dict[str, Any]) -> None:
        self.caller_events.append(message)

    async def caller_audio(self, call_id: str, pcm16k: bytes) -> None:
        self.caller_audio_bytes += len(pcm16k)


async def until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.005)


@dataclasses.dataclass
class Rig:
    line: FakeLine
    dialog: FakeDialog
    acd: FakeAcd
    ctx: CallContext
    runtime: Any

    def bot(self) -> BotLeg:
        leg = BotLeg(self.ctx, self.line)
        self.line.attach(leg)
        return leg

    async def lines(self) -> list[str]:
        await self.runtime.write_behind.drain(5)
        return [u.text for u in await self.runtime.storage.transcript(self.ctx.call_id)]


@pytest.fixture
def rig(runtime):
    """A call's context on fakes; `configure(...)` changes settings or the tenant before the leg is made."""

    def configure(tenant: str = MUSTER, dialog: FakeDialog | None = None, caller: str = CALLER,
                  staffed: int = 1, **sections: dict[str, Any]) -> Rig:  # fmt: skip
        settings = runtime.settings
        for name, changes in sections.items():
            settings = dataclasses.replace(settings, **{name: dataclasses.replace(getattr(settings, name), **changes)})
        number, tenant_settings = settings.tenant_for(tenant)
        dialog = dialog or FakeDialog()
        call_id = f"leg-{time.monotonic_ns()}"
        record = CallRecord(
            call_id, number, tenant_settings.company, tenant_settings.language, "test", tenant, caller, time.time()
        )
        conversation = Conversation(record, tenant_settings, dialog, runtime.write_behind,  # type: ignore[arg-type]
                                    settings.timeouts.max_no_input)  # fmt: skip
        acd = FakeAcd(staffed)
        services = SimpleNamespace(acd=acd, storage=runtime.storage, write_behind=runtime.write_behind)
        ctx = CallContext(call_id, number, tenant_settings, caller, settings, conversation, services)  # type: ignore[arg-type]
        return Rig(FakeLine(), dialog, acd, ctx, runtime)

    return configure


async def greeted(rig: Rig) -> BotLeg:
    leg = rig.bot()
    await leg.greet()
    assert rig.line.texts == ["Willkommen."] and not rig.line.playing[0].barge_in
    await rig.line.played_out()
    return leg


# ---- digit collection --------------------------------------------------------------------------


async def test_digits_are_collected_until_hash_into_one_turn(rig):
    r = rig(dialog=FakeDialog(**{"/start_call": BotReply("Ihre Kundennummer?", expect="digits")}))
    leg = r.bot()
    await leg.greet()
    assert r.line.grammar == "digits"  # the recognizer listens for digits only
    for key in "4711#":
        await r.line.key(key)
    await r.line.played_out()  # keys during the greeting act as it ends
    await until(lambda: len(r.dialog.texts) == 2, what="the digits turn")
    assert r.dialog.texts == ["/start_call", "4711"]


async def test_digits_end_at_the_maximum_and_at_the_inter_digit_timeout(rig):
    r = rig(dialog=FakeDialog(**{"/start_call": BotReply("Ihre Kundennummer?", expect="digits"),
                                 "*": BotReply("Und weiter?", expect="digits")}),
            limits={"max_dtmf_digits": 4}, timeouts={"inter_digit_s": 0.05})  # fmt: skip
    leg = r.bot()
    await leg.greet()
    for key in "123456":
        await r.line.key(key)
    await r.line.played_out()
    await until(lambda: len(r.dialog.texts) == 2, what="the first four digits")
    assert r.dialog.texts[1] == "1234"
    await until(lambda: len(r.dialog.texts) == 3, what="the rest after the pause")
    assert r.dialog.texts[2] == "56"


async def test_keys_outside_a_digits_prompt_are_turns_of_their_own(rig):
    r = rig()
    await greeted(r)
    await r.line.key("0")
    await until(lambda: len(r.dialog.texts) == 2, what="the key turn")
    assert r.dialog.texts[1] == "/request_human"  # 0 is a person, everywhere


# ---- no input ---------------------------------------------------------------------------------------


async def test_no_input_reprompts_then_hands_off_to_the_queue(rig):
    r = rig(timeouts={"no_input_s": 0.03, "max_no_input": 2}, staffed=0)
    await greeted(r)
    for count in (1, 2):
        await until(lambda count=count: len(r.dialog.texts) == 1 + count, what=f"no-input {count}")
        assert r.dialog.texts[-1] == "/no_input"
        await until(lambda: len(r.line.playing) == 1, what="the reprompt")
        await r.line.played_out()
    await until(lambda: r.dialog.texts[-1] == "/request_human", what="the third silence")
    await until(lambda: len(r.line.playing) == 1, what="the handoff reply")
    await r.line.played_out()  # the reply that hands off ends: the call goes to the queue
    await until(lambda: isinstance(r.line.leg, QueueLeg), what="the queue leg")
    await until(lambda: len(r.line.playing) == 1, what="nobody there: the callback is taken")
    assert say.nobody_available("de") in r.line.texts[-1]
    await r.line.played_out()
    await until(lambda: r.line.hung_up is not None, what="hang-up")
    assert r.line.hung_up == "queue_callback:no_input"
    assert "[no input]" in await r.lines()


async def test_no_input_is_not_armed_while_the_caller_speaks_or_a_turn_runs(rig):
    r = rig(timeouts={"no_input_s": 0.03})
    leg = await greeted(r)
    assert leg.no_input_armed
    assert leg.on_speech_started()  # the caller speaks: the timer stops
    assert not leg.no_input_armed
    await asyncio.sleep(0.06)
    assert r.dialog.texts == ["/start_call"]


async def test_telephony_tenant_hands_back_with_the_handoff_id(rig):
    r = rig(tenant=TELEPHONY, dialog=FakeDialog(hilfe=BotReply("Ich verbinde.", handoff=Handoff("human", "default"))))
    await greeted(r)
    await r.line.utterance("hilfe")
    await until(lambda: len(r.line.playing) == 1, what="the handoff reply")
    await r.line.played_out()
    await until(lambda: r.line.handed_back is not None, what="hand-back")
    assert r.line.handed_back.reason == "human" and r.line.handed_back.handoff_id
    assert r.line.hung_up == "handoff:human"


# ---- barge-in ----------------------------------------------------------------------------------------


async def test_speech_during_a_barge_in_prompt_stops_it(rig):
    r = rig(barge_in={"enabled": True, "min_words": 1})
    leg = await greeted(r)
    await r.line.utterance("etwas")
    await until(lambda: len(r.line.playing) == 1, what="a reply")
    assert leg.on_speech_started()  # recognized; min_words 1: not cut yet
    assert r.line.playing and not r.line.barged
    await leg.on_partial("nein")
    assert r.line.barged == ["nein"] and not r.line.playing


async def test_speech_during_a_prompt_without_barge_in_is_not_recognized(rig):
    r = rig(barge_in={"enabled": True, "min_words": 0})
    leg = r.bot()
    await leg.greet()  # the greeting carries the AI disclosure: never cut
    assert not leg.on_speech_started()
    await leg.on_partial("hallo hallo")
    await r.line.key("5")
    assert r.line.playing and not r.line.barged


async def test_onset_barges_in_when_no_words_are_needed(rig):
    r = rig(barge_in={"enabled": True, "min_words": 0})
    leg = await greeted(r)
    await r.line.utterance("etwas")
    await until(lambda: len(r.line.playing) == 1, what="a reply")
    assert leg.on_speech_started()
    await until(lambda: r.line.barged == [""], what="barge-in at onset")


async def test_barge_in_switched_off_lets_the_prompt_play(rig):
    r = rig(barge_in={"enabled": False, "min_words": 1})
    leg = await greeted(r)
    await r.line.utterance("etwas")
    await until(lambda: len(r.line.playing) == 1, what="a reply")
    assert leg.on_speech_started()
    await leg.on_partial("nein danke")
    assert r.line.playing and not r.line.barged


# ---- the queue ------------------------------------------------------------------------------------


async def test_queue_announces_position_and_wait_and_takes_a_callback_on_key_1(rig):
    r = rig(queue={"callback_offer_after_s": 60.0})
    leg = QueueLeg(r.ctx, r.line, None, "urgent", "muster-general")
    r.line.attach(leg)
    await leg.enter()
    assert r.acd.enqueued and r.acd.enqueued[0].priority == 10
    await until(lambda: len(r.line.said) == 1, what="the first announcement")
    first = r.line.texts[0]
    assert say.welcome("de") in first and say.position_and_wait(3, 300.0, "de") in first
    assert say.callback_offer("de") in first and leg.callback_offered
    await r.line.key("1")
    await until(lambda: r.acd.left == [(r.ctx.call_id, EventName.EXITWITHKEY)], what="leaving the queue")
    await until(lambda: len(r.line.playing) == 1, what="the callback confirmation")
    await r.line.played_out()
    await until(lambda: r.line.hung_up is not None, what="hang-up")
    assert r.line.hung_up == "queue_callback:urgent"
    callbacks = await r.runtime.storage.callbacks(MUSTER)
    assert [(c.number, c.call_id) for c in callbacks] == [(CALLER, r.ctx.call_id)]


async def test_queue_plays_music_between_announcements(rig):
    r = rig(queue={"announce_every_s": 0.05})
    leg = QueueLeg(r.ctx, r.line, None, "human", "muster-general")
    r.line.attach(leg)
    await leg.enter()
    await until(lambda: len(r.line.said) == 1, what="the announcement")
    await r.line.played_out()
    await until(lambda: len(r.line.said) == 2, what="the music")
    assert r.line.said[1].meta.music
    await r.line.played_out()
    await until(lambda: len(r.line.said) == 3, what="the next announcement")
    assert say.welcome("de") not in r.line.texts[2] and say.position_and_wait(3, 300.0, "de") in r.line.texts[2]
    await r.line.hang_up("caller_hangup")
    assert r.acd.left == [(r.ctx.call_id, EventName.ABANDON)]


# ---- swapping legs ---------------------------------------------------------------------------------


async def test_bot_leg_to_queue_leg_to_agent_leg_and_back(rig):
    r = rig(dialog=FakeDialog(mensch=BotReply("Ich verbinde.", handoff=Handoff("human", "default"))))
    await greeted(r)
    await r.line.utterance("mensch")
    await until(lambda: len(r.line.playing) == 1, what="the handoff reply")
    await r.line.played_out()
    await until(lambda: isinstance(r.line.leg, QueueLeg) and r.acd.enqueued, what="waiting in the queue")
    queue_leg = r.line.leg
    assert isinstance(queue_leg, QueueLeg) and queue_leg.handoff_id and r.line.grammar is None
    await until(lambda: len(r.line.said) == 3, what="the announcement")

    await queue_leg.agent_connected(SimpleNamespace(username="anna"))  # type: ignore[arg-type]
    agent_leg = r.line.leg
    assert isinstance(agent_leg, AgentLeg) and not r.line.playing  # the announcement gave way
    assert AgentState("connected") in r.line.events
    await agent_leg.on_audio(b"\0\0" * 320)
    await agent_leg.on_partial("ich habe")
    await r.line.utterance("ich habe eine frage")
    assert r.acd.caller_audio_bytes == 640
    assert [(e["text"], e["final"]) for e in r.acd.caller_events] == [
        ("ich habe", False),
        ("ich habe eine frage", True),
    ]
    await queue_leg.agent_audio(b"\1\0" * 320)
    assert len(r.line.audio_out) == 640
    await queue_leg.hold(True)
    await until(lambda: r.line.playing and r.line.playing[0].meta.music, what="hold music")
    await queue_leg.hold(False)
    assert not r.line.playing

    await queue_leg.requeued("agent_lost")  # back to waiting, at the head of the queue
    assert r.line.leg is queue_leg
    await until(lambda: say.reconnecting("de") in r.line.texts[-1], what="the reconnect announcement")
    await r.line.hang_up("caller_hangup")
    assert r.acd.left[-1] == (r.ctx.call_id, EventName.ABANDON)
    assert r.dialog.texts == ["/start_call", "mensch"]  # the dialog is over once handed off
    lines = await r.lines()
    assert "[queue]" in lines and "[connected to agent]" in lines and "ich habe eine frage" in lines
    assert not r.line.failures


async def test_a_slow_dialog_turn_does_not_hold_up_the_next_utterance(rig):
    """Turns run one at a time in their own task: what the caller says meanwhile is queued, in order."""
    gate = asyncio.Event()
    dialog = FakeDialog()
    answer = dialog.turn

    async def slow_turn(sender: str, text: str, **kwargs: Any) -> DialogTurn:
        if text == "hallo":
            await gate.wait()
        return await answer(sender, text, **kwargs)

    dialog.turn = slow_turn  # type: ignore[method-assign]
    r = rig(dialog=dialog)
    leg = await greeted(r)
    await asyncio.wait_for(r.line.utterance("hallo"), 1)  # returns at once: the turn waits in its task
    await asyncio.wait_for(r.line.utterance("danke"), 1)
    assert leg.busy == 2 and r.dialog.texts == ["/start_call"]  # "hallo" waits in the dialog
    gate.set()
    await until(lambda: r.dialog.texts == ["/start_call", "hallo", "danke"], what="both turns, in order")
    await until(lambda: leg.busy == 0, what="turns done")
