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
from ivr.session.events import OutboundEvent
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, Ignored, InboundFrame, MarkAck
from ivr.transports import fields


def _field(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ProtocolError(f"{data.get('event', 'message')}: missing field {'.'.join(path)}")
        node = node[key]
    return node


def _first(params: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if params.get(name):
            return fields.text(params[name], f"start.customParameters.{name}", fields.MAX_NUMBER_CHARS)
    return None


class TwilioSerializer:
    channel = "media_stream"
    supports_marks = True
    refuse_after_upgrade = False  # providers read the 503 and go on with their own routing

    def __init__(self) -> None:
        self.stream_sid: str = ""
        self.codec: Codec = codec_for("audio/x-mulaw", 8000)

    @property
    def sample_rate(self) -> int:
        return self.codec.rate

    def decode(self, message: str | bytes) -> InboundFrame:
        if isinstance(message, bytes):
            raise ProtocolError("binary WebSocket message; Media Streams messages are JSON text")
        data = fields.parse_json(message)
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise ProtocolError("message has no 'event' field")
        event = data["event"]
        if event == "connected":
            return Ignored("connected")
        if event == "start":
            return self._start(data)
        if not self.stream_sid:
            raise ProtocolError(f"{fields.shown(event)} before 'start'")
        if event == "media":
            return self._media(data)
        if event == "dtmf":
            return DtmfIn(fields.digit(_field(data, "dtmf", "digit"), "dtmf.digit"))
        if event == "mark":
            return MarkAck(str(fields.text(_field(data, "mark", "name"), "mark.name", fields.MAX_ID_CHARS) or ""))
        if event == "stop":
            return CallStop("caller_hangup")
        raise ProtocolError(f"unknown event {fields.shown(event)}")

    def _media(self, data: dict[str, Any]) -> InboundFrame:
        media = fields.mapping(data.get("media"), "media")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            return Ignored(f"media track {fields.shown(track)}")
        payload = _field(data, "media", "payload")
        if not isinstance(payload, str):
            raise ProtocolError(f"media.payload must be a base64 string, got {fields.type_name(payload)}")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("media.payload is not valid base64") from exc
        try:
            return AudioIn(self.codec.decode(audio))
        except ValueError as exc:  # an odd number of bytes of 16-bit PCM
            raise ProtocolError(f"media.payload: {exc}") from exc

    def _start(self, data: dict[str, Any]) -> CallStart:
        start = fields.mapping(_field(data, "start"), "start")
        fmt = fields.mapping(start.get("mediaFormat"), "start.mediaFormat", required=False)
        encoding = fields.text(fmt.get("encoding"), "start.mediaFormat.encoding", 40) or "audio/x-mulaw"
        rate = fields.integer(fmt.get("sampleRate"), "start.mediaFormat.sampleRate", 8000)
        try:
            codec = codec_for(encoding, rate)
        except ValueError as exc:
            raise ProtocolError(f"start.mediaFormat: {exc}") from exc
        if fields.integer(fmt.get("channels"), "start.mediaFormat.channels", 1) != 1:
            raise ProtocolError("start.mediaFormat.channels: only mono audio is supported")
        stream_sid = fields.text(start.get("streamSid"), "start.streamSid", fields.MAX_ID_CHARS) or fields.text(
            data.get("streamSid"), "streamSid", fields.MAX_ID_CHARS
        )
        if not stream_sid:
            raise ProtocolError("start: missing streamSid")
        call_sid = fields.text(start.get("callSid"), "start.callSid", fields.MAX_ID_CHARS)
        params = self._parameters(start.get("customParameters"))
        frame = CallStart(
            call_id=f"ms-{secrets.token_hex(8)}",  # never the client's: see CallStart
            provider_call_id=call_sid,
            dialled=_first(params, "to", "To", "called", "Called"),
            caller=_first(params, "from", "From", "caller", "Caller"),
            sample_rate=codec.rate,
            channel=self.channel,
            parameters=params,
        )
        # Only a start that is valid through and through starts the stream.
        self.codec, self.stream_sid = codec, stream_sid
        return frame

    @staticmethod
    def _parameters(value: Any) -> dict[str, str]:
        """`<Parameter>` names and values from TwiML: strings (numbers are taken as their text), bounded."""
        params = fields.mapping(value, "start.customParameters", required=False)
        if len(params) > fields.MAX_PARAMETERS:
            raise ProtocolError(f"start.customParameters has {len(params)} entries; at most {fields.MAX_PARAMETERS}")
        checked: dict[str, str] = {}
        for name, item in params.items():
            if len(name) > fields.MAX_PARAMETER_CHARS:
                raise ProtocolError(
                    f"start.customParameters: a name is longer than {fields.MAX_PARAMETER_CHARS} characters"
                )
            where = f"start.customParameters.{name[: fields.SHOWN_CHARS]}"
            checked[name] = fields.text(item, where, fields.MAX_PARAMETER_CHARS) or ""
        return checked

    def encode_audio(self, pcm: bytes) -> str:
        payload = base64.b64encode(self.codec.encode(pcm)).decode("ascii")
        return json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def encode_mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def encode_clear(self) -> str:
        return json.dumps({"event": "clear", "streamSid": self.stream_sid})

    def encode_event(self, event: OutboundEvent) -> None:
        return None  # telephony providers have no use for transcript events
