"""Browser softphone serializer: binary PCM16 frames plus JSON control messages.

The page (ivr/web/phone.html) captures the microphone, sends 16 kHz PCM16 as
binary WebSocket messages, and gets the bot's audio back the same way; JSON
text messages carry start/dtmf/mark/stop from the page and transcript, mark,
clear and hangup events to it. 16 kHz wideband keeps recognition better than
squeezing the browser through G.711.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ivr.errors import ProtocolError
from ivr.session.events import OutboundEvent
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, InboundFrame, MarkAck
from ivr.transports import fields

RATE = 16000


class BrowserSerializer:
    channel = "browser"
    supports_marks = True
    # A browser's WebSocket cannot read a refused handshake's status or body: admission refusals are
    # told after the upgrade, as a close with 1013 and the reason, which the page shows.
    refuse_after_upgrade = True
    sample_rate = RATE

    def __init__(self) -> None:
        self.started = False

    def decode(self, message: str | bytes) -> InboundFrame:
        if isinstance(message, bytes):
            if not self.started:
                raise ProtocolError("audio before 'start'")
            if len(message) % 2:
                raise ProtocolError("binary audio must be 16-bit PCM (even number of bytes)")
            return AudioIn(message)
        data = fields.parse_json(message)
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise ProtocolError("message has no 'event' field")
        event = data["event"]
        if event == "start":
            return self._start(data)
        if not self.started:
            raise ProtocolError(f"{fields.shown(event)} before 'start'")
        if event == "dtmf":
            return DtmfIn(fields.digit(data.get("digit", ""), "dtmf.digit"))
        if event == "mark":
            return MarkAck(fields.text(data.get("name"), "mark.name", fields.MAX_ID_CHARS) or "")
        if event == "stop":
            return CallStop("caller_hangup")
        raise ProtocolError(f"unknown event {fields.shown(event)}")

    def _start(self, data: dict[str, Any]) -> CallStart:
        rate = data.get("sampleRate", RATE)
        if isinstance(rate, bool) or rate != RATE:
            raise ProtocolError(f"start.sampleRate must be {RATE}, got {fields.shown(rate)}")
        frame = CallStart(
            call_id=f"web-{uuid.uuid4().hex[:16]}",
            dialled=fields.text(data.get("to"), "start.to", fields.MAX_NUMBER_CHARS),
            caller=fields.text(data.get("from"), "start.from", fields.MAX_NUMBER_CHARS) or "browser",
            sample_rate=RATE,
            channel=self.channel,
        )
        self.started = True
        return frame

    def encode_audio(self, pcm: bytes) -> bytes:
        return pcm

    def encode_mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "name": name})

    def encode_clear(self) -> str:
        return json.dumps({"event": "clear"})

    def encode_event(self, event: OutboundEvent) -> str:
        wire = event.to_wire()
        return json.dumps({"event": wire.pop("type"), **wire})
