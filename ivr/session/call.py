"""A voice call: the line (audio both ways) and the leg the call is in (bot, queue, agent).

The session is what a transport talks to: it picks the tenant, opens the
transcript, builds the line (ivr/session/line.py) and starts the call in the
bot leg (ivr/session/bot_leg.py), which may hand it on to the queue leg and
the agent leg. Frames from the transport go to the line; the session owns the
call's lifetime: the maximum call length, closing once with a reason, and
the server's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ivr.audio.codecs import ASR_RATE
from ivr.audio.playback import Player
from ivr.audio.vad import Endpointer
from ivr.runtime import Runtime
from ivr.session.bot_leg import BotLeg
from ivr.session.conversation import Conversation
from ivr.session.events import CallInfo, MediaSink
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, InboundFrame, MarkAck
from ivr.session.leg import CallContext, Leg
from ivr.session.line import Line
from ivr.session.queue_leg import QueueLeg
from ivr.storage import CallRecord

log = logging.getLogger("ivr.session")


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
        context = CallContext(
            start.call_id, self.tenant_number, self.tenant, start.caller, settings, self.conversation, runtime
        )
        self.line = Line(
            start.call_id,
            sink,
            start.sample_rate,
            runtime.recognizer(self.tenant.language),
            runtime.synthesizer(settings.voice_for(self.tenant)),
            settings,
            self.conversation,
            self.tenant.language,
            self.close,
            runtime.pacing,
        )
        self.bot = BotLeg(context, self.line)
        self.line.attach(self.bot)
        self.finished = asyncio.Event()  # set when close() has done everything, the hang-up message included
        self._max_call = asyncio.get_running_loop().call_later(
            settings.timeouts.max_call_s, lambda: self.line.spawn(self.close("max_duration", hangup=True))
        )

    @property
    def closed(self) -> bool:
        return self.line.closed

    @property
    def leg(self) -> Leg:
        assert self.line.leg is not None
        return self.line.leg

    @property
    def player(self) -> Player:
        return self.line.player

    @property
    def endpointer(self) -> Endpointer:
        return self.line.endpointer

    # ---- lifecycle -------------------------------------------------------

    async def begin(self) -> None:
        self.runtime.sessions.add(self)
        log.info(
            "call.start",
            extra={"call_id": self.call_id, "tenant": self.tenant_number, "channel": self.start_frame.channel},
        )
        await self.sink.send_event(CallInfo(self.call_id, self.tenant.company))
        await self.bot.greet()

    async def handle(self, frame: InboundFrame) -> None:
        if self.closed:
            return
        if isinstance(frame, AudioIn):
            await self.line.audio(frame.pcm)
        elif isinstance(frame, DtmfIn):
            self.line.key(frame.digit)
        elif isinstance(frame, MarkAck):
            await self.line.mark(frame.name)
        elif isinstance(frame, CallStop):
            await self.close(frame.reason)

    async def close(self, reason: str, hangup: bool = False) -> None:
        """Tear the call down once; whatever was being said is stored as cut off."""
        if self.closed:
            return
        self.line.closed = True
        await self.leg.on_close(reason)
        self._max_call.cancel()
        await self.line.close()
        try:
            if hangup:
                # Before the slower bookkeeping: the transport ends the stream as soon as it sees
                # the session closed, and the far end must still get the reason.
                await self.sink.hangup(reason)
            await self.conversation.end(reason)
        finally:
            self.runtime.sessions.discard(self)
            self.finished.set()
            extra: dict[str, Any] = {"call_id": self.call_id, "reason": reason}
            if self.line.asr_dropped:
                extra["asr_dropped_ms"] = self.line.asr_dropped * 1000 // (2 * ASR_RATE)
            if self.bot.keys_dropped:
                extra["keys_dropped"] = self.bot.keys_dropped
            log.info("call.end", extra=extra)

    async def shut_down(self) -> None:
        """The server stops: a caller waiting for an agent gets a callback or ticket; every line is hung up."""
        leg = self.leg
        if isinstance(leg, QueueLeg):
            await leg.shut_down()
        await self.close("server_shutdown", hangup=True)
