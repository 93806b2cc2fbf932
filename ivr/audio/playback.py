"""Outbound audio: prompts are synthesized ahead and sent in paced 20 ms frames.

Each prompt has a producer (TTS, one sentence at a time, into a queue) and the
player sends frames on an absolute schedule, a few frames ahead of real time
so the far end's jitter buffer never runs dry. Barge-in stops the current and
queued prompts, tells the transport to drop what it buffered, and reports how
much of the prompt the caller actually heard.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.audio.codecs import FRAME_MS, Framer, frame_bytes
from ivr.audio.tts import SpeechChunk

log = logging.getLogger("ivr.audio.playback")

FRAME_S = FRAME_MS / 1000
LEAD_FRAMES = 3
# A prompt's mark normally comes back as its audio ends at the far end. A client that never echoes
# marks must not keep the call "speaking" forever (no no-input prompt, ever): the prompt is taken
# as played this long after its audio would have ended by its own duration.
MARK_GRACE_S = 2.0


@dataclass
class Prompt:
    """One bot utterance on its way out."""

    text: str
    chunks: AsyncIterator[SpeechChunk]
    barge_in: bool = True
    prompt_id: int = 0
    queued_at: float = field(default_factory=time.monotonic)
    first_frame_at: float | None = None
    started_wall: float | None = None
    frames_sent: int = 0
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, end frame)
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    meta: Any = None  # the owner's bookkeeping (the session's PromptMeta: reply, latency, music, queue)

    def heard_text(self, frames_played: int) -> str:
        """The sentences fully played plus the played share of the current one, by words."""
        heard: list[str] = []
        start = 0
        for text, end in self.sentences:
            if frames_played >= end:
                heard.append(text)
            elif frames_played > start:
                words = text.split()
                share = (frames_played - start) / max(end - start, 1)
                heard.append(" ".join(words[: int(len(words) * share)]))
                break
            start = end
        return " ".join(h for h in heard if h)


@dataclass
class PacingStats:
    frames: int = 0
    late_frames: int = 0  # sent more than one frame behind schedule
    max_lateness_ms: float = 0.0
    underruns: int = 0  # synthesis slower than playback between sentences


OnFinished = Callable[[Prompt], Awaitable[None]]


class AudioSink(Protocol):
    """Where a prompt's audio goes (the transport's sink; see ivr.session.events.MediaSink)."""

    supports_marks: bool

    @property
    def sample_rate(self) -> int: ...

    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of PCM16 at `sample_rate`."""

    async def send_mark(self, name: str) -> None:
        """Ask the far end to acknowledge when it has played everything sent so far."""

    async def clear(self) -> None:
        """Drop audio the far end has queued but not yet played (barge-in)."""


