"""The agent leg: the caller talks to a person at the agent desktop.

Caller audio goes to the agent (16 kHz, as the recognizer hears it) and the
agent's audio to the caller; the caller keeps being transcribed, for the
record and for the agent's screen, where each line shows live. The agent can
put the caller on hold (music). The queue leg that waited for the agent stays
the ACD's link for the call and hands the agent's side to this leg.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ivr.audio.playback import Prompt
from ivr.queue import hold_music
from ivr.queue.acd import Acd
from ivr.session.events import Transcript
from ivr.session.leg import CallContext, Heard, LineControl, PromptMeta


class QueueLink(Protocol):
    """What the agent leg needs of the queue leg (the ACD's link for the call).

    A protocol rather than the QueueLeg class: the queue leg creates the agent
    leg, so naming the class here would make the two modules import each other.
    """

    acd: Acd

    @property
    def connected(self) -> bool: ...

    @property
    def state(self) -> str: ...

    async def close(self) -> None:
        """Completes the agent call in the ACD (once; later calls do nothing)."""


class AgentLeg:
    def __init__(self, ctx: CallContext, line: LineControl, link: QueueLink):
        self.ctx = ctx
        self.line = line
        self.link = link
        self.acd = link.acd
        self.call_id = ctx.call_id
        self._music: asyncio.Task | None = None

    # ---- Leg: the caller ---------------------------------------------------------

    def on_speech_started(self) -> bool:
        return True  # transcribed for the agent; nothing to interrupt

    async def on_audio(self, pcm16k: bytes) -> None:
        if self.link.connected:
            await self.acd.caller_audio(self.call_id, pcm16k)

    async def on_partial(self, text: str) -> None:
        if self.link.connected:
            await self.acd.caller_event(self.call_id, Transcript("caller", text, final=False).to_wire())

    async def on_final(self, heard: Heard) -> None:
        await self.ctx.conversation.heard(heard.text, heard.started, heard.ended, heard.confidence, heard.meta)
        if self.link.connected:
            line = Transcript("caller", heard.text, True, heard.confidence, at=time.time())
            await self.acd.caller_event(self.call_id, line.to_wire())

    async def on_key(self, key: str) -> None:
        await self.ctx.conversation.note(f"[DTMF {key}]", {"dtmf": key, "queue": self.link.state})

    async def on_prompt_done(self, prompt: Prompt) -> None:
        pass

    async def on_close(self, reason: str) -> None:
        await self.link.close()  # completes the agent call in the ACD

    # ---- the agent ------------------------------------------------------------------

    async def agent_audio(self, pcm16k: bytes) -> None:
        if not self.line.closed:
            await self.line.send_audio(pcm16k)

    async def hold(self, on: bool) -> None:
        if on:
            self._music = asyncio.create_task(self._hold_music(self.ctx.settings.queue.max_wait_s))
        else:
            self.detach()
            await self.line.stop()

    async def _hold_music(self, seconds: float) -> None:
        audio = hold_music.play(self.ctx.settings.queue.hold_music, self.line.sample_rate, seconds)
        await self.line.play(hold_music.LABEL, audio, True, PromptMeta(music=True)).done.wait()

    def detach(self) -> None:
        """The agent is gone (hung up, lost, transferred): no more hold music from this leg."""
        task, self._music = self._music, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
