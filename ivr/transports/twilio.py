"""Twilio Media Streams serializer (bidirectional `<Connect><Stream>`).

Inbound events: connected, start, media, dtmf, mark, stop. Outbound: media,
mark, clear. Any provider speaking this protocol (Twilio, Telnyx and SignalWire
in Twilio mode, Jambonz's listen with this format, `ivr call`) connects
unchanged. The dialled and calling numbers come from the start message's
`customParameters` (`to`/`from`, as set with `<Parameter>` in TwiML).

Hang-up is closing the WebSocket: Twilio then continues with the next TwiML
verb, which is also how a handoff returns the call to the telephony side.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from ivr.audio.codecs import Codec, codec_for
from ivr.errors import ProtocolError
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, Ignored, InboundFrame, MarkAck

DTMF_DIGITS = set("0123456789*#ABCD")


def _field(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ProtocolError(f"{data.get('event', 'message')}: missing field {'.'.join(path)}")
        node = node[key]
    return node


def _first(params: dict[str, Any], *names: str) -> Any:
    for name in names:
        if params.get(name):
            return str(params[name])
    return None


class TwilioSerializer:
    channel = "media_stream"
    supports_marks = True

    def __init__(self) -> None:
        self.stream_sid: str = ""
        self.codec: Codec = codec_for("audio/x-mulaw", 8000)

    @property
    def sample_rate(self) -> int:
        return self.codec.rate

    def decode(self, message: str | bytes) -> InboundFrame:
        if isinstance(message, bytes):
            raise ProtocolError("binary WebSocket message; Media Streams messages are JSON text")
        try:
            data = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"message is not JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise ProtocolError("message has no 'event' field")
        event = data["event"]
        if event == "connected":
            return Ignored("connected")
        if event == "start":
            return self._start(data)
        if not self.stream_sid:
            raise ProtocolError(f"'{event}' before 'start'")
        if event == "media":
            track = data.get("media", {}).get("track", "inbound")
            if track not in ("inbound", "inbound_track"):
                return Ignored(f"media track {track}")
            try:
                payload = base64.b64decode(_field(data, "media", "payload"), validate=True)
            except (binascii.Error, TypeError) as exc:
                raise ProtocolError("media.payload is not valid base64") from exc
            return AudioIn(self.codec.decode(payload))
        if event == "dtmf":
            digit = str(_field(data, "dtmf", "digit"))
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"dtmf.digit {digit!r} is not a DTMF digit")
            return DtmfIn(digit)
        if event == "mark":
            return MarkAck(str(_field(data, "mark", "name")))
        if event == "stop":
            return CallStop("caller_hangup")
        raise ProtocolError(f"unknown event {event!r}")

    def _start(self, data: dict[str, Any]) -> CallStart:
        start = _field(data, "start")
        fmt = start.get("mediaFormat") or {}
        try:
            self.codec = codec_for(str(fmt.get("encoding", "audio/x-mulaw")), int(fmt.get("sampleRate", 8000)))
        except ValueError as exc:
            raise ProtocolError(f"start.mediaFormat: {exc}") from exc
        if int(fmt.get("channels", 1)) != 1:
            raise ProtocolError("start.mediaFormat.channels: only mono audio is supported")
        self.stream_sid = str(start.get("streamSid") or data.get("streamSid") or "")
        if not self.stream_sid:
            raise ProtocolError("start: missing streamSid")
        params = start.get("customParameters") or {}
        call_sid = start.get("callSid")
        return CallStart(
            call_id=f"ms-{secrets.token_hex(8)}",  # never the client's: see CallStart
            provider_call_id=str(call_sid)[:200] if call_sid else None,
            dialled=_first(params, "to", "To", "called", "Called"),
            caller=_first(params, "from", "From", "caller", "Caller"),
            sample_rate=self.codec.rate,
            channel=self.channel,
            parameters={str(k): str(v) for k, v in params.items()},
        )

    def encode_audio(self, pcm: bytes) -> str:
        payload = base64.b64encode(self.codec.encode(pcm)).decode("ascii")
        return json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def encode_mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def encode_clear(self) -> str:
        return json.dumps({"event": "clear", "streamSid": self.stream_sid})

    def encode_event(self, event: dict[str, Any]) -> None:
        return None  # telephony providers have no use for transcript events