class Player:
    def __init__(self, sink: AudioSink, on_finished: OnFinished, stats: PacingStats | None = None):
        self.sink = sink
        self.on_finished = on_finished
        self.stats = stats or PacingStats()
        self.frame_size = frame_bytes(sink.sample_rate)
        self._queue: asyncio.Queue[Prompt] = asyncio.Queue()
        self._ids = itertools.count(1)
        self.current: Prompt | None = None
        self._task = asyncio.create_task(self._run())
        self._pending_marks: dict[str, Prompt] = {}
        self._mark_timers: dict[str, asyncio.TimerHandle] = {}
        self._overdue: set[asyncio.Task] = set()
        self.marks_overdue = 0

    @property
    def speaking(self) -> bool:
        return self.current is not None or not self._queue.empty() or bool(self._pending_marks)

    @property
    def barge_in_allowed(self) -> bool:
        """Whether the prompt the caller hears now may be interrupted.

        That is the oldest prompt whose audio is out but not yet acknowledged as
        played, else the one being sent: the player moves on to the next prompt
        (the menu) while the far end still plays the last of the previous one
        (the AI disclosure), which must not be cut by the menu's flag.
        """
        prompt = next(iter(self._pending_marks.values()), None) or self.current
        return prompt is None or prompt.barge_in

    def play(self, text: str, chunks: AsyncIterator[SpeechChunk], barge_in: bool = True, meta: Any = None) -> Prompt:
        prompt = Prompt(text, chunks, barge_in, next(self._ids), meta=meta)
        self._queue.put_nowait(prompt)
        return prompt

    async def _run(self) -> None:
        while True:
            prompt = await self._queue.get()
            self.current = prompt
            try:
                await self._send_prompt(prompt)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("playback.failed", extra={"prompt_id": prompt.prompt_id})
                prompt.interrupted = True
            finally:
                self.current = None
            if prompt.interrupted:
                continue
            if self.sink.supports_marks:
                name = f"prompt-{prompt.prompt_id}"
                self._pending_marks[name] = prompt
                await self.sink.send_mark(name)
                self._expect_mark(name, prompt)
            else:
                # No acknowledgement from the far end: the prompt ends when its audio would.
                remaining = (
                    prompt.first_frame_at + prompt.frames_sent * FRAME_S - time.monotonic()
                    if prompt.first_frame_at
                    else 0
                )
                if remaining > 0:
                    await asyncio.sleep(remaining)
                await self._finish(prompt)

    async def _send_prompt(self, prompt: Prompt) -> None:
        chunks: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for chunk in prompt.chunks:
                    await chunks.put(chunk)
            finally:
                await chunks.put(None)

        producer = asyncio.create_task(produce())
        framer = Framer(self.frame_size)
        self._schedule: float | None = None
        try:
            while (chunk := await chunks.get()) is not None:
                frames = framer.push(chunk.pcm)
                prompt.sentences.append((chunk.text, prompt.frames_sent + len(frames)))
                await self._send_frames(prompt, frames)
            tail = framer.flush()
            if tail:
                if prompt.sentences:
                    text, end = prompt.sentences[-1]
                    prompt.sentences[-1] = (text, end + 1)
                await self._send_frames(prompt, [tail])
            await producer  # re-raise synthesis errors
        finally:
            producer.cancel()

    async def _send_frames(self, prompt: Prompt, frames: list[bytes]) -> None:
        """Send on an absolute 20 ms schedule, LEAD_FRAMES ahead of real time."""
        now = time.monotonic()
        if self._schedule is None or self._schedule < now - FRAME_S:
            if self._schedule is not None:
                self.stats.underruns += 1  # synthesis was slower than playback
            self._schedule = now - LEAD_FRAMES * FRAME_S
        for frame in frames:
            delay = self._schedule - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness_ms = -delay * 1000 - LEAD_FRAMES * FRAME_MS
            if lateness_ms > FRAME_MS:
                self.stats.late_frames += 1
            self.stats.max_lateness_ms = max(self.stats.max_lateness_ms, lateness_ms)
            if prompt.first_frame_at is None:
                prompt.first_frame_at = time.monotonic()
                prompt.started_wall = time.time()
            await self.sink.send_audio(frame)
            prompt.frames_sent += 1
            self.stats.frames += 1
            self._schedule += FRAME_S

    def _expect_mark(self, name: str, prompt: Prompt) -> None:
        """Finish the prompt by its own duration if its mark is not back MARK_GRACE_S after that."""
        ends_in = (
            prompt.first_frame_at + prompt.frames_sent * FRAME_S - time.monotonic() if prompt.first_frame_at else 0.0
        )
        loop = asyncio.get_running_loop()
        self._mark_timers[name] = loop.call_later(max(0.0, ends_in) + MARK_GRACE_S, self._mark_overdue, name)

    def _mark_overdue(self, name: str) -> None:
        self._mark_timers.pop(name, None)
        if name not in self._pending_marks:
            return
        if not self.marks_overdue:
            log.warning("playback.mark_overdue", extra={"prompt_id": self._pending_marks[name].prompt_id})
        self.marks_overdue += 1
        task = asyncio.create_task(self.mark_acknowledged(name))
        self._overdue.add(task)
        task.add_done_callback(self._overdue_done)

    def _overdue_done(self, task: asyncio.Task) -> None:
        self._overdue.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("playback.finish_failed", exc_info=task.exception())

    def _cancel_mark_timers(self) -> None:
        for timer in self._mark_timers.values():
            timer.cancel()
        self._mark_timers.clear()

    async def mark_acknowledged(self, name: str) -> None:
        timer = self._mark_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        prompt = self._pending_marks.pop(name, None)
        if prompt is not None:
            await self._finish(prompt)

    async def _finish(self, prompt: Prompt) -> None:
        prompt.done.set()
        await self.on_finished(prompt)

    async def stop(self) -> list[tuple[Prompt, str]]:
        """Barge-in or hang-up: drop everything; returns (prompt, heard text) for the cut prompts."""
        cut: list[tuple[Prompt, str]] = []
        while not self._queue.empty():
            self._queue.get_nowait()
        current = self.current
        if current is not None:
            current.interrupted = True
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self.current = None
            self._task = asyncio.create_task(self._run())
        played_ms = lambda p: int((time.monotonic() - p.first_frame_at) * 1000) if p.first_frame_at else 0  # noqa: E731
        for prompt in [*self._pending_marks.values(), *([current] if current else [])]:
            frames_played = min(prompt.frames_sent, played_ms(prompt) // FRAME_MS)
            prompt.interrupted = True
            cut.append((prompt, prompt.heard_text(frames_played)))
        self._pending_marks.clear()
        self._cancel_mark_timers()
        if cut:
            await self.sink.clear()
        for prompt, _ in cut:
            prompt.done.set()
        return cut

    async def close(self) -> None:
        self._cancel_mark_timers()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
