"""The line: one call's audio both ways, reporting to whichever leg the call is in.

Inbound frames arrive from the transport in order; audio goes through the
resampler and the endpointer on the event loop (webrtcvad is microseconds per
frame), recognized speech is handled by a single ASR worker task so
recognizer calls never overlap, and what it recognizes goes to the leg as
typed calls (`on_speech_started`, `on_partial`, `on_final` with its timing).
Outbound, the line synthesizes and queues prompts on the paced player, plays
hold music, forwards live audio (an agent), stops and barges in, and stores
every prompt in the transcript as it ends, with what the caller heard of it.
What the call does with all this is the leg's (ivr/session/leg.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ivr.audio.asr import Recognizer
from ivr.audio.codecs import ASR_RATE, Framer, StreamResampler, frame_bytes
from ivr.audio.playback import PacingStats, Player, Prompt
from ivr.audio.tts import SpeechChunk, Synthesizer
from ivr.audio.vad import Endpointer, SpeechAudio, SpeechDiscarded, SpeechEnded, SpeechStarted
from ivr.dialog.payloads import BotReply
from ivr.session.conversation import Conversation
from ivr.session.events import BargeIn, HandBack, MediaSink, OutboundEvent, Transcript
from ivr.session.leg import Heard, Leg, PromptMeta, Timing
from ivr.session.limits import cut_text
from ivr.session.prompts import GRAMMARS
from ivr.settings import Settings

log = logging.getLogger("ivr.session")

Closer = Callable[[str, bool], Awaitable[None]]  # (reason, hangup): ends the whole call


@dataclass(frozen=True)
class AsrAudio:
    """Caller audio for the recognizer (16 kHz PCM16)."""

    pcm: bytes


@dataclass(frozen=True)
class AsrReset:
    """A burst was discarded as noise: forget what the recognizer heard."""


@dataclass(frozen=True)
class AsrEnd:
    """The endpointer ended an utterance: ask for the final result."""

    endpointed_at: float  # monotonic
    hangover_s: float  # the silence waited after the end of speech (SpeechEnded.silence_ms)
    ended: SpeechEnded


AsrItem = AsrAudio | AsrReset | AsrEnd


class Line:
    def __init__(
        self,
        call_id: str,
        sink: MediaSink,
        in_rate: int,
        recognizer: Recognizer,
        synthesizer: Synthesizer,
        settings: Settings,
        conversation: Conversation,
        language: str,
        closer: Closer,
        pacing: PacingStats | None = None,
    ):
        self.call_id = call_id
        self.sink = sink
        self.sample_rate = sink.sample_rate
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.settings = settings
        self.conversation = conversation
        self.language = language
        self._closer = closer
        self.leg: Leg | None = None
        self.closed = False
        self.endpointer = Endpointer(settings.vad, ASR_RATE)
        self.resampler = StreamResampler(in_rate, ASR_RATE)
        self.framer = Framer(frame_bytes(ASR_RATE))
        self.player = Player(sink, self._prompt_finished, pacing)
        self._to_caller: tuple[StreamResampler, Framer] | None = None  # live audio (an agent) to the wire
        # Audio waiting for the recognizer is bounded in bytes (limits.asr_backlog_s); control items
        # (end of turn, reset) always go in: each needs a turn's worth of audio before it, so they are
        # bounded by the audio the transport lets in.
        self._asr_queue: asyncio.Queue[AsrItem] = asyncio.Queue()
        self._asr_backlog = 0  # bytes of audio in _asr_queue
        self._asr_backlog_limit = int(settings.limits.asr_backlog_s * ASR_RATE) * 2
        self.asr_dropped = 0  # bytes of caller audio dropped because the recognizer was that far behind
        self.recognizing = 0  # utterances ended and waiting for their final result
        self._ignoring = False  # the current utterance started during a prompt that forbids barge-in
        self._turn_started_wall: float | None = None
        self._barged: dict[str, Any] | None = None
        self.tasks: set[asyncio.Task] = set()
        self._asr_task = asyncio.create_task(self._asr_worker())

    def attach(self, leg: Leg) -> None:
        self.leg = leg

    @property
    def _leg(self) -> Leg:
        assert self.leg is not None, "a line reports to a leg"
        return self.leg

    # ---- state for the legs ------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self.player.speaking

    @property
    def asr_backlog_s(self) -> float:
        """Seconds of caller audio waiting for the recognizer (what admission control sums over calls)."""
        return self._asr_backlog / (2 * ASR_RATE)

    @property
    def barge_in_allowed(self) -> bool:
        return self.player.barge_in_allowed

    @property
    def in_speech(self) -> bool:
        return self.endpointer.in_speech

    # ---- tasks -----------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call.task_failed", exc_info=task.exception(), extra={"call_id": self.call_id})
            if not self.closed:
                self.spawn(self._closer("internal_error", True))

    # ---- from the caller ---------------------------------------------------------

    async def audio(self, pcm: bytes) -> None:
        pcm16k = self.resampler.process(pcm)
        await self._leg.on_audio(pcm16k)
        for frame in self.framer.push(pcm16k):
            for event in self.endpointer.process(frame):
                if isinstance(event, SpeechStarted):
                    if self._leg.on_speech_started():
                        self._turn_started_wall = time.time() - len(event.audio) / 2 / ASR_RATE
                        self._queue_audio(event.audio)
                    else:
                        self._ignoring = True
                elif isinstance(event, SpeechAudio):
                    if not self._ignoring:
                        self._queue_audio(event.audio)
                elif isinstance(event, SpeechEnded):
                    self._speech_ended(event)
                elif isinstance(event, SpeechDiscarded):
                    if not self._ignoring:
                        self._asr_queue.put_nowait(AsrReset())
                    self._ignoring = False

    def key(self, digit: str) -> None:
        self.spawn(self._leg.on_key(digit))

    async def mark(self, name: str) -> None:
        await self.player.mark_acknowledged(name)

    def _queue_audio(self, audio: bytes) -> None:
        """Caller audio for the recognizer, unless it is already `limits.asr_backlog_s` behind.

        The recognizer keeps up with real time by far, and the transports let
        audio in at about real time; a backlog this long means the machine is
        overloaded, and more audio would only grow memory and delay every
        answer. What is dropped is counted and logged (call.asr_backlog, and
        asr_dropped_ms at call.end); the turn still ends and is answered.
        """
        if self._asr_backlog + len(audio) > self._asr_backlog_limit:
            if not self.asr_dropped:
                backlog_ms = self._asr_backlog * 1000 // (2 * ASR_RATE)
                log.warning("call.asr_backlog", extra={"call_id": self.call_id, "backlog_ms": backlog_ms})
            self.asr_dropped += len(audio)
            return
        self._asr_backlog += len(audio)
        self._asr_queue.put_nowait(AsrAudio(audio))

    def _speech_ended(self, event: SpeechEnded) -> None:
        if self._ignoring:
            self._ignoring = False
            return
        self.recognizing += 1
        self._asr_queue.put_nowait(AsrEnd(time.monotonic(), event.silence_ms / 1000, event))

    async def _asr_worker(self) -> None:
        """Feeds Vosk in arrival order; batches whatever audio queued up while it was busy."""
        pending: AsrItem | None = None
        while True:
            item = pending if pending is not None else await self._asr_queue.get()
            pending = None
            if isinstance(item, AsrReset):
                self.recognizer.reset()
                continue
            if isinstance(item, AsrEnd):
                await self._final(item)
                continue
            batch = [item.pcm]
            while not self._asr_queue.empty():
                queued = self._asr_queue.get_nowait()
                if not isinstance(queued, AsrAudio):
                    pending = queued  # a control item: handle it after this batch
                    break
                batch.append(queued.pcm)
            audio = b"".join(batch)
            self._asr_backlog -= len(audio)
            partial = await self.recognizer.accept(audio)
            if partial:
                await self.sink.send_event(Transcript("caller", partial, final=False))
                await self._leg.on_partial(partial)

    async def _final(self, end: AsrEnd) -> None:
        """The final result of an utterance, to the leg (which must not hold up the worker with it)."""
        try:
            result = await self.recognizer.finish()
            asr_done = time.monotonic()
            meta: dict[str, Any] = {"speech_ms": end.ended.speech_ms, "end_reason": end.ended.reason}
            text = cut_text(result.text, self.settings.limits.max_text_chars)
            if text != result.text:
                meta["cut_from_chars"] = len(result.text)  # see limits.max_text_chars
                log.warning("call.asr_text_cut", extra={"call_id": self.call_id, "chars": len(result.text)})
            await self.sink.send_event(Transcript("caller", text))
            if result.words:
                meta["words"] = [[w.word, w.confidence] for w in result.words[: len(text.split())]]
            if self._barged:
                meta["barge_in"], self._barged = self._barged, None
            started = self._turn_started_wall or time.time()
            timing = Timing(end.endpointed_at, end.hangover_s, asr_done)
            await self._leg.on_final(Heard(text, result.confidence, started, time.time(), timing, meta))
        finally:
            self.recognizing -= 1

    # ---- to the caller -------------------------------------------------------------

    def say(self, text: str, barge_in: bool = True, meta: PromptMeta | None = None) -> Prompt:
        audio = self.synthesizer.stream(text, self.sink.sample_rate)
        prompt = self.player.play(text, audio, barge_in, meta or PromptMeta())
        self.spawn(self.sink.send_event(Transcript("bot", text)))
        return prompt

    def play(self, label: str, audio: AsyncIterator[SpeechChunk], barge_in: bool, meta: PromptMeta) -> Prompt:
        return self.player.play(label, audio, barge_in, meta)

    async def send_audio(self, pcm16k: bytes) -> None:
        if self.closed:
            return
        if self._to_caller is None:
            self._to_caller = (
                StreamResampler(ASR_RATE, self.sink.sample_rate),
                Framer(frame_bytes(self.sink.sample_rate)),
            )
        resampler, framer = self._to_caller
        for frame in framer.push(resampler.process(pcm16k)):
            await self.sink.send_audio(frame)

    async def stop(self) -> None:
        """Announcements and music give way (an agent answered, the caller left the queue): not stored as cut."""
        await self.player.stop()

    async def barge_in(self, partial: str) -> bool:
        """The caller interrupts: stop, store what they heard of it, tell the far end. True if a prompt was cut."""
        cut = await self.player.stop()
        for prompt, heard in cut:
            await self._store_prompt(prompt, heard=heard)
        if not cut:
            return False
        heard = " ".join(h for _, h in cut if h)
        self._barged = {"heard": heard, "prompt": " ".join(p.text for p, _ in cut)}
        await self.sink.send_event(BargeIn(heard))
        log.info("call.barge_in", extra={"call_id": self.call_id, "partial_words": len(partial.split())})
        return True

    async def event(self, event: OutboundEvent) -> None:
        await self.sink.send_event(event)

    def set_grammar(self, expect: str | None) -> None:
        """The next answer is `expect`: a grammar for the recognizer, and the hangover that ends it."""
        self.recognizer.set_grammar(GRAMMARS.get(expect or "", {}).get(self.language))
        vad = self.settings.vad
        self.endpointer.set_hangover(vad.hangover_for(expect), after_last_word=expect in vad.hangover_by_expect)

    async def hang_up(self, reason: str) -> None:
        await self._closer(reason, True)

    async def hand_back(self, handoff: HandBack) -> None:
        await self.sink.send_event(handoff)
        await self.conversation.note("[handoff]", {"reason": handoff.reason, "handoff_id": handoff.handoff_id})
        await self._closer(f"handoff:{handoff.reason}", True)

    async def _prompt_finished(self, prompt: Prompt) -> None:
        await self._store_prompt(prompt)
        if self._ignoring and self.endpointer.in_speech and (not self.player.speaking or self.player.barge_in_allowed):
            # The caller started during a prompt that could not be interrupted and is still
            # talking now that it is over (what follows, the menu, may be): from here on it is their turn.
            self._ignoring = False
            self._turn_started_wall = time.time()
            self._leg.on_speech_started()
        await self._leg.on_prompt_done(prompt)

    async def _store_prompt(self, prompt: Prompt, heard: str | None = None) -> None:
        meta: PromptMeta = prompt.meta or PromptMeta()
        if meta.music:
            return  # hold music is not a line of the transcript
        stored: dict[str, Any] = {"barge_in_allowed": prompt.barge_in}
        if meta.latency is not None and prompt.first_frame_at is not None:
            stored["latency"] = meta.latency.stored(prompt.first_frame_at)
        if heard is not None:
            stored["interrupted"] = True
            stored["heard"] = heard
        start = prompt.started_wall or time.time()
        end = start + prompt.frames_sent * 0.02
        # The prompt's own text: a reply of several parts is several prompts, each its own line.
        await self.conversation.bot_said(BotReply(prompt.text), start, end, stored)

    # ---- the end -------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the audio both ways; whatever was being said is stored as cut off. The call's tasks end."""
        self.closed = True
        for prompt, heard in await self.player.stop():
            await self._store_prompt(prompt, heard=heard)
        await self.player.close()
        self._asr_task.cancel()
        self.recognizer.release()  # its warm free-form recognizer serves a later call
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
