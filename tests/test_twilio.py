import base64
import json

import pytest

from ivr.audio.codecs import codec_for
from ivr.errors import ProtocolError
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, Ignored, MarkAck
from ivr.transports.twilio import TwilioSerializer


def start_message(encoding="audio/x-mulaw", rate=8000, params=None):
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ1",
            "start": {
                "streamSid": "MZ1",
                "callSid": "CA1",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1},
                "customParameters": params if params is not None else {"to": "+4930123456", "from": "+4917012"},
            },
        }
    )


def started() -> TwilioSerializer:
    ser = TwilioSerializer()
    ser.decode(start_message())
    return ser


def test_start_carries_numbers_and_format():
    ser = TwilioSerializer()
    assert isinstance(ser.decode('{"event": "connected", "protocol": "Call", "version": "1.0.0"}'), Ignored)
    frame = ser.decode(start_message())
    assert isinstance(frame, CallStart)
    assert (frame.dialled, frame.caller, frame.sample_rate, frame.channel) == (
        "+4930123456",
        "+4917012",
        8000,
        "media_stream",
    )
    assert frame.parameters == {"to": "+4930123456", "from": "+4917012"}
    # The client's CallSid is recorded, never used as our id (hardening finding 1).
    assert frame.provider_call_id == "CA1" and frame.call_id.startswith("ms-")
    assert ser.decode(start_message()).call_id != frame.call_id


def test_alaw_stream_is_decoded_as_alaw():
    ser = TwilioSerializer()
    ser.decode(start_message(encoding="audio/x-alaw"))
    pcm = b"\x10\x00" * 160
    payload = base64.b64encode(codec_for("audio/x-alaw", 8000).encode(pcm)).decode()
    frame = ser.decode(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}))
    assert isinstance(frame, AudioIn) and len(frame.pcm) == 320


def test_media_dtmf_mark_stop():
    ser = started()
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = ser.decode(
        json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}})
    )
    assert isinstance(media, AudioIn) and len(media.pcm) == 320 and set(media.pcm) == {0}  # μ-law 0xff is silence
    assert ser.decode('{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"7"}}') == DtmfIn("7")
    assert ser.decode('{"event":"mark","streamSid":"MZ1","mark":{"name":"prompt-3"}}') == MarkAck("prompt-3")
    assert ser.decode('{"event":"stop","streamSid":"MZ1","stop":{}}') == CallStop("caller_hangup")


def test_outbound_messages():
    ser = started()
    media = json.loads(ser.encode_audio(b"\x00\x00" * 160))
    assert media["event"] == "media" and media["streamSid"] == "MZ1"
    assert base64.b64decode(media["media"]["payload"]) == b"\xff" * 160
    assert json.loads(ser.encode_mark("m1")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}
    assert json.loads(ser.encode_clear()) == {"event": "clear", "streamSid": "MZ1"}


@pytest.mark.parametrize(
    "message, error",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "no 'event' field"),
        ('{"event": "media", "media": {"payload": "AA=="}}', "'media' before 'start'"),
        (b"\x00\x01", "binary WebSocket message"),
    ],
)
def test_malformed_messages_before_start(message, error):
    with pytest.raises(ProtocolError, match=error):
        TwilioSerializer().decode(message)


@pytest.mark.parametrize(
    "message, error",
    [
        ('{"event": "media", "media": {"payload": "***"}}', "not valid base64"),
        ('{"event": "media", "media": {}}', "missing field media.payload"),
        ('{"event": "dtmf", "dtmf": {"digit": "x"}}', "not a DTMF digit"),
        ('{"event": "bogus"}', "unknown event 'bogus'"),
    ],
)
def test_malformed_messages_after_start(message, error):
    with pytest.raises(ProtocolError, match=error):
        started().decode(message)


@pytest.mark.parametrize(
    "encoding, rate, error",
    [("audio/x-mulaw", 16000, "defined at 8000 Hz"), ("audio/opus", 48000, "unsupported encoding")],
)
def test_wrong_codec_or_rate_is_refused(encoding, rate, error):
    with pytest.raises(ProtocolError, match=f"start.mediaFormat: .*{error}"):
        TwilioSerializer().decode(start_message(encoding, rate))
