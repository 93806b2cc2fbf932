"""Property-based fuzzing of the Media Streams, browser and text-API message shapes.

The property, as for SIP (tests/test_sip_fuzz.py): whatever a client sends,
the answer is the transport's own refusal, never an exception from inside.
At the serializer level that is a frame or a ProtocolError; over the wire
(an in-process aiohttp server on the real app, with the fakes of
tests/test_wire_limits.py) it is never an HTTP 500 and never a WebSocket
that ends with 1006 (dropped) or 1011 (our failure), and a close other than a
normal hang-up always carries a reason.

Messages are valid ones with fields replaced by arbitrary JSON values or
removed, plus arbitrary text, so most examples get past JSON parsing and into
the field checks.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.app import make_app
from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, Ignored, MarkAck
from ivr.settings import load_settings
from ivr.storage import open_storage
from ivr.transports.browser import BrowserSerializer
from ivr.transports.twilio import TwilioSerializer
from tests.test_wire_limits import MUSTER, FakeDialog, tuned

TEST_SETTINGS = Path(__file__).parent / "data" / "ivr.test.yml"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_WIRE = settings(max_examples=120, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
FRAMES = (CallStart, AudioIn, DtmfIn, MarkAck, CallStop, Ignored)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

TWILIO = {
    "connected": {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    "start": {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"to": MUSTER, "from": "+4917012"},
        },
    },  # fmt: skip
    "media": {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "//////////8="},
    },  # fmt: skip
    "dtmf": {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "7"}},
    "mark": {"event": "mark", "streamSid": "MZ1", "mark": {"name": "prompt-1"}},
}
BROWSER = {
    "start": {"event": "start", "to": MUSTER, "from": "browser", "sampleRate": 16000},
    "dtmf": {"event": "dtmf", "digit": "7"},
    "mark": {"event": "mark", "name": "prompt-1"},
}


def paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a message a value can be replaced or removed."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


@st.composite
def shaped(draw, templates: dict[str, Any]) -> Any:
    """A valid message of some event with up to three fields replaced by any JSON value or removed."""
    message: Any = copy.deepcopy(templates[draw(st.sampled_from(sorted(templates)))])
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(paths(message))))
        if not path:
            return draw(JSON)
        parent = message
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    return message


def wire(message: Any) -> str:
    return json.dumps(message)


def decodes_or_refuses(serializer: Any, message: str | bytes) -> None:
    try:
        frame = serializer.decode(message)
    except ProtocolError as exc:
        assert str(exc) and len(str(exc)) < 300  # a reason, and one that fits a log line
        return
    assert isinstance(frame, FRAMES)
    if isinstance(frame, CallStart):
        assert frame.dialled is None or (isinstance(frame.dialled, str) and len(frame.dialled) <= 64)
        assert frame.caller is None or (isinstance(frame.caller, str) and len(frame.caller) <= 64)
    if isinstance(frame, AudioIn):
        assert len(frame.pcm) % 2 == 0


@FUZZ
@given(st.booleans(), st.lists(shaped(TWILIO), min_size=1, max_size=4))
def test_twilio_any_message_shape(start_first, messages):
    serializer = TwilioSerializer()
    if start_first:
        serializer.decode(wire(TWILIO["start"]))
    for message in messages:
        decodes_or_refuses(serializer, wire(message))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), st.integers(0, 5000).map(lambda n: "[" * n)))
def test_twilio_any_text_or_bytes(message):
    serializer = TwilioSerializer()
    serializer.decode(wire(TWILIO["start"]))
    decodes_or_refuses(serializer, message)
    decodes_or_refuses(TwilioSerializer(), message)


@FUZZ
@given(st.booleans(), st.lists(st.one_of(shaped(BROWSER), st.binary(max_size=64)), min_size=1, max_size=4))
def test_browser_any_message_shape(start_first, messages):
    serializer = BrowserSerializer()
    if start_first:
        serializer.decode(wire(BROWSER["start"]))
    for message in messages:
        decodes_or_refuses(serializer, message if isinstance(message, bytes) else wire(message))


# ---- over the wire: an in-process server on the real app --------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The app on the fakes, in a loop of its own so Hypothesis can drive it from a plain function."""
    loop = asyncio.new_event_loop()
    db = tmp_path_factory.mktemp("fuzz") / "ivr.db"

    async def start() -> tuple[TestClient, Runtime]:
        runtime = Runtime(load_settings(TEST_SETTINGS, env={}), open_storage(f"sqlite:///{db}"), FakeDialog())
        tuned(runtime)
        client = TestClient(TestServer(make_app(runtime)))
        await client.start_server()
        return client, runtime

    client, runtime = loop.run_until_complete(start())
    yield loop, client
    loop.run_until_complete(client.close())
    loop.run_until_complete(runtime.close())
    loop.close()


async def _json_or_text(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json() if resp.content_type == "application/json" else await resp.text()


TEXT_KEYS = st.sampled_from(["to", "from", "text", "dtmf", "no_input", "asr_confidence"]) | st.text(max_size=8)
TEXT_BODIES = st.one_of(
    st.dictionaries(TEXT_KEYS, JSON | st.text(alphabet="0123456789*#ABCDx", max_size=40), max_size=4),
    JSON,
    st.binary(max_size=100),
)


def test_text_api_any_body(server):
    loop, client = server

    async def create() -> str:
        resp = await client.post("/api/conversations", json={"to": MUSTER})
        return (await resp.json())["conversation_id"]

    cid = loop.run_until_complete(create())

    @FUZZ_WIRE
    @given(st.sampled_from(["/api/conversations", f"/api/conversations/{cid}/messages"]), TEXT_BODIES)
    def check(url, body):
        async def send() -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            async with client.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
                payload = await _json_or_text(resp)
                assert resp.status < 500, payload
                if resp.status >= 400:
                    assert isinstance(payload, dict) and payload["error"], payload

        loop.run_until_complete(send())

    check()


@dataclass(frozen=True)
class Raw:
    """A text message sent as it is, not as JSON (truncated, nested past the parser's limit, …)."""

    text: str


@pytest.mark.parametrize("path, templates", [("/media", TWILIO), ("/phone/ws", BROWSER)])
def test_media_socket_any_message_shape(server, path, templates):
    loop, client = server

    raw = st.builds(Raw, st.text(max_size=40) | st.integers(0, 3000).map(lambda n: "[" * n))

    @FUZZ_WIRE
    @given(st.booleans(), st.lists(st.one_of(shaped(templates), st.binary(max_size=64), raw), min_size=1, max_size=4))
    def check(start_first, messages):
        async def call() -> None:
            async with client.ws_connect(path) as ws:
                if start_first:
                    await ws.send_str(wire(templates["start"]))
                try:
                    for message in messages:
                        if isinstance(message, bytes):
                            await ws.send_bytes(message)
                        else:
                            await ws.send_str(message.text if isinstance(message, Raw) else wire(message))
                    await ws.send_str('{"event": "stop"}')  # every stream ends: a hang-up, or a refusal before it
                except ConnectionResetError:
                    pass  # the server closed the stream already: its close frame is read below
                while True:
                    msg = await ws.receive(timeout=15)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        break
                code, reason = ws.close_code, msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else None
                assert code not in (1006, 1011, None), (code, reason, messages)
                assert code == 1000 or reason, (code, messages)

        loop.run_until_complete(call())

    check()
