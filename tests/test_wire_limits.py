"""Hardening of the wire edge (review issue 17): malformed fields, unbounded text, per-call input without bounds.

Everything runs in process without Rasa or speech models: the real app
(`make_app`) and the real call session on a real SQLite storage, with a fake
dialog that answers every turn and fake ASR/TTS engines. Each test reproduces
one probe of the review.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.app import make_app
from ivr.audio.asr import AsrResult
from ivr.audio.codecs import codec_for
from ivr.audio.tts import SpeechChunk
from ivr.dialog.payloads import BotReply, DialogTurn
from ivr.errors import ProtocolError
from ivr.runtime import Runtime
from ivr.session.call import CallSession
from ivr.session.events import OutboundEvent
from ivr.session.frames import AudioIn, CallStart, DtmfIn
from ivr.session.limits import RealTimeGuard, TokenBucket, cut_text
from ivr.session.line import AsrAudio
from ivr.transports import text
from ivr.transports.browser import BrowserSerializer
from ivr.transports.twilio import TwilioSerializer
from ivr.transports.websocket import close_reason

MUSTER = "+4930123456"


# ---- fakes: a dialog that always answers, engines that need no models ------------------------------


class FakeDialog:
    """Answers every turn with `reply`; records what reached the NLU."""

    def __init__(self, reply: BotReply = BotReply("Hallo.")) -> None:
        self.reply = reply
        self.texts: list[str] = []

    async def turn(self, sender: str, text: str, slots=None, metadata=None, **options: Any) -> DialogTurn:
        self.texts.append(text)
        return DialogTurn(self.reply, intent="greet" if text == "/start_call" else "other", confidence=0.9)

    async def end(self, sender: str) -> None: ...

    async def close(self) -> None: ...


class FakeRecognizer:
    def __init__(self, final: str = "hallo") -> None:
        self.final = final
        self.gate: asyncio.Event | None = None  # set: accept() waits for it (a recognizer that fell behind)

    async def accept(self, pcm: bytes) -> str:
        if self.gate is not None:
            await self.gate.wait()
        return ""

    async def finish(self) -> AsrResult:
        return AsrResult(self.final, (), 0.9)

    def reset(self) -> None: ...

    def set_grammar(self, phrases) -> None: ...

    def release(self) -> None: ...


class FakeSynthesizer:
    """100 ms of silence per reply."""

    async def stream(self, text: str, rate: int) -> AsyncIterator[SpeechChunk]:
        yield SpeechChunk(text, b"\0\0" * (rate // 10), rate)


class Sink:
    """What the caller gets. With `supports_marks` it is a client that never echoes a mark."""

    def __init__(self, supports_marks: bool = False, sample_rate: int = 8000) -> None:
        self.supports_marks = supports_marks
        self.sample_rate = sample_rate
        self.events: list[dict[str, Any]] = []
        self.marks: list[str] = []

    async def send_audio(self, pcm: bytes) -> None: ...

    async def send_mark(self, name: str) -> None:
        self.marks.append(name)

    async def clear(self) -> None: ...

    async def send_event(self, event: OutboundEvent) -> None:
        self.events.append(event.to_wire())

    async def hangup(self, reason: str) -> None: ...


def tuned(runtime: Runtime, recognizer: FakeRecognizer | None = None, dialog: FakeDialog | None = None,
          **limits: Any) -> FakeDialog:  # fmt: skip
    """The runtime on fakes, with some limits changed; returns the dialog."""
    dialog = dialog or FakeDialog()
    runtime.dialog = dialog
    recognizer = recognizer or FakeRecognizer()
    runtime.recognizer = lambda language: recognizer  # type: ignore[method-assign]
    runtime.synthesizer = lambda voice: FakeSynthesizer()  # type: ignore[method-assign]
    runtime.settings = dataclasses.replace(
        runtime.settings, limits=dataclasses.replace(runtime.settings.limits, **limits)
    )
    return dialog


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def started_session(runtime: Runtime, sink: Sink | None = None) -> tuple[CallSession, Sink]:
    sink = sink or Sink()
    start = CallStart(f"t-{time.monotonic_ns()}", MUSTER, "+4917012345", sink.sample_rate, "media_stream")
    session = CallSession(runtime, sink, start)
    await session.begin()
    return session, sink


def rows(db: Path, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def start_message(**changes: Any) -> dict[str, Any]:
    start = {"streamSid": "MZ1", "callSid": f"CA{time.monotonic_ns()}",
             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
             "customParameters": {"to": MUSTER, "from": "+4917012"}}  # fmt: skip
    for path, value in changes.items():
        node = start
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return {"event": "start", "streamSid": "MZ1", "start": start}


def media(pcm: bytes) -> dict[str, Any]:
    payload = base64.b64encode(codec_for("audio/x-mulaw", 8000).encode(pcm)).decode()
    return {"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = 15.0) -> tuple[int, str, list[dict]]:
    """Reads until the server closes: (close code, reason, JSON events before it)."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, (msg.extra or "") if msg.type == aiohttp.WSMsgType.CLOSE else "", events


