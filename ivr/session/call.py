"""A voice call: caller audio → endpointing → ASR → dialog → TTS → paced audio out.

The session owns one call's pipeline state. Inbound frames arrive from the
transport in order; audio goes through the resampler and the endpointer on the
event loop (webrtcvad is microseconds per frame), recognized speech is handled
by a single ASR worker task so recognizer calls never overlap, and replies are
queued on the player. Timers: no-input after each prompt, maximum call length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from ivr.audio.asr import AsrResult
from ivr.audio.codecs import ASR_RATE, Framer, StreamResampler, frame_bytes
from ivr.audio.playback import MediaSink, Player, Prompt
from ivr.audio.vad import Endpointer, SpeechAudio, SpeechDiscarded, SpeechEnded, SpeechStarted
from ivr.dialog.payloads import BotReply, DialogTurn
from ivr.runtime import Runtime
from ivr.session.conversation import Conversation
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, InboundFrame, MarkAck
from ivr.session.limits import TokenBucket, cut_text
from ivr.session.prompts import GRAMMARS
from ivr.session.queue_leg import QueueLeg
from ivr.storage import CallRecord

log = logging.getLogger("ivr.session")

_END_OF_TURN = object()
_RESET = object()  # a burst was discarded as noise: forget what the recognizer heard


class CallSession:
    def __init__(self, runtime: Runtime, sink: MediaSink, start: CallStart):
        self.runtime = runtime
        self.sink = sink
        self.start_frame = start
        settings = runtime.settings
        self.tenant_number, self.tenant = settings.tenant_for(start.dialled)
        self.call_id = start.call_id
        record = CallRecord(
            call_id=start.call_id,
            tenant=self.tenant_number,
            company=self.tenant.company,
            language=self.tenant.language,
            channel=start.channel,
            dialled=start.dialled,
            caller=start.caller,
            started_at=time.time(),
            provider_call_id=start.provider_call_id,
        )
        self.conversation = Conversation(
            record, self.tenant, runtime.dialog, runtime.write_behind, settings.timeouts.max_no_input
        )
        self.synthesizer = runtime.synthesizer(settings.voice_for(self.tenant))
        self.recognizer = runtime.recognizer(self.tenant.language)
        self.endpointer = Endpointer(settings.vad, ASR_RATE)
        self.resampler = StreamResampler(start.sample_rate, ASR_RATE)
        self.framer = Framer(frame_bytes(ASR_RATE))
        self.player = Player(sink, self._prompt_finished, runtime.pacing)
        self.closed = False
        self.finished = asyncio.Event()  # set when close() has done everything, the hang-up message included
        # Audio waiting for the recognizer is bounded in bytes (limits.asr_backlog_s); control items
        # (end of turn, reset) always go in: each needs a turn's worth of audio before it, so they are
        # bounded by the audio the transport lets in.
        self._asr_queue: asyncio.Queue[Any] = asyncio.Queue()
        self._asr_backlog = 0  # bytes of audio in _asr_queue
        self._asr_backlog_limit = int(settings.limits.asr_backlog_s * ASR_RATE) * 2
        self._asr_dropped = 0  # bytes of caller audio dropped because the recognizer was that far behind
        self._key_turns = TokenBucket(settings.limits.dtmf_turns_per_s, settings.limits.dtmf_burst)
        self._keys_dropped = 0
        self._asr_task = asyncio.create_task(self._asr_worker())
        self._ignoring = False  # the current utterance started during a prompt that forbids barge-in
        self._turn_started_wall: Optional[float] = None
        self._barged: Optional[dict[str, Any]] = None
        self._hangup_after: Optional[Prompt] = None
        self._handoff: Optional[asyncio.Task] = None  # storing the context package for the agent
        self.queue_leg: Optional[QueueLeg] = None  # after a handoff to our own agent queue
        self._no_input: Optional[asyncio.TimerHandle] = None
        self._busy = 0  # turns in progress (ASR finalization or dialog)
        self._digits = ""  # keypad digits collected for a prompt that expects a number
        self._digit_timer: Optional[asyncio.TimerHandle] = None
        self._tasks: set[asyncio.Task] = set()
        self._max_call = asyncio.get_running_loop().call_later(
            settings.timeouts.max_call_s, lambda: self._spawn(self.close("max_duration", hangup=True))
        )

    # ---- lifecycle -------------------------------------------------------

    async def begin(self) -> None:
        """Answer: greet (never barge-able: it carries the AI disclosure)."""
        runtime = self.runtime
        runtime.active_calls += 1
        runtime.sessions.add(self)
        log.info("call.start", extra={"call_id": self.call_id, "tenant": self.tenant_number, "channel": self.start_frame.channel})
        await self.sink.send_event({"type": "call", "call_id": self.call_id, "company": self.tenant.company})
        turn = await self.conversation.start()
        self._speak(turn, barge_in=False)

    async def handle(self, frame: InboundFrame) -> None:
        if self.closed:
            return
        if isinstance(frame, AudioIn):
            await self._on_audio(frame.pcm)
        elif isinstance(frame, DtmfIn):
            self._spawn(self._on_dtmf(frame.digit))
        elif isinstance(frame, MarkAck):
            await self.player.mark_acknowledged(frame.name)
        elif isinstance(frame, CallStop):
            await self.close(frame.reason)

    async def close(self, reason: str, hangup: bool = False) -> None:
        """Tear the call down once; whatever was being said is stored as cut off."""
        if self.closed:
            return
        self.closed = True
        self._cancel_no_input()
        if self.queue_leg is not None:
            await self.queue_leg.close()
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        self._max_call.cancel()
        for prompt, heard in await self.player.stop():
            await self._store_prompt(prompt, heard=heard)
        await self.player.close()
        self._asr_task.cancel()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        try:
            if hangup:
                # Before the slower bookkeeping: the transport ends the stream as soon as it sees
                # the session closed, and the far end must still get the reason.
                await self.sink.hangup(reason)
            await self.conversation.end(reason)
        finally:
            self.runtime.active_calls -= 1
            self.runtime.sessions.discard(self)
            self.finished.set()
            extra: dict[str, Any] = {"call_id": self.call_id, "reason": reason}
            if self._asr_dropped:
                extra["asr_dropped_ms"] = self._asr_dropped * 1000 // (2 * ASR_RATE)
            if self._keys_dropped:
                extra["keys_dropped"] = self._keys_dropped
            log.info("call.end", extra=extra)

    async def shut_down(self) -> None:
        """The server stops: a caller waiting for an agent gets a callback or ticket; every line is hung up."""
        if self.queue_leg is not None:
            await self.queue_leg.shut_down()
        await self.close("server_shutdown", hangup=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call.task_failed", exc_info=task.exception(), extra={"call_id": self.call_id})
            if not self.closed:
                asyncio.create_task(self.close("internal_error", hangup=True))

    # ---- inbound audio -----------------------------------------------------

    async def _on_audio(self, pcm: bytes) -> None:
        pcm16k = self.resampler.process(pcm)
        if self.queue_leg is not None:
            await self.queue_leg.caller_audio(pcm16k)  # the agent hears the caller (16 kHz, as ASR does)
        for frame in self.framer.push(pcm16k):
            for event in self.endpointer.process(frame):
                if isinstance(event, SpeechStarted):
                    self._speech_started(event)
                elif isinstance(event, SpeechAudio):
                    if not self._ignoring:
                        self._queue_audio(event.audio)
                elif isinstance(event, SpeechEnded):
                    self._speech_ended(event)
                elif isinstance(event, SpeechDiscarded):
                    if not self._ignoring:
                        self._asr_queue.put_nowait(_RESET)
                    self._ignoring = False

    def _speech_started(self, event: SpeechStarted) -> None:
        if self.queue_leg is not None:
            # Waiting or talking to an agent: transcribe, never cut hold music or announcements.
            self._turn_started_wall = time.time() - len(event.audio) / 2 / ASR_RATE
            self._queue_audio(event.audio)
            return
        if self.player.speaking and not self.player.barge_in_allowed:
            self._ignoring = True
            return
        self._cancel_no_input()
        self._turn_started_wall = time.time() - len(event.audio) / 2 / ASR_RATE
        self._queue_audio(event.audio)
        if self.player.speaking and self.runtime.settings.barge_in.enabled and self.runtime.settings.barge_in.min_words == 0:
            self._spawn(self._barge_in(""))

    def _queue_audio(self, audio: bytes) -> None:
        """Caller audio for the recognizer, unless it is already `limits.asr_backlog_s` behind.

        The recognizer keeps up with real time by far, and the transports let
        audio in at about real time; a backlog this long means the machine is
        overloaded, and more audio would only grow memory and delay every
        answer. What is dropped is counted and logged (call.asr_backlog, and
        asr_dropped_ms at call.end); the turn still ends and is answered.
        """
        if self._asr_backlog + len(audio) > self._asr_backlog_limit:
            if not self._asr_dropped:
                backlog_ms = self._asr_backlog * 1000 // (2 * ASR_RATE)
                log.warning("call.asr_backlog", extra={"call_id": self.call_id, "backlog_ms": backlog_ms})
            self._asr_dropped += len(audio)
            return
        self._asr_backlog += len(audio)
        self._asr_queue.put_nowait(audio)

    def _speech_ended(self, event: SpeechEnded) -> None:
        if self._ignoring:
            self._ignoring = False
            return
        hangover_s = self.runtime.settings.vad.hangover_ms / 1000 if event.reason == "silence" else 0.0
        self._busy += 1
        self._asr_queue.put_nowait((_END_OF_TURN, time.monotonic(), hangover_s, event))

    async def _asr_worker(self) -> None:
        """Feeds Vosk in arrival order; batches whatever queued up while it was busy."""
        words_needed = self.runtime.settings.barge_in.min_words
        pending: Any = None
        while True:
            item = pending if pending is not None else await self._asr_queue.get()
            pending = None
            if item is _RESET:
                self.recognizer.reset()
                continue
            if isinstance(item, tuple) and item[0] is _END_OF_TURN:
                await self._end_of_turn(*item[1:])
                continue
            batch = [item]
            while not self._asr_queue.empty():
                queued = self._asr_queue.get_nowait()
                if not isinstance(queued, bytes):
                    pending = queued  # a control item: handle it after this batch
                    break
                batch.append(queued)
            audio = b"".join(batch)
            self._asr_backlog -= len(audio)
            partial = await self.recognizer.accept(audio)
            if partial:
                await self.sink.send_event({"type": "transcript", "speaker": "caller", "text": partial, "final": False})
                if self.queue_leg is not None:
                    await self.queue_leg.caller_partial(partial)
                elif (
                    self.player.speaking
                    and self.player.barge_in_allowed
                    and self.runtime.settings.barge_in.enabled
                    and words_needed
                    and len(partial.split()) >= words_needed
                ):
                    await self._barge_in(partial)

    async def _barge_in(self, partial: str) -> None:
        cut = await self.player.stop()
        for prompt, heard in cut:
            await self._store_prompt(prompt, heard=heard)
        if cut:
            heard = " ".join(h for _, h in cut if h)
            self._barged = {"heard": heard, "prompt": " ".join(p.text for p, _ in cut)}
            self._hangup_after = None
            await self.sink.send_event({"type": "barge_in", "heard": heard})
            log.info("call.barge_in", extra={"call_id": self.call_id, "partial_words": len(partial.split())})

    async def _end_of_turn(self, endpointed_at: float, hangover_s: float, event: SpeechEnded) -> None:
        try:
            result: AsrResult = await self.recognizer.finish()
            asr_done = time.monotonic()
            meta: dict[str, Any] = {"speech_ms": event.speech_ms, "end_reason": event.reason}
            text = cut_text(result.text, self.runtime.settings.limits.max_text_chars)
            if text != result.text:
                meta["cut_from_chars"] = len(result.text)  # see limits.max_text_chars
                log.warning("call.asr_text_cut", extra={"call_id": self.call_id, "chars": len(result.text)})
            await self.sink.send_event({"type": "transcript", "speaker": "caller", "text": text, "final": True})
            if result.words:
                meta["words"] = [[w.word, w.confidence] for w in result.words[: len(text.split())]]
            if self._barged:
                meta["barge_in"], self._barged = self._barged, None
            started = self._turn_started_wall or time.time()
            if self.queue_leg is not None:
                # The dialog is over: the transcript goes on, for the record and the agent's screen.
                await self.conversation.heard(text, started, time.time(), result.confidence, meta)
                await self.queue_leg.caller_said(text, result.confidence)
                return
            turn = await self.conversation.caller_said(text, started, time.time(), result.confidence, meta)
            dialog_done = time.monotonic()
            latency = {
                "endpoint_ms": round(hangover_s * 1000),
                "asr_ms": round((asr_done - endpointed_at) * 1000),
                "dialog_ms": round((dialog_done - asr_done) * 1000),
                "_speech_end": endpointed_at - hangover_s,
            }
            self._speak(turn, latency=latency)
        finally:
            self._busy -= 1

    # ---- DTMF, no-input ---------------------------------------------------

    async def _on_dtmf(self, key: str) -> None:
        """Keys go to the dialog one by one, except on a prompt that expects digits:
        those are collected until #, the inter-digit timeout or `limits.max_dtmf_digits` keys."""
        self._cancel_no_input()
        if self.queue_leg is not None:
            await self.queue_leg.caller_dtmf(key)
            return
        if self.player.speaking and self.player.barge_in_allowed:
            await self._barge_in(f"[dtmf {key}]")
        last = self.conversation.last_reply
        if last is not None and last.expect == "digits" and key != "*":
            self._digits += key
            if self._digit_timer is not None:
                self._digit_timer.cancel()
                self._digit_timer = None
            if key == "#" or len(self._digits) >= self.runtime.settings.limits.max_dtmf_digits:
                await self._submit_keys()
            else:
                timeout = self.runtime.settings.timeouts.inter_digit_s
                self._digit_timer = asyncio.get_running_loop().call_later(timeout, lambda: self._spawn(self._submit_keys()))
            return
        await self._send_keys(key)

    async def _submit_keys(self) -> None:
        self._digit_timer = None
        keys, self._digits = self._digits, ""
        if keys:
            await self._send_keys(keys)

    async def _send_keys(self, keys: str) -> None:
        """One dialog turn for keys, within `limits.dtmf_turns_per_s` / `dtmf_burst`.

        Every key outside a digits prompt is a turn of its own; a client
        sending keys as fast as it can would make the dialog answer each one.
        Keys over the limit are dropped (counted, keys_dropped at call.end),
        and the no-input timer runs again so the call never goes silent.
        """
        if not self._key_turns.take():
            if not self._keys_dropped:
                log.warning("call.dtmf_limited", extra={"call_id": self.call_id})
            self._keys_dropped += 1
            self._arm_no_input()
            return
        self._busy += 1
        try:
            turn = await self.conversation.dtmf(keys)
        finally:
            self._busy -= 1
        self._speak(turn)

    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        if self.closed or self.queue_leg is not None or self.player.speaking or self._busy or self.endpointer.in_speech:
            return
        timeout = self.runtime.settings.timeouts.no_input_s
        self._no_input = asyncio.get_running_loop().call_later(timeout, lambda: self._spawn(self._fire_no_input()))

    def _cancel_no_input(self) -> None:
        if self._no_input is not None:
            self._no_input.cancel()
            self._no_input = None

    async def _fire_no_input(self) -> None:
        self._no_input = None
        if self.closed or self.endpointer.in_speech or self._busy:
            return
        self._busy += 1
        try:
            turn = await self.conversation.no_input()
        finally:
            self._busy -= 1
        self._speak(turn)

    # ---- outbound ----------------------------------------------------------

    def _speak(self, turn: DialogTurn, barge_in: Optional[bool] = None, latency: Optional[dict[str, Any]] = None) -> None:
        reply = turn.reply
        self.recognizer.set_grammar(GRAMMARS.get(reply.expect or "", {}).get(self.tenant.language))
        if reply.handoff:
            # Not one of the call's tasks: a caller hanging up now must not cancel storing the package.
            self._handoff = asyncio.create_task(self.conversation.hand_off(turn))
        if not reply.text:
            if reply.hangup or reply.handoff:
                self._spawn(self._end_after_reply(reply))
            else:
                self._arm_no_input()
            return
        allowed = reply.barge_in if barge_in is None else barge_in and reply.barge_in
        audio = self.synthesizer.stream(reply.text, self.sink.sample_rate)
        prompt = self.player.play(reply.text, audio, allowed, {"reply": reply, "latency": latency})
        self._spawn(self.sink.send_event({"type": "transcript", "speaker": "bot", "text": reply.text, "final": True}))
        if reply.hangup or reply.handoff:
            self._hangup_after = prompt

    async def _prompt_finished(self, prompt: Prompt) -> None:
        await self._store_prompt(prompt)
        if self._ignoring and self.endpointer.in_speech and not self.player.speaking:
            # The caller started during a prompt that could not be interrupted and is
            # still talking now that it is over: from here on it is their turn.
            self._ignoring = False
            self._cancel_no_input()
            self._turn_started_wall = time.time()
        if self._hangup_after is prompt:
            await self._end_after_reply(prompt.meta["reply"])
        elif not self.player.speaking:
            self._arm_no_input()

    async def _end_after_reply(self, reply: BotReply) -> None:
        if reply.handoff:
            handoff_id = await self._handoff if self._handoff else None
            if self.runtime.settings.handoff_mode(self.tenant) == "queue":
                await self.conversation.note("[queue]", {"reason": reply.handoff.reason, "handoff_id": handoff_id, "queue": reply.handoff.queue})
                self.recognizer.set_grammar(None)
                self.queue_leg = QueueLeg(self, handoff_id, reply.handoff.reason, reply.handoff.queue)
                # A task of its own: this runs in the player's or the reader's task, and waiting
                # plays prompts that those tasks must deliver.
                self._spawn(self.queue_leg.enter())
                return
            # The telephony side has the agents: hand the call back with the handoff id, and the
            # provider continues its own routing (e.g. the next TwiML verb after <Stream>).
            await self.sink.send_event({"type": "handoff", "handoff_id": handoff_id, "reason": reply.handoff.reason,
                                         "queue": reply.handoff.queue})
            await self.conversation.note("[handoff]", {"reason": reply.handoff.reason, "handoff_id": handoff_id})
            await self.close(f"handoff:{reply.handoff.reason}", hangup=True)
        else:
            await self.close("bot_hangup", hangup=True)

    async def _store_prompt(self, prompt: Prompt, heard: Optional[str] = None) -> None:
        if prompt.meta.get("music"):
            return  # hold music is not a line of the transcript
        stored: dict[str, Any] = {"barge_in_allowed": prompt.barge_in}
        latency = prompt.meta.get("latency")
        if latency and prompt.first_frame_at is not None:
            latency = dict(latency)
            speech_end = latency.pop("_speech_end")
            latency["tts_first_audio_ms"] = round(
                (prompt.first_frame_at - speech_end) * 1000
                - latency["endpoint_ms"]
                - latency["asr_ms"]
                - latency["dialog_ms"]
            )
            latency["total_ms"] = round((prompt.first_frame_at - speech_end) * 1000)
            stored["latency"] = latency
        if heard is not None:
            stored["interrupted"] = True
            stored["heard"] = heard
        start = prompt.started_wall or time.time()
        end = start + prompt.frames_sent * 0.02
        await self.conversation.bot_said(prompt.meta.get("reply", BotReply(prompt.text)), start, end, stored)
