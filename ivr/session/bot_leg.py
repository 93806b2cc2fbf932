"""The bot leg: the caller talks to the dialog.

Recognized speech, completed keypad input and no-input timeouts become dialog
turns. The turns run one at a time, in order, in a task of their own (never in
the ASR worker: a slow turn must not delay recognizing what the caller says
next; what they say meanwhile is queued, not lost). Replies are spoken on the
line, one prompt per part (Rasa message) with the part's own barge-in flag: the
AI disclosure cannot be interrupted, the menu after it can, by voice and keys.
A key pressed during a prompt that cannot be interrupted is held and acted on
the moment that prompt ends (cutting the rest), so "0" in the greeting reaches
a person without waiting for the menu (issue 18). A reply that hands off ends
the bot leg: the call enters our own agent queue (the queue leg) as the
handoff sentence starts, so a free agent is offered it at once, or goes back
to the telephony side once the sentence is said.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from ivr.audio.playback import Prompt
from ivr.dialog.payloads import BotReply, DialogTurn, Handoff
from ivr.session.events import HandBack
from ivr.session.leg import CallContext, Heard, Latency, LineControl, PromptMeta
from ivr.session.limits import TokenBucket
from ivr.session.queue_leg import QueueLeg

log = logging.getLogger("ivr.session")


@dataclass(frozen=True)
class _Said:
    heard: Heard


@dataclass(frozen=True)
class _Keys:
    keys: str


@dataclass(frozen=True)
class _NoInput:
    pass


TurnRequest = _Said | _Keys | _NoInput


class BotLeg:
    def __init__(self, ctx: CallContext, line: LineControl):
        self.ctx = ctx
        self.line = line
        self.conversation = ctx.conversation
        self.settings = ctx.settings
        limits = ctx.settings.limits
        self._key_turns = TokenBucket(limits.dtmf_turns_per_s, limits.dtmf_burst)
        self.keys_dropped = 0
        self.done = False  # handed off or closed: no more turns, no more timers
        self._no_input: asyncio.TimerHandle | None = None
        self._digits = ""  # keypad digits collected for a prompt that expects a number
        self._digit_timer: asyncio.TimerHandle | None = None
        self._hangup_after: Prompt | None = None
        self._held = ""  # keys pressed during a prompt that cannot be interrupted, acted on as it ends
        self._handoff: asyncio.Task | None = None  # storing the context package for the agent
        self._turns: deque[TurnRequest] = deque()
        self._pending = 0  # turns queued or running
        self._runner: asyncio.Future | None = None

    @property
    def busy(self) -> int:
        """Turns in progress: utterances still being recognized, and dialog turns queued or running."""
        return self.line.recognizing + self._pending

    @property
    def no_input_armed(self) -> bool:
        return self._no_input is not None

    async def greet(self) -> None:
        """Answer: greet. Its first part is never barge-able (it carries the AI disclosure); the menu after it is."""
        self._speak(await self.conversation.start(), lock_first=True)

    # ---- Leg -------------------------------------------------------------------------

    def on_speech_started(self) -> bool:
        if self.line.speaking and not self.line.barge_in_allowed:
            return False
        self._cancel_no_input()
        barge = self.settings.barge_in
        if self.line.speaking and barge.enabled and barge.min_words == 0:
            self.line.spawn(self._barge_in(""))
        return True

    async def on_audio(self, pcm16k: bytes) -> None:
        pass

    async def on_partial(self, text: str) -> None:
        barge = self.settings.barge_in
        if (
            self.line.speaking
            and self.line.barge_in_allowed
            and barge.enabled
            and barge.min_words
            and len(text.split()) >= barge.min_words
        ):
            await self._barge_in(text)

    async def on_final(self, heard: Heard) -> None:
        self._submit(_Said(heard))

    async def on_key(self, key: str) -> None:
        """Keys go to the dialog one by one, except on a prompt that expects digits:
        those are collected until #, the inter-digit timeout or `limits.max_dtmf_digits` keys."""
        self._cancel_no_input()
        if self.line.speaking and not self.line.barge_in_allowed:
            if not self.done:
                self._held += key  # the disclosure plays on; the key acts the moment it ends
            return
        if self.line.speaking:
            await self._barge_in(f"[dtmf {key}]")
        last = self.conversation.last_reply
        if last is not None and last.expect == "digits" and key != "*":
            self._digits += key
            if self._digit_timer is not None:
                self._digit_timer.cancel()
                self._digit_timer = None
            if key == "#" or len(self._digits) >= self.settings.limits.max_dtmf_digits:
                self._submit_digits()
            else:
                timeout = self.settings.timeouts.inter_digit_s
                self._digit_timer = asyncio.get_running_loop().call_later(timeout, self._submit_digits)
            return
        self._send_keys(key)

    async def on_prompt_done(self, prompt: Prompt) -> None:
        if self._hangup_after is prompt:
            meta: PromptMeta = prompt.meta
            await self._end_after_reply(meta.reply or BotReply(prompt.text))
        elif self._held and not self.done and (not self.line.speaking or self.line.barge_in_allowed):
            keys, self._held = self._held, ""
            # A task of its own: barging in stops the player, which may be what reports this prompt.
            self.line.spawn(self._act_on_held(keys))
        elif not self.line.speaking:
            self._arm_no_input()

    async def on_close(self, reason: str) -> None:
        self.done = True
        self._cancel_no_input()
        if self._digit_timer is not None:
            self._digit_timer.cancel()

    # ---- barge-in, keys -------------------------------------------------------------

    async def _act_on_held(self, keys: str) -> None:
        """Keys held through the disclosure, now that it is over: they cut the rest (the menu) and count."""
        for key in keys:
            await self.on_key(key)

    async def _barge_in(self, partial: str) -> None:
        if await self.line.barge_in(partial):
            self._hangup_after = None

    def _submit_digits(self) -> None:
        self._digit_timer = None
        keys, self._digits = self._digits, ""
        if keys:
            self._send_keys(keys)

    def _send_keys(self, keys: str) -> None:
        """One dialog turn for keys, within `limits.dtmf_turns_per_s` / `dtmf_burst`.

        Every key outside a digits prompt is a turn of its own; a client
        sending keys as fast as it can would make the dialog answer each one.
        Keys over the limit are dropped (counted, keys_dropped at call.end),
        and the no-input timer runs again so the call never goes silent.
        """
        if not self._key_turns.take():
            if not self.keys_dropped:
                log.warning("call.dtmf_limited", extra={"call_id": self.ctx.call_id})
            self.keys_dropped += 1
            self._arm_no_input()
            return
        self._submit(_Keys(keys))

    # ---- no input ----------------------------------------------------------------------

    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        if self.done or self.line.closed or self.line.speaking or self.busy or self.line.in_speech:
            return
        timeout = self.settings.timeouts.no_input_s
        self._no_input = asyncio.get_running_loop().call_later(timeout, self._fire_no_input)

    def _cancel_no_input(self) -> None:
        if self._no_input is not None:
            self._no_input.cancel()
            self._no_input = None

    def _fire_no_input(self) -> None:
        self._no_input = None
        if self.done or self.line.closed or self.line.in_speech or self.busy:
            return
        self._submit(_NoInput())

    # ---- dialog turns: one at a time, in order, in their own task --------------------------

    def _submit(self, request: TurnRequest) -> None:
        if self.done:
            return
        self._pending += 1
        self._turns.append(request)
        if self._runner is None or self._runner.done():
            self._runner = self.line.spawn(self._run_turns())

    async def _run_turns(self) -> None:
        while self._turns:
            request = self._turns.popleft()
            latency: Latency | None = None
            try:
                if isinstance(request, _Said):
                    heard = request.heard
                    turn = await self.conversation.caller_said(heard.text, heard.started, heard.ended,
                                                               heard.confidence, heard.meta)  # fmt: skip
                    latency = Latency.of(heard.timing, time.monotonic())
                elif isinstance(request, _Keys):
                    turn = await self.conversation.dtmf(request.keys)
                else:
                    turn = await self.conversation.no_input()
            finally:
                self._pending -= 1
            if self.done:
                return
            self._speak(turn, latency=latency)

    def _speak(self, turn: DialogTurn, lock_first: bool = False, latency: Latency | None = None) -> None:
        """Say the reply, part by part; `lock_first`: its first part cannot be interrupted whatever it says."""
        reply = turn.reply
        self.line.set_grammar(reply.expect)
        if reply.handoff:
            # Not one of the call's tasks: a caller hanging up now must not cancel storing the package.
            self._handoff = asyncio.create_task(self.conversation.hand_off(turn))
        parts = reply.spoken_parts
        if not parts:
            if reply.hangup or reply.handoff:
                self.line.spawn(self._end_after_reply(reply))
            else:
                self._arm_no_input()
            return
        prompts = [
            self.line.say(part.text, part.barge_in and not (lock_first and i == 0),
                          PromptMeta(reply=reply, latency=latency if i == 0 else None))
            for i, part in enumerate(parts)
        ]  # fmt: skip
        if reply.handoff and self.settings.handoff_mode(self.ctx.tenant) == "queue":
            # Into the queue now, while the caller hears the handoff sentence: a free agent rings at once.
            self._enter_queue_now(reply.handoff)
        elif reply.hangup or reply.handoff:
            self._hangup_after = prompts[-1]

    def _enter_queue_now(self, handoff: Handoff) -> None:
        self.done = True
        self._held = ""
        self._cancel_no_input()
        self.line.spawn(self._to_queue(handoff))

    async def _end_after_reply(self, reply: BotReply) -> None:
        if not reply.handoff:
            await self.line.hang_up("bot_hangup")
            return
        self.done = True
        self._cancel_no_input()
        handoff = reply.handoff
        if self.settings.handoff_mode(self.ctx.tenant) == "queue":
            await self._to_queue(handoff)
            return
        handoff_id = await self._handoff if self._handoff else None
        # The telephony side has the agents: hand the call back with the handoff id, and the
        # provider continues its own routing (e.g. the next TwiML verb after <Stream>).
        await self.line.hand_back(HandBack(handoff_id, handoff.reason, handoff.queue))

    async def _to_queue(self, handoff: Handoff) -> None:
        """The call becomes a queue leg: the caller waits for one of our agents."""
        handoff_id = await self._handoff if self._handoff else None
        await self.conversation.note(
            "[queue]", {"reason": handoff.reason, "handoff_id": handoff_id, "queue": handoff.queue}
        )
        self.line.set_grammar(None)
        leg = QueueLeg(self.ctx, self.line, handoff_id, handoff.reason, handoff.queue)
        self.line.attach(leg)
        # A task of its own: this may run in the player's or a turn's task, and waiting
        # plays prompts that those tasks must deliver.
        self.line.spawn(leg.enter())