@pytest.fixture
async def client(aiohttp_client, runtime: Runtime):
    return await aiohttp_client(make_app(runtime))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ivr.db"  # the `runtime` fixture's database


# ---- 11: malformed media fields are protocol errors naming the field --------------------------------


@pytest.mark.parametrize(
    "message, error",
    [
        (start_message(mediaFormat__channels="x"), "start.mediaFormat.channels must be an integer"),
        (
            start_message(mediaFormat__sampleRate=None, mediaFormat__channels=[1]),
            "start.mediaFormat.channels must be an integer",
        ),
        (start_message(mediaFormat__sampleRate="fast"), "start.mediaFormat.sampleRate must be an integer"),
        (start_message(mediaFormat="abc"), "start.mediaFormat must be a JSON object"),
        (start_message(customParameters=[1]), "start.customParameters must be a JSON object"),
        (start_message(customParameters={"to": {"n": 1}}), "start.customParameters.to must be a string"),
        (start_message(customParameters={"to": 4930123456}), "start.customParameters.to must be a string"),
        (start_message(customParameters={"from": "1" * 65}), "start.customParameters.from is 65 characters long"),
        (start_message(callSid="C" * 200), "start.callSid is 200 characters long"),
        ({"event": "start", "start": "abc"}, "start must be a JSON object"),
    ],
)
def test_malformed_start_fields_are_named(message, error):
    serializer = TwilioSerializer()
    with pytest.raises(ProtocolError, match=error):
        serializer.decode(json.dumps(message))
    with pytest.raises(ProtocolError, match="'media' before 'start'"):
        serializer.decode(json.dumps(media(b"\0\0" * 160)))  # a refused start starts nothing


@pytest.mark.parametrize(
    "message, error",
    [
        ({"event": "media", "media": "abc"}, "media must be a JSON object, got a string"),
        ({"event": "media", "media": {"payload": 123}}, "media.payload must be a base64 string"),
        ({"event": "mark", "mark": {"name": ["x"]}}, "mark.name must be a string"),
        ({"event": "dtmf", "dtmf": {"digit": None}}, "dtmf.digit None is not a DTMF digit"),
    ],
)
def test_malformed_media_fields_are_named(message, error):
    serializer = TwilioSerializer()
    serializer.decode(json.dumps(start_message()))
    with pytest.raises(ProtocolError, match=error):
        serializer.decode(json.dumps(message))


def test_odd_length_l16_payload_is_a_protocol_error():
    serializer = TwilioSerializer()
    serializer.decode(json.dumps(start_message(mediaFormat={"encoding": "audio/l16", "sampleRate": 16000})))
    odd = {"event": "media", "media": {"payload": base64.b64encode(b"\0\0\0").decode()}}
    with pytest.raises(ProtocolError, match="media.payload: odd number of bytes"):
        serializer.decode(json.dumps(odd))


@pytest.mark.parametrize("message", ["[" * 100_000, '{"event": "start", "n": ' + "1" * 5000 + "}"])
@pytest.mark.parametrize("make", [TwilioSerializer, BrowserSerializer])
def test_json_the_parser_cannot_take_is_a_protocol_error(make, message):
    """Nesting beyond the recursion limit (RecursionError) and over-long integers (ValueError) are not JSONDecodeErrors."""
    with pytest.raises(ProtocolError, match="not JSON"):
        make().decode(message)


@pytest.mark.parametrize(
    "message, error",
    [
        ({"event": "start", "to": {"n": 1}}, "start.to must be a string"),
        ({"event": "start", "from": "1" * 100}, "start.from is 100 characters long"),
        ({"event": "start", "sampleRate": True}, "start.sampleRate must be 16000"),
    ],
)
def test_malformed_browser_start_is_named(message, error):
    serializer = BrowserSerializer()
    with pytest.raises(ProtocolError, match=error):
        serializer.decode(json.dumps(message))
    assert not serializer.started


