"""A conversation with the dialog engine, independent of audio.

The voice call session and the text endpoint both drive one of these, so a
text test exercises exactly the dialog logic a caller meets: keypad input,
no-input escalation, repeat, spoken numbers turned into digits, the handoff
context package, and the fallback when Rasa is unreachable. Every line of the
transcript and every event of the call-event log is written to storage as it
happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import asdict, replace
from typing import Any

from ivr.dialog import numbers
from ivr.dialog.payloads import BotReply, DialogTurn, Handoff
from ivr.dialog.rasa_client import RasaClient
from ivr.errors import DialogUnavailable
from ivr.session.prompts import DTMF_AGENT, DTMF_REPEAT, SAY_AGAIN, STORAGE_UNAVAILABLE, TECHNICAL_PROBLEM
from ivr.settings import Tenant
from ivr.storage import CallEvent, CallRecord, EventName, Utterance
from ivr.storage import Handoff as HandoffRecord
from ivr.storage.write_behind import WriteBehind

# Slots that are bookkeeping of the dialog, not something an agent needs to see.
INTERNAL_SLOTS = frozenset(
    {"requested_slot", "no_match_count", "session_started_metadata", "language", "company", "tenant"}
)

log = logging.getLogger("ivr.session")


class Conversation:
    def __init__(
        self,
        call: CallRecord,
        tenant: Tenant,
        dialog: RasaClient,
        storage: WriteBehind,
        max_no_input: int,
    ):
        """`storage`: the call path's writes never wait for the database (ivr/storage/write_behind.py)."""
        self.call = call
        self.tenant = tenant
        self.dialog = dialog
        self.storage = storage
        self.max_no_input = max_no_input
        self.no_input_count = 0
        self.last_reply: BotReply | None = None
        self.ended = False
        self.last_slots: dict[str, Any] = {}
        self.last_form: str | None = None
        self.last_requested_slot: str | None = None
        self.silent_turns = 0  # turns in a row the dialog answered with nothing to say
        self.lines: list[Utterance] = []  # the transcript as written, for the handoff package without a read
        self._lock = asyncio.Lock()  # one dialog turn at a time per call

    @property
    def language(self) -> str:
        return self.tenant.language

    async def start(self) -> DialogTurn:
        """The greeting; or, when the database has been gone so long that nothing more can be kept, an apology.

        A call that cannot be recorded is not taken: its transcript, events and
        handoff package would be lost. The caller hears why and is hung up on.
        """
        if self.storage.saturated:
            log.error("call.refused_storage_unavailable", extra={"call_id": self.call.call_id})
            self.ended = True
            return DialogTurn(reply=BotReply(text=STORAGE_UNAVAILABLE[self.language], hangup=True, barge_in=False))
        await self.storage.start_call(self.call)
        await self.event(EventName.CALL_START, channel=self.call.channel)
        return await self._turn("/start_call")

    @property
    def call_slots(self) -> dict[str, Any]:
        """Who is calling which company: sent with every turn, not only the first.

        Rasa keeps trackers in memory; after it restarts, a conversation that had
        these slots only from its first turn went on as the default tenant (its
        order look-ups and handoffs in another company's name). The channel sets
        only the values its tracker does not already hold.
        """
        caller = self.call.caller or ""
        return {
            "tenant": self.call.tenant,
            "language": self.tenant.language,
            "company": self.tenant.company,
            "caller_number": self.call.caller,
            "caller_number_spoken": numbers.spoken_digits(caller) if any(ch.isdigit() for ch in caller) else None,
        }

    async def caller_said(
        self,
        text: str,
        start: float,
        end: float,
        asr_confidence: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> DialogTurn:
        """A caller utterance (recognized speech or typed text)."""
        self.no_input_count = 0
        meta = dict(meta or {})
        if not text.strip():
            # Noise or speech the recognizer could not turn into words: a no-match.
            await self._store("caller", "", start, end, asr_confidence, meta=meta)
            return await self._turn("/nlu_fallback", metadata=meta)
        # Rasa sees spoken numbers as digits ("drei Stück" -> "3 Stück"); the transcript, and
        # free-text answers such as a ticket's description, keep the caller's words.
        normalized = numbers.normalize(text, self.language)
        metadata = {**meta, "said": text} if normalized != text else dict(meta)
        if asr_confidence is not None:
            metadata["asr_confidence"] = asr_confidence  # the dialog reads unsure numbers back
        turn = await self._turn(normalized, metadata=metadata)
        await self._store("caller", text, start, end, asr_confidence, turn.intent, turn.confidence, meta)
        await self.event(EventName.INTENT, intent=turn.intent, confidence=turn.confidence)
        return turn

    async def heard(
        self, text: str, start: float, end: float, asr_confidence: float | None, meta: dict[str, Any] | None = None
    ) -> None:
        """A caller line after the dialog handed over (in the queue, with an agent): stored, not sent to Rasa."""
        await self._store("caller", text, start, end, asr_confidence, meta=meta)

    async def dtmf(self, keys: str) -> DialogTurn:
        """Keypad input, complete (a single key, or digits finished with # or the inter-digit timeout).

        `*` always repeats. On a prompt that expects digits every key, 0 too, is
        part of the number. Elsewhere 0 is a person, a menu maps its keys to
        dialog messages, a yes/no prompt reads 1 as yes and 2 as no, and any
        other key is a no-match, answered like speech that was not understood.
        """
        self.no_input_count = 0
        now = time.time()
        turn = await self._keys_turn(keys)
        # Stored with what the keys meant, so the intent history an agent gets shows them too.
        await self._store("caller", f"[DTMF {keys}]", now, now, None, turn.intent, turn.confidence, {"dtmf": keys})
        return turn

    async def _keys_turn(self, keys: str) -> DialogTurn:
        expected = self.last_reply.expect if self.last_reply else None
        if keys == DTMF_REPEAT and self.last_reply is not None:
            return DialogTurn(reply=self.last_reply, intent="repeat")
        if expected == "digits" and keys.rstrip("#"):
            return await self._turn(keys.rstrip("#"), metadata={"dtmf": keys})
        if keys == DTMF_AGENT:
            return await self._turn("/request_human", metadata={"dtmf": keys})
        menu = self.last_reply.dtmf if self.last_reply else {}
        if keys in menu:
            return await self._turn(menu[keys], metadata={"dtmf": keys})
        if expected in ("yes_no", "menu") and keys.isdigit():
            return await self._turn(keys, metadata={"dtmf": keys})
        return await self._turn("/nlu_fallback", metadata={"dtmf": keys})

    async def no_input(self) -> DialogTurn:
        """The caller said nothing after a prompt: reprompt, then help, then a person."""
        self.no_input_count += 1
        now = time.time()
        await self._store("system", "[no input]", now, now, meta={"count": self.no_input_count})
        await self.event(EventName.NO_INPUT, count=self.no_input_count)
        if self.no_input_count <= self.max_no_input:
            return await self._turn("/no_input", metadata={"count": self.no_input_count})
        turn = await self._turn("/request_human", metadata={"reason": "no_input"})
        if turn.reply.handoff is None and not turn.reply.hangup and turn.active_loop != "callback_form":
            turn = replace(turn, reply=replace(turn.reply, handoff=Handoff("no_input")))
        return turn

    async def hand_off(self, turn: DialogTurn) -> str:
        """Store the context package an agent needs (reason, intents, slots, form, transcript); returns its id."""
        assert turn.reply.handoff is not None
        transcript = self.lines
        package = {
            "call_id": self.call.call_id,
            "tenant": self.call.tenant,
            "company": self.tenant.company,
            "language": self.language,
            "caller": self.call.caller,
            "dialled": self.call.dialled,
            "reason": turn.reply.handoff.reason,
            "queue": turn.reply.handoff.queue,
            "intents": [
                {"intent": u.intent, "confidence": u.intent_confidence, "at": u.start}
                for u in transcript
                if u.speaker == "caller" and u.intent
            ],
            "slots": {k: v for k, v in self.last_slots.items() if k not in INTERNAL_SLOTS and v is not None},
            "form": {"name": self.last_form, "requested_slot": self.last_requested_slot},
            "transcript": [asdict(u) for u in transcript],
        }
        handoff_id = uuid.uuid4().hex
        await self.storage.save_handoff(
            HandoffRecord(
                handoff_id, self.call.call_id, self.call.tenant, turn.reply.handoff.reason, time.time(), package
            )
        )
        await self.event(EventName.HANDOFF, handoff_id=handoff_id, reason=package["reason"], queue=package["queue"])
        return handoff_id

    async def bot_said(self, reply: BotReply, start: float, end: float, meta: dict[str, Any] | None = None) -> None:
        await self._store("bot", reply.text, start, end, meta=meta or {})

    async def note(self, text: str, meta: dict[str, Any] | None = None) -> None:
        now = time.time()
        await self._store("system", text, now, now, meta=meta or {})

    async def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        await self.event(EventName.HANGUP, reason=reason)
        await self.storage.end_call(self.call.call_id, time.time(), reason)
        await self.dialog.end(self.call.call_id)

    async def _turn(self, text: str, metadata: dict[str, Any] | None = None) -> DialogTurn:
        async with self._lock:
            try:
                turn = await self.dialog.turn(self.call.call_id, text, slots=self.call_slots, metadata=metadata,
                                              tenant=self.call.tenant)  # fmt: skip
            except DialogUnavailable as exc:
                log.error("dialog.unavailable", extra={"call_id": self.call.call_id, "error": str(exc)})
                await self.note("[dialog unavailable]", {"error": str(exc)})
                # Never a dead end: a person (or, with nobody there, a callback request) takes over.
                handoff = Handoff("dialog_unavailable", self.tenant.queue_for("default"))
                reply = BotReply(text=TECHNICAL_PROBLEM[self.language], handoff=handoff, barge_in=False)
                return DialogTurn(reply=reply, intent=None)
            if turn.reply.is_silent:
                return await self._said_nothing(turn)
            self.silent_turns = 0
        # What an agent gets if the call is handed over: the dialog state before the handoff reset it.
        if turn.active_loop or turn.requested_slot:
            self.last_form, self.last_requested_slot = turn.active_loop, turn.requested_slot
        self.last_slots = {
            **self.last_slots,
            **turn.collected,
            **{k: v for k, v in turn.slots.items() if v is not None},
        }
        if turn.reply.repeat_last and self.last_reply is not None:
            turn = replace(turn, reply=self.last_reply)
        elif turn.reply.text:
            self.last_reply = turn.reply
        return turn

    async def _said_nothing(self, turn: DialogTurn) -> DialogTurn:
        """The dialog had nothing to say (an action failed, e.g. the action server died): the IVR speaks.

        First an apology and a request to say it again; the second time in a row
        a person, as when Rasa does not answer at all. What Rasa understood is
        kept for the transcript.
        """
        self.silent_turns += 1
        log.error("dialog.no_reply", extra={"call_id": self.call.call_id, "count": self.silent_turns})
        await self.event(EventName.NO_REPLY, count=self.silent_turns, intent=turn.intent)
        if self.silent_turns == 1:
            return replace(turn, reply=BotReply(text=SAY_AGAIN[self.language]))
        handoff = Handoff("dialog_failed", self.tenant.queue_for("default"))
        return replace(turn, reply=BotReply(text=TECHNICAL_PROBLEM[self.language], handoff=handoff, barge_in=False))

    async def event(self, name: EventName, **data: Any) -> None:
        """One row of the call-event log (KPIs are computed from these later)."""
        await self.storage.log_event(CallEvent(self.call.call_id, self.call.tenant, time.time(), name, data))

    async def _store(
        self,
        speaker: str,
        text: str,
        start: float,
        end: float,
        asr_confidence: float | None = None,
        intent: str | None = None,
        intent_confidence: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        utterance = Utterance(
            self.call.call_id, speaker, text, start, end, asr_confidence, intent, intent_confidence, meta or {}
        )
        self.lines.append(utterance)
        await self.storage.add_utterance(utterance)
