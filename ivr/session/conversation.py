"""A conversation with the dialog engine, independent of audio.

The voice call session and the text endpoint both drive one of these, so a
text test exercises exactly the dialog logic a caller meets: DTMF mapping,
no-input escalation, repeat, and the fallback when Rasa is unreachable. Every
line is written to storage as it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Optional

from ivr.dialog.payloads import BotReply, DialogTurn, Handoff
from ivr.dialog.rasa_client import RasaClient
from ivr.errors import DialogUnavailable
from ivr.session.prompts import DTMF_AGENT, DTMF_REPEAT, TECHNICAL_PROBLEM
from ivr.settings import Tenant
from ivr.storage import CallRecord, Storage, Utterance

log = logging.getLogger("ivr.session")


class Conversation:
    def __init__(
        self,
        call: CallRecord,
        tenant: Tenant,
        dialog: RasaClient,
        storage: Storage,
        max_no_input: int,
    ):
        self.call = call
        self.tenant = tenant
        self.dialog = dialog
        self.storage = storage
        self.max_no_input = max_no_input
        self.no_input_count = 0
        self.last_reply: Optional[BotReply] = None
        self.ended = False
        self._lock = asyncio.Lock()  # one dialog turn at a time per call

    @property
    def language(self) -> str:
        return self.tenant.language

    async def start(self) -> DialogTurn:
        await self.storage.start_call(self.call)
        slots = {"language": self.tenant.language, "company": self.tenant.company, "caller_number": self.call.caller}
        return await self._turn("/start_call", slots=slots)

    async def caller_said(
        self,
        text: str,
        start: float,
        end: float,
        asr_confidence: Optional[float] = None,
        meta: Optional[dict[str, Any]] = None,
    ) -> DialogTurn:
        """A caller utterance (recognized speech or typed text)."""
        self.no_input_count = 0
        meta = dict(meta or {})
        if not text.strip():
            # Noise or speech the recognizer could not turn into words: a no-match.
            await self._store("caller", "", start, end, asr_confidence, meta=meta)
            return await self._turn("/nlu_fallback", metadata=meta)
        turn = await self._turn(text, metadata=meta)
        await self._store("caller", text, start, end, asr_confidence, turn.intent, turn.confidence, meta)
        return turn

    async def dtmf(self, digits: str) -> DialogTurn:
        """Keypad input: 0 is always a person, * repeats; digits go to the dialog when it asked for them.

        Any other key on a prompt that expects no digits is a no-match, answered
        like speech that was not understood.
        """
        self.no_input_count = 0
        now = time.time()
        await self._store("caller", f"[DTMF {digits}]", now, now, meta={"dtmf": digits})
        if digits == DTMF_AGENT:
            return await self._turn("/request_human", metadata={"dtmf": digits})
        if digits == DTMF_REPEAT and self.last_reply is not None:
            return DialogTurn(reply=self.last_reply, intent="repeat")
        if self.last_reply is not None and self.last_reply.expect == "digits":
            return await self._turn(digits, metadata={"dtmf": digits})
        return await self._turn("/nlu_fallback", metadata={"dtmf": digits})

    async def no_input(self) -> DialogTurn:
        """The caller said nothing after a prompt: reprompt, then hand to a person."""
        self.no_input_count += 1
        now = time.time()
        await self._store("system", "[no input]", now, now, meta={"count": self.no_input_count})
        if self.no_input_count <= self.max_no_input:
            return await self._turn("/no_input")
        turn = await self._turn("/request_human", metadata={"reason": "no_input"})
        return replace(turn, reply=replace(turn.reply, handoff=Handoff("no_input")))

    async def bot_said(self, reply: BotReply, start: float, end: float, meta: Optional[dict[str, Any]] = None) -> None:
        await self._store("bot", reply.text, start, end, meta=meta or {})

    async def note(self, text: str, meta: Optional[dict[str, Any]] = None) -> None:
        now = time.time()
        await self._store("system", text, now, now, meta=meta or {})

    async def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        await self.storage.end_call(self.call.call_id, time.time(), reason)
        await self.dialog.end(self.call.call_id)

    async def _turn(
        self, text: str, slots: Optional[dict[str, Any]] = None, metadata: Optional[dict[str, Any]] = None
    ) -> DialogTurn:
        async with self._lock:
            try:
                turn = await self.dialog.turn(self.call.call_id, text, slots=slots, metadata=metadata)
            except DialogUnavailable as exc:
                log.error("dialog.unavailable", extra={"call_id": self.call.call_id, "error": str(exc)})
                await self.note("[dialog unavailable]", {"error": str(exc)})
                reply = BotReply(text=TECHNICAL_PROBLEM[self.language], hangup=True, barge_in=False)
                return DialogTurn(reply=reply, intent=None)
        if turn.reply.repeat_last and self.last_reply is not None:
            turn = replace(turn, reply=self.last_reply)
        elif turn.reply.text:
            self.last_reply = turn.reply
        return turn

    async def _store(
        self,
        speaker: str,
        text: str,
        start: float,
        end: float,
        asr_confidence: Optional[float] = None,
        intent: Optional[str] = None,
        intent_confidence: Optional[float] = None,
        meta: Optional[dict[str, Any]] = None,
    ) -> None:
        utterance = Utterance(
            self.call.call_id, speaker, text, start, end, asr_confidence, intent, intent_confidence, meta or {}
        )
        await self.storage.add_utterance(utterance)