def test_close_reason_is_cut_on_a_character_boundary():
    reason = close_reason("dtmf.digit " + "€" * 100)
    assert len(reason) <= 123
    reason.decode("utf-8")  # a cut multi-byte character would make clients drop the close frame


@pytest.mark.parametrize(
    "message, field",
    [
        (start_message(mediaFormat__channels="x"), "start.mediaFormat.channels"),
        (start_message(customParameters=[1]), "start.customParameters"),
        (start_message(mediaFormat={"encoding": "audio/l16", "sampleRate": "x"}), "start.mediaFormat.sampleRate"),
    ],
)
async def test_malformed_start_closes_with_a_reason_and_stores_nothing(client, runtime, db, message, field):
    tuned(runtime)
    async with client.ws_connect("/media") as ws:
        await ws.send_json(message)
        code, reason, _ = await closed(ws)
    assert code == 1003 and field in reason
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert rows(db, "select count(*) from calls") == [(0,)]
    assert runtime.active_calls == 0


async def test_malformed_media_mid_call_is_answered_and_the_call_goes_on(client, runtime, db):
    """One bad frame in a call is skipped with an error naming the field (docs/architecture.md); too many end it."""
    tuned(runtime)
    serializer_errors = []
    async with client.ws_connect("/phone/ws") as ws:
        await ws.send_json({"event": "start", "to": MUSTER})
        await ws.send_json({"event": "dtmf", "digit": {"x": 1}})
        while not serializer_errors:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["event"] == "error":
                serializer_errors.append(json.loads(msg.data)["message"])
        assert "dtmf.digit" in serializer_errors[0] and not ws.closed
        for _ in range(25):
            await ws.send_str('{"event": "dtmf", "digit": "x"}')
        code, reason, _ = await closed(ws)
    assert code == 1003 and "dtmf.digit" in reason
    await until(lambda: rows(db, "select end_reason from calls") == [("protocol_error",)], what="call ended")


async def test_a_failure_on_our_side_closes_with_1011_and_a_reason(client, runtime, monkeypatch):
    tuned(runtime)

    async def broken(call):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runtime.write_behind, "start_call", broken)
    async with client.ws_connect("/media") as ws:
        await ws.send_json(start_message())
        code, reason, _ = await closed(ws)
    assert code == 1011 and reason == "internal error"
    await until(lambda: runtime.active_calls == 0, what="session closed")


# ---- 8: media faster than real time ------------------------------------------------------------------


def test_real_time_guard_allows_a_burst_then_refuses():
    now = [0.0]
    guard = RealTimeGuard(3.0, clock=lambda: now[0])
    for _ in range(50 * 60):  # a minute of real-time 20 ms frames
        assert guard.add(0.02)
        now[0] += 0.02
    now[0] += 2.5
    assert all(guard.add(0.02) for _ in range(125))  # a 2.5 s catch-up after a network stall
    assert not all(guard.add(0.02) for _ in range(50))  # one more second at once is a flood
    assert guard.level_s > 3.0


async def test_media_much_faster_than_real_time_closes_the_stream(client, runtime, db):
    tuned(runtime, media_burst_s=2.0)
    async with client.ws_connect("/media") as ws:
        await ws.send_json(start_message(callSid="CAflood"))
        frame = json.dumps(media(b"\0\0" * 160))
        for _ in range(50 * 30):  # 30 s of audio, sent as fast as the socket takes it
            try:
                await ws.send_str(frame)
            except ConnectionResetError:
                break  # closed by the server
        code, reason, _ = await closed(ws)
    assert code == 1008 and "faster than real time" in reason and "limits.media_burst_s" in reason
    await until(lambda: rows(db, "select end_reason, ended_at is not null from calls") == [("protocol_error", 1)],
                what="call ended")  # fmt: skip


# ---- 8: the recognizer's backlog is bounded ----------------------------------------------------------


async def test_asr_backlog_is_bounded_when_the_recognizer_falls_behind(runtime):
    recognizer = FakeRecognizer()
    recognizer.gate = asyncio.Event()  # the recognizer never catches up during the test
    tuned(runtime, recognizer, asr_backlog_s=2.0)
    session, sink = await started_session(runtime)
    await until(lambda: not session.player.speaking, what="greeting played")
    session.endpointer.is_speech = lambda frame: True  # every frame is speech
    for _ in range(50 * 30):  # 30 s of audio, handed straight to the session (no transport pacing)
        await session.handle(AudioIn(b"\1\0" * 160))
    queued = sum(len(item.pcm) for item in list(session.line._asr_queue._queue) if isinstance(item, AsrAudio))  # type: ignore[attr-defined]
    assert 0 < queued <= 2.0 * 16000 * 2
    recognizer.gate.set()
    await session.close("caller_hangup")


