"""The caller's side of a handed-off call while it waits in our agent queue.

A `QueueLeg` becomes the call's leg when the dialog hands off and the tenant
uses our own queue, and it is the ACD's `CallerLink` for the call. While the
caller waits it announces position and expected wait (at the start, as German
telecom law requires, and then every `announce_every_s`), plays hold music,
offers a callback when the wait is long, and never lets anybody wait forever:
with nobody staffing the queue, after `max_wait_s`, or when the caller asks
(key 1 or "call back") the call ends with a stored callback request, or a
ticket when the caller's number is unknown. While an agent's phone rings with
the call the caller hears music instead of an announcement: the wait is about
to end, and a free agent is offered the call as the handoff sentence starts
(issue 18), not after a welcome and a position. When an agent answers, the call's
leg becomes an `AgentLeg` (ivr/session/agent_leg.py); when the agent is lost
or transfers the call, it comes back here and waits again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ivr.audio.playback import Prompt
from ivr.queue import announcements as say
from ivr.queue import hold_music
from ivr.queue.model import Agent, QueuedCall
from ivr.session.agent_leg import AgentLeg
from ivr.session.events import AgentState
from ivr.session.leg import CallContext, Heard, LineControl, PromptMeta
from ivr.storage import EventName

log = logging.getLogger("ivr.session.queue")

CALLBACK_KEY = "1"
RING_POLL_S = 0.05  # how often music for a ringing agent checks whether the ring is over
# Callers the dialog flagged get served first: an urgent ticket, a failure of ours, an angry caller.
PRIORITY_BY_REASON = {"urgent": 10, "dialog_unavailable": 5, "angry": 5}


class QueueLeg:
    def __init__(self, ctx: CallContext, line: LineControl, handoff_id: str | None, reason: str, queue: str):
        self.ctx = ctx
        self.line = line
        self.conversation = ctx.conversation
        self.acd = ctx.runtime.acd
        assert self.acd is not None
        self.settings = ctx.settings.queue
        self.language = ctx.language
        self.call_id = ctx.call_id
        self.handoff_id = handoff_id
        self.reason = reason
        self.queue = queue
        self.state = "new"  # waiting | connected | done
        self.agent: str | None = None
        self.agent_leg: AgentLeg | None = None
        self.callback_offered = False
        self.waiting_since = time.monotonic()
        self._loop_task: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    # ---- entering the queue -------------------------------------------------

    async def enter(self) -> None:
        tenant = self.ctx.tenant_number
        if self.acd.staffed(tenant, self.queue) == 0:
            await self.conversation.event(EventName.EXITEMPTY, queue=self.queue)
            await self._take_callback(say.nobody_available(self.language))
            return
        stored = await self.ctx.runtime.write_behind.get_handoff(self.handoff_id) if self.handoff_id else None
        call = QueuedCall(
            call_id=self.call_id,
            tenant=tenant,
            queue=self.queue,
            link=self,
            priority=PRIORITY_BY_REASON.get(self.reason, 0),
            handoff_id=self.handoff_id,
            package=stored.package if stored else {},
        )
        self.state = "waiting"
        await self.acd.enqueue(call)
        log.info("queue.enter", extra={"call_id": self.call_id, "queue": self.queue})
        if self.state == "waiting":  # an agent may have answered already
            self._start_waiting(first=True)

    def _start_waiting(self, first: bool, intro: str | None = None) -> None:
        self._stop_loop()
        self._loop_task = asyncio.create_task(self._waiting(first, intro))

    async def _waiting(self, first: bool, intro: str | None) -> None:
        """Announce, play hold music, repeat; leave with a callback when waiting gets too long."""
        try:
            announce = True
            while self.state == "waiting":
                if time.monotonic() - self.waiting_since >= self.settings.max_wait_s:
                    await self.acd.leave(self.call_id, EventName.EXITWITHTIMEOUT)
                    await self._take_callback(say.waited_too_long(self.language))
                    return
                if announce:
                    await self._while_ringing()
                    if self.state != "waiting":
                        return
                    await self._say(self._announcement(first, intro))
                    first, intro = False, None
                if self.state != "waiting":
                    return
                await self._music(self.settings.announce_every_s)
                announce = True
        except asyncio.CancelledError:
            pass

    async def _while_ringing(self) -> None:
        """Music while an agent's phone rings; it gives way when the ring ends unanswered (declined, timed out).

        Answered, the agent leg stops it. The music may be queued behind the handoff sentence: it is
        stopped only once it plays, so that sentence is never cut for it.
        """
        if not self.acd.ringing(self.call_id):
            return
        seconds = self.settings.ring_timeout_s + 1.0
        audio = hold_music.play(self.settings.hold_music, self.line.sample_rate, seconds)
        music = self.line.play(hold_music.LABEL, audio, True, PromptMeta(music=True))
        while self.state == "waiting" and self.acd.ringing(self.call_id) and not music.done.is_set():
            await _wait(music.done, RING_POLL_S)
        while self.state == "waiting" and music.first_frame_at is None and not music.done.is_set():
            await _wait(music.done, RING_POLL_S)
        if self.state == "waiting" and not music.done.is_set():
            await self.line.stop()

    def _announcement(self, first: bool, intro: str | None) -> str:
        position = self.acd.position(self.call_id)
        wait = self.acd.estimated_wait(self.call_id)
        parts = [intro or (say.welcome(self.language) if first else "")]
        parts.append(say.position_and_wait(position, wait, self.language))
        if wait is not None and wait > self.settings.callback_offer_after_s:
            self.callback_offered = True
            parts.append(say.callback_offer(self.language))
        return " ".join(p for p in parts if p)

    # ---- Leg: the caller while waiting ------------------------------------------

    def on_speech_started(self) -> bool:
        return True  # transcribed; never cuts an announcement or the music

    async def on_audio(self, pcm16k: bytes) -> None:
        pass

    async def on_partial(self, text: str) -> None:
        pass

    async def on_final(self, heard: Heard) -> None:
        # The dialog is over: the transcript goes on, for the record (and the agent's screen).
        await self.conversation.heard(heard.text, heard.started, heard.ended, heard.confidence, heard.meta)
        if self.state == "waiting" and self.callback_offered and say.wants_callback(heard.text):
            await self._callback_instead()

    async def on_key(self, key: str) -> None:
        await self.conversation.note(f"[DTMF {key}]", {"dtmf": key, "queue": self.state})
        if self.state == "waiting" and key == CALLBACK_KEY and self.callback_offered:
            await self._callback_instead()

    async def on_prompt_done(self, prompt: Prompt) -> None:
        pass

    async def on_close(self, reason: str) -> None:
        await self.close()

    async def _callback_instead(self) -> None:
        self.state = "done"  # at once: a second key 1 while the music stops must not leave the queue twice
        self._stop_loop()
        await self.line.stop()
        await self.acd.leave(self.call_id, EventName.EXITWITHKEY, key=CALLBACK_KEY)
        await self._take_callback(None)

    async def _take_callback(self, lead: str | None) -> None:
        """Never drop a caller: a callback request to the caller's number, or a ticket without one."""
        self.state = "done"
        storage = self.ctx.runtime.storage
        tenant = self.ctx.tenant_number
        caller = self.ctx.caller or ""
        if sum(ch.isdigit() for ch in caller) >= 5:
            request = await storage.add_callback(tenant, caller, self.reason, self.language, self.call_id)
            await self.conversation.event(EventName.CALLBACK_REQUESTED, callback_id=request.id, reason=self.reason)
            closing = say.callback_taken(caller, self.language)
        else:
            ticket = await storage.create_ticket(tenant, "other", f"Handoff ({self.reason}); no caller number", None,
                                                 "normal", call_id=self.call_id, caller=None)  # fmt: skip
            await self.conversation.event(
                EventName.TICKET_CREATED, ticket_number=ticket.ticket_number, category="other"
            )
            closing = say.ticket_taken(ticket.ticket_number, self.language)
        await self._say(" ".join(p for p in (lead, closing) if p))
        await self.line.hang_up(f"queue_callback:{self.reason}")

    # ---- CallerLink: what the ACD and the agent do ----------------------------

    async def agent_connected(self, agent: Agent) -> None:
        self.state = "connected"
        self.agent = agent.username
        self._stop_loop()
        self.agent_leg = AgentLeg(self.ctx, self.line, self)
        self.line.attach(self.agent_leg)  # at once: the caller's next audio goes to the agent
        await self.line.stop()
        await self.conversation.note("[connected to agent]", {"agent": agent.username, "queue": self.queue})
        await self.line.event(AgentState("connected"))

    async def agent_audio(self, pcm16k: bytes) -> None:
        if self.connected and self.agent_leg is not None:
            await self.agent_leg.agent_audio(pcm16k)

    async def hold(self, on: bool) -> None:
        if self.agent_leg is not None:
            await self.agent_leg.hold(on)

    async def agent_hung_up(self) -> None:
        self.state = "done"
        await self.line.hang_up("agent_hangup")

    async def requeued(self, reason: str) -> None:
        """Called by the ACD under its lock: start waiting again in a task, never call back into it here."""
        self.state = "waiting"
        self.agent = None
        self.waiting_since = time.monotonic()
        if self.agent_leg is not None:
            self.agent_leg.detach()
            self.agent_leg = None
        self.line.attach(self)
        if reason.startswith("transfer:"):
            self.queue = reason.split(":", 1)[1]
            intro = say.transferring(self.language)
        else:
            intro = say.reconnecting(self.language)
        asyncio.get_running_loop().call_soon(lambda: self._start_waiting(first=False, intro=intro))

    # ---- the end --------------------------------------------------------------

    async def shut_down(self) -> None:
        """The server stops while the caller waits: never dropped, but called back (or given a ticket)."""
        if self.state != "waiting":
            return
        self.state = "done"
        self._stop_loop()
        await self.line.stop()
        await self.acd.leave(self.call_id, EventName.EXITWITHTIMEOUT, shutdown=True)
        await self._take_callback(say.service_ending(self.language))

    async def close(self) -> None:
        """The call ends (caller hung up, max duration): leave the queue, or complete the agent call."""
        self._stop_loop()
        if self.agent_leg is not None:
            self.agent_leg.detach()
        if self.state in ("waiting", "connected"):
            self.state = "done"
            await self.acd.leave(self.call_id, EventName.ABANDON)

    # ---- audio out -------------------------------------------------------------

    async def _say(self, text: str) -> None:
        await self.line.say(text, True, PromptMeta(queue=True)).done.wait()

    async def _music(self, seconds: float) -> None:
        audio = hold_music.play(self.settings.hold_music, self.line.sample_rate, seconds)
        await self.line.play(hold_music.LABEL, audio, True, PromptMeta(music=True)).done.wait()

    def _stop_loop(self) -> None:
        task = self._loop_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._loop_task = None


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set, at most `seconds` (the ACD does not tell a caller that a ring ended: polled)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
