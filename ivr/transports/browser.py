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
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, InboundFrame, MarkAck
from ivr.transports.twilio import DTMF_DIGITS

RATE = 16000


class BrowserSerializer:
    channel = "browser"
    supports_marks = True
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
        try:
            data = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"message is not JSON: {exc.msg}") from exc
        event = data.get("event") if isinstance(data, dict) else None
        if event == "start":
            rate = data.get("sampleRate", RATE)
            if rate != RATE:
                raise ProtocolError(f"start.sampleRate must be {RATE}, got {rate!r}")
            self.started = True
            return CallStart(
                call_id=f"web-{uuid.uuid4().hex[:16]}",
                dialled=str(data["to"]) if data.get("to") else None,
                caller=str(data.get("from") or "browser"),
                sample_rate=RATE,
                channel=self.channel,
            )
        if not self.started:
            raise ProtocolError(f"{event!r} before 'start'")
        if event == "dtmf":
            digit = str(data.get("digit", ""))
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"dtmf.digit {digit!r} is not a DTMF digit")
            return DtmfIn(digit)
        if event == "mark":
            return MarkAck(str(data.get("name", "")))
        if event == "stop":
            return CallStop("caller_hangup")
        raise ProtocolError(f"unknown event {event!r}")

    def encode_audio(self, pcm: bytes) -> bytes:
        return pcm

    def encode_mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "name": name})

    def encode_clear(self) -> str:
        return json.dumps({"event": "clear"})

    def encode_event(self, event: dict[str, Any]) -> str:
        return json.dumps({"event": event.get("type", "event"), **{k: v for k, v in event.items() if k != "type"}})