# ---- 3: recognized text is bounded before the dialog -------------------------------------------------


async def test_recognized_text_is_cut_to_the_limit_before_the_dialog(runtime):
    said = ("bla " * 2000).strip()
    dialog = tuned(runtime, FakeRecognizer(said), max_text_chars=300)
    session, sink = await started_session(runtime)
    await until(lambda: not session.player.speaking, what="greeting played")
    voiced = [True] * 25 + [False] * 20  # half a second of speech, then the hangover
    session.endpointer.is_speech = lambda frame: voiced.pop(0) if voiced else False
    for _ in range(80):
        await session.handle(AudioIn(b"\1\0" * 160))
    await until(lambda: len(dialog.texts) >= 2, what="caller turn")
    assert dialog.texts[1].startswith("bla") and len(dialog.texts[1]) <= 300
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    lines = [u for u in await runtime.storage.transcript(session.call_id) if u.speaker == "caller"]
    assert len(lines[0].text) <= 300 and lines[0].meta["cut_from_chars"] == len(said)
    await session.close("caller_hangup")


def test_cut_text_keeps_whole_words():
    assert cut_text("one two three", 9) == "one two"
    assert cut_text("x" * 50, 10) == "x" * 10
    assert cut_text("short", 10) == "short"


# ---- 8: keys are rate-limited and bounded ------------------------------------------------------------


async def test_a_flood_of_keys_makes_a_bounded_number_of_dialog_turns(runtime):
    dialog = tuned(runtime, dtmf_turns_per_s=0.01, dtmf_burst=3)
    session, sink = await started_session(runtime)
    await until(lambda: not session.player.speaking, what="greeting played")
    for _ in range(50):
        await session.handle(DtmfIn("5"))
    await until(lambda: not session.line.tasks, what="key tasks done")
    assert dialog.texts.count("/nlu_fallback") == 3  # the burst; the other 47 keys were dropped
    assert session.bot.no_input_armed or session.player.speaking  # the call does not go silent
    await session.close("caller_hangup")


async def test_collected_digits_are_bounded(runtime):
    dialog = tuned(runtime, dialog=FakeDialog(BotReply("Ihre Nummer?", expect="digits")), max_dtmf_digits=8)
    session, sink = await started_session(runtime)
    await until(lambda: not session.player.speaking, what="greeting played")
    for key in "1234567890" * 3 + "#":
        await session.handle(DtmfIn(key))
    await until(lambda: not session.line.tasks and len(dialog.texts) > 1, what="digit turns")
    entries = dialog.texts[1:]
    assert entries and all(len(entry) <= 8 for entry in entries)
    assert "".join(entries) == "1234567890" * 3  # nothing lost, only cut into entries
    await session.close("caller_hangup")


def test_token_bucket():
    now = [0.0]
    bucket = TokenBucket(1.0, 2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 1.0
    assert [bucket.take(), bucket.take()] == [True, False]


# ---- 8: a client that never echoes marks still gets a no-input prompt --------------------------------


async def test_no_input_fires_when_the_client_never_echoes_marks(runtime):
    dialog = tuned(runtime)
    timeouts = dataclasses.replace(runtime.settings.timeouts, no_input_s=0.2)
    runtime.settings = dataclasses.replace(runtime.settings, timeouts=timeouts)
    session, sink = await started_session(runtime, Sink(supports_marks=True))
    await until(lambda: "/no_input" in dialog.texts, timeout=15, what="a no-input turn")
    assert sink.marks  # marks were asked for, none came back
    await session.close("caller_hangup")


# ---- 11 and 3: the text API ------------------------------------------------------------------------


async def post(client, url: str, body: Any = None, data: Any = None) -> tuple[int, Any]:
    resp = await client.post(url, json=body) if data is None else await client.post(url, data=data)
    payload = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, payload


async def open_conversation(client) -> str:
    status, turn = await post(client, "/api/conversations", {"to": MUSTER, "from": "+4917099"})
    assert status == 200, turn
    return turn["conversation_id"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"to": 123}, "to"),
        ({"to": ["+49"]}, "to"),
        ({"from": {"n": 1}}, "from"),
        ({"to": MUSTER, "from": "9" * 65}, "from"),
    ],
)
async def test_malformed_create_is_a_400_naming_the_field_and_stores_nothing(client, runtime, db, body, field):
    tuned(runtime)
    status, error = await post(client, "/api/conversations", body)
    assert status == 400 and error["field"] == field and field in error["error"]
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert rows(db, "select count(*) from calls") == [(0,)]
    assert not client.app[text.CONVERSATIONS]


@pytest.mark.parametrize(
    "body, field, wanted",
    [
        ({"text": 123}, "text", "must be a string"),
        ({"text": "x" * 501}, "text", "at most 500"),
        ({"dtmf": "1" * 33}, "dtmf", "at most 32"),
        ({"dtmf": "12a"}, "dtmf", "'a' is not a key"),
        ({"dtmf": 5}, "dtmf", "non-empty string"),
        ({"text": "hallo", "asr_confidence": True}, "asr_confidence", "from 0 to 1"),
        ({"txt": "x"}, "text", "send"),
    ],
)
async def test_bad_messages_are_a_400_naming_the_field(client, runtime, body, field, wanted):
    dialog = tuned(runtime)
    cid = await open_conversation(client)
    status, error = await post(client, f"/api/conversations/{cid}/messages", body)
    assert status == 400 and error["field"] == field and wanted in error["error"]
    assert dialog.texts == ["/start_call"]  # nothing reached the NLU


async def test_text_up_to_the_limit_reaches_the_dialog(client, runtime):
    dialog = tuned(runtime)
    cid = await open_conversation(client)
    status, _ = await post(client, f"/api/conversations/{cid}/messages", {"text": "x" * 500})
    assert status == 200 and dialog.texts[-1] == "x" * 500


async def test_a_body_over_the_limit_is_a_413(client, runtime, db):
    dialog = tuned(runtime)
    cid = await open_conversation(client)
    status, error = await post(client, f"/api/conversations/{cid}/messages", {"dtmf": "1" * 400_000})
    assert status == 413 and error["limit"] == text.MAX_BODY_BYTES
    status, error = await post(
        client, f"/api/conversations/{cid}/messages", data=b'{"text": "' + b"x" * 900_000 + b'"}'
    )
    assert status == 413
    assert dialog.texts == ["/start_call"]
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert all(len(r[0]) < 100 for r in rows(db, "select text from utterances"))


async def test_not_json_is_a_json_400(client, runtime):
    tuned(runtime)
    for data in (b"nope", b"\xff\xfe", b"[" * 50_000):
        status, error = await post(client, "/api/conversations", data=data)
        assert status == 400 and "JSON" in error["error"]


async def test_idle_text_conversations_are_ended(client, runtime, db):
    tuned(runtime)
    assert not client.app[text.IDLE_SWEEPER].done()  # the sweeper runs with the app
    idle, fresh = await open_conversation(client), await open_conversation(client)
    idle_s = runtime.settings.limits.text_idle_s
    later = time.monotonic() + idle_s + 1  # looking from the future: `idle` was last used idle_s + 1 ago ...
    client.app[text.CONVERSATIONS][fresh].last_active = later - 1  # ... and `fresh` a second ago
    assert await text.expire_idle(client.app, idle_s, now=lambda: later) == 1
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert rows(db, "select call_id, end_reason, ended_at is not null from calls where ended_at is not null") == [
        (idle, "idle_timeout", 1)
    ]
    assert "HANGUP" in [e.event for e in await runtime.storage.events(call_id=idle)]
    status, _ = await post(client, f"/api/conversations/{idle}/messages", {"text": "hallo"})
    assert status == 404
    status, _ = await post(client, f"/api/conversations/{fresh}/messages", {"text": "hallo"})
    assert status == 200


async def test_a_start_the_dialog_cannot_answer_leaves_no_open_conversation(client, runtime, db):
    """The `runtime` fixture's dialog is on the discard port: the greeting turn is a handoff at once."""
    status, turn = await post(client, "/api/conversations", {"to": MUSTER})
    assert status == 200 and turn["ended"]
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert rows(db, "select end_reason from calls") == [("handoff",)]
    assert not client.app[text.CONVERSATIONS]


async def test_a_start_that_fails_leaves_no_open_conversation(client, runtime, db, monkeypatch):
    tuned(runtime)

    async def broken(*args, **kwargs):
        raise RuntimeError("dialog exploded")

    monkeypatch.setattr(runtime.dialog, "turn", broken)
    resp = await client.post("/api/conversations", json={"to": MUSTER})
    assert resp.status == 500
    assert not client.app[text.CONVERSATIONS]
    await runtime.write_behind.drain(10)  # call-path writes are stored behind the call
    assert rows(db, "select end_reason from calls") == [("start_failed",)]
