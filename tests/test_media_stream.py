"""Whole calls through the Media Streams endpoint, on the real engines.

`ivr call`'s Caller plays the provider: real-time μ-law audio, DTMF, marks.
Caller speech is made by the Piper voice; the Vosk model available here is
Korean, so the tests assert that speech was recognized into some text and
answered, not what the text is.
"""

import asyncio
import io
import json
import sqlite3
import time

import aiohttp
import numpy as np

from ivr.caller import Caller, parse_steps
from tests.agents import PASSWORDS, basic
from tests.conftest import start_ivr
from tests.speech import silence, speech, write_wav


def caller(server, to="+442071234567", settle=0.8, timeout=90.0) -> Caller:
    return Caller(f"{server.ws_url}/media", to, "+4917012345", io.StringIO(), settle, timeout, auth=basic())


def energy(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(float)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


async def test_a_whole_call(ivr_server, tmp_path):
    wav = write_wav(tmp_path / "turn.wav", silence(0.3) + speech("What are your opening hours?") + silence(0.3))
    call = caller(ivr_server)
    result = await call.run(parse_steps([str(wav)]), None)
    assert result["hangup"] is None  # we hung up (stop), not the server
    # The greeting arrived as real audio, and so did the answer to the caller's turn.
    assert len(call.state.bot_pcm) / 2 / 8000 > 3.0 and energy(bytes(call.state.bot_pcm)) > 300
    turn = result["turns"][0]
    assert turn["latency_ms"] > 0
    lines = result["transcript"]
    # The greeting is two lines: the AI disclosure (never cut) and the menu (cut by voice and keys).
    assert [line["speaker"] for line in lines[:4]] == ["bot", "bot", "caller", "bot"]
    assert "Acme Supplies Ltd" in lines[0]["text"] and "automated assistant" in lines[0]["text"]
    assert lines[0]["meta"]["barge_in_allowed"] is False and lines[1]["meta"]["barge_in_allowed"] is True
    caller_line = lines[2]
    assert caller_line["text"] and 0 < caller_line["asr_confidence"] <= 1  # Vosk recognized something
    assert caller_line["intent"]  # and Rasa classified it
    assert lines[3]["text"] and "latency" in lines[3]["meta"]
    latency = lines[3]["meta"]["latency"]
    # An open answer: the 300 ms hangover after webrtcvad's last voiced frame, plus its tail after the last word.
    assert 300 <= latency["endpoint_ms"] <= 600 and latency["total_ms"] >= latency["endpoint_ms"]
    row = (
        sqlite3.connect(ivr_server.db)
        .execute("select end_reason, ended_at, tenant from calls where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert row[0] == "caller_hangup" and row[1] and row[2] == "+442071234567"


async def test_dtmf_zero_hands_back_to_telephony_with_the_handoff_id(ivr_server):
    """A tenant whose provider has the agents (`handoff: telephony`): the stream ends, the package stays."""
    call = caller(ivr_server, to="+4930888888")
    result = await call.run(parse_steps(["dtmf:0"]), None)
    assert result["hangup"] and "1000" in result["hangup"]
    texts = [(line["speaker"], line["text"]) for line in result["transcript"]]
    assert ("caller", "[DTMF 0]") in texts
    row = (
        sqlite3.connect(ivr_server.db)
        .execute("select end_reason from calls where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert row == ("handoff:dtmf_agent",)
    handoff = (
        sqlite3.connect(ivr_server.db)
        .execute("select reason, package from handoffs where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert handoff[0] == "dtmf_agent"
    package = json.loads(handoff[1])
    assert package["company"] == "Ohne Katalog AG" and package["transcript"][0]["speaker"] == "bot"
    assert [i["intent"] for i in package["intents"]] == ["request_human"]  # keys count as intents too
    notes = [line for line in result["transcript"] if line["text"] == "[handoff]"]
    assert notes and notes[0]["meta"]["handoff_id"]  # what the provider gets to fetch the package with


async def test_dtmf_zero_with_no_agent_logged_in_takes_a_callback_request(ivr_server):
    """Our own queue, nobody staffing it: the caller hears so and is called back, never left in silence."""
    call = caller(ivr_server, to="+4930123456")
    result = await call.run(parse_steps(["dtmf:0"]), None)
    assert result["hangup"]
    row = (
        sqlite3.connect(ivr_server.db)
        .execute("select end_reason from calls where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert row == ("queue_callback:dtmf_agent",)
    assert any("kein Mitarbeiter" in t for t in bot_lines(result))
    callback = (
        sqlite3.connect(ivr_server.db)
        .execute("select number, reason from callbacks where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert callback == ("+4917012345", "dtmf_agent")


def bot_lines(result) -> list[str]:
    return [line["text"] for line in result["transcript"] if line["speaker"] == "bot"]


async def test_keypad_menu_and_a_number_finished_with_hash(ivr_server):
    """Key 2 on the main menu asks for an order number; its digits are collected into one answer."""
    call = caller(ivr_server, to="+4930123456")
    result = await call.run(parse_steps(["dtmf:2", "dtmf:271828#"]), None)
    caller_lines = [line["text"] for line in result["transcript"] if line["speaker"] == "caller"]
    assert caller_lines == ["[DTMF 2]", "[DTMF 271828#]"]
    assert "Bestellnummer" in bot_lines(result)[2]  # after the greeting's two lines: disclosure, menu
    assert "2 7 1, 8 2 8 ist unterwegs" in bot_lines(result)[3]


async def test_keypad_number_ends_after_the_inter_digit_timeout(ivr_server):
    call = caller(ivr_server, to="+4930123456")
    result = await call.run(parse_steps(["dtmf:2", "dtmf:271828"]), None)
    caller_lines = [line["text"] for line in result["transcript"] if line["speaker"] == "caller"]
    assert caller_lines == ["[DTMF 2]", "[DTMF 271828]"]
    assert "unterwegs" in bot_lines(result)[3]


async def test_silence_gets_reprompts_then_a_person(ivr_server):
    call = caller(ivr_server, to="+4930123456", settle=0.5)
    result = await call.run(parse_steps(["wait:60"]), None)
    row = (
        sqlite3.connect(ivr_server.db)
        .execute("select end_reason from calls where call_id=?", (call.call_id,))
        .fetchone()
    )
    assert row == ("queue_callback:no_input",)  # nobody staffs the queue in this test
    no_inputs = [line for line in result["transcript"] if line["text"] == "[no input]"]
    assert len(no_inputs) == 3


async def test_barge_in_cuts_the_prompt_and_records_what_was_heard(ivr_server, tmp_path):
    # "5" has no meaning here: Rasa's fallback answer is long enough to talk over.
    wav = write_wav(tmp_path / "barge.wav", speech("Hello? Hello, I need help with my order please.") + silence(0.5))
    call = caller(ivr_server)
    result = await call.run(parse_steps(["dtmf:5", str(wav)]), 1.0)
    interrupted = [
        line for line in result["transcript"] if line["speaker"] == "bot" and line["meta"].get("interrupted")
    ]
    assert interrupted, [(line["speaker"], line["text"], line["meta"]) for line in result["transcript"]]
    assert len(interrupted[0]["meta"]["heard"]) < len(interrupted[0]["text"])
    assert "clear" in call.out.getvalue()


async def test_greeting_cannot_be_barged_into(ivr_server, tmp_path):
    wav = write_wav(tmp_path / "early.wav", speech("Hello hello hello, is anyone there?"))
    call = caller(ivr_server)
    call_task = asyncio.create_task(call.run([], None))
    while call.state.bot_media_frames < 25:  # half a second into the greeting
        await asyncio.sleep(0.02)
    from ivr.caller import read_wav

    for i in range(0, len(pcm := read_wav(wav)), 320):
        call._outgoing.put_nowait(pcm[i : i + 320].ljust(320, b"\x00"))
    result = await call_task
    assert "clear" not in call.out.getvalue()
    greeting = result["transcript"][0]
    assert greeting["speaker"] == "bot" and not greeting["meta"].get("interrupted")
    assert greeting["end"] - greeting["start"] > 3.0  # played to the end


async def test_bad_messages_do_not_break_the_call_or_the_server(ivr_server):
    async with aiohttp.ClientSession() as http:
        # A wrong codec is refused at start with a reason; the socket is closed.
        async with http.ws_connect(f"{ivr_server.ws_url}/media") as ws:
            start = {
                "streamSid": "MZx",
                "callSid": "CAbadcodec",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 16000},
            }
            await ws.send_json({"event": "start", "start": start})
            await ws.receive()
            assert ws.closed and ws.close_code == 1003
        # Garbage in the middle of a call is logged and skipped; the call goes on.
        call = caller(ivr_server, to="+4930123456")
        task = asyncio.create_task(call.run(parse_steps(["dtmf:0"]), None))
        await asyncio.sleep(0.5)
        async with http.ws_connect(f"{ivr_server.ws_url}/media") as ws:
            await ws.send_str("{not json")
            await ws.receive()
            assert ws.close_code == 1003  # garbage before start ends that stream only
        result = await task
    assert result["hangup"] and ("caller", "[DTMF 0]") in [
        (line["speaker"], line["text"]) for line in result["transcript"]
    ]
    log = [json.loads(row) for row in ivr_server.log.read_text().splitlines() if row.startswith("{")]
    assert any(e["event"] == "transport.bad_message" and "not JSON" in e["error"] for e in log)


async def test_dropped_connection_mid_prompt_is_cleaned_up_and_stored(ivr_server):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{ivr_server.ws_url}/media") as ws:
            start = {"streamSid": "MZdrop", "callSid": "CAdrop1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                     "customParameters": {"to": "+4930123456"}}  # fmt: skip
            await ws.send_json({"event": "start", "start": start})
            for _ in range(30):  # wait for greeting audio, then vanish without `stop`
                msg = await ws.receive()
                if json.loads(msg.data)["event"] == "media":
                    break
        await asyncio.sleep(1.0)
        async with http.get(
            f"{ivr_server.url}/api/calls", params={"provider_call_id": "CAdrop1"}, auth=basic()
        ) as resp:
            (call,) = (await resp.json())["calls"]
        async with http.get(f"{ivr_server.url}/api/calls/{call['call_id']}", auth=basic()) as resp:
            stored = await resp.json()
        async with http.get(f"{ivr_server.url}/healthz") as resp:
            health = await resp.json()
    assert stored["call"]["end_reason"] == "connection_lost" and stored["call"]["ended_at"]
    greeting = stored["transcript"][0]
    assert greeting["speaker"] == "bot" and greeting["meta"]["interrupted"] is True
    assert health["status"] == "ok"


async def test_dialog_engine_down_gives_a_clear_message(rasa_url, tmp_path):
    dead = start_ivr("http://127.0.0.1:9", tmp_path)  # nothing listens on the discard port
    try:
        call = caller(dead, to="+4930123456")
        result = await call.run([], None)
        assert result["hangup"]
        assert energy(bytes(call.state.bot_pcm)) > 300  # the apology was spoken
        texts = [line["text"] for line in result["transcript"]]
        assert any("technisches Problem" in t for t in texts) and "[dialog unavailable]" in texts
        # Never a dead end: handed to the queue, and with nobody there a callback request is taken.
        assert any("kein Mitarbeiter" in t for t in texts) and any("zurück" in t for t in texts)
    finally:
        dead.proc.terminate()
        dead.proc.wait(30)


async def test_a_start_naming_a_live_calls_id_cannot_touch_that_call(ivr_server):
    """Hardening finding 1. Before, the call id was the client's `callSid`: a second stream started with a
    live call's CallSid ended that call, logged its hang-up under the second stream's tenant, and wiped its
    dialog state. Now every stream gets an id of the server's, and the CallSid is only recorded."""
    victim = caller(ivr_server, to="+442071234567")
    intruder = caller(ivr_server, to="+4930123456")
    intruder.call_sid = victim.call_sid
    victim_run = asyncio.create_task(victim.run(parse_steps(["wait:4", "dtmf:*"]), None))
    await asyncio.sleep(2)  # the victim is greeted meanwhile
    await intruder.run(parse_steps([]), None)
    result = await victim_run
    db = sqlite3.connect(ivr_server.db)
    rows = db.execute("select call_id, tenant, end_reason from calls where provider_call_id=? order by started_at",
                      (victim.call_sid,)).fetchall()  # fmt: skip
    assert [(tenant, reason) for _, tenant, reason in rows] == [
        ("+442071234567", "caller_hangup"),
        ("+4930123456", "caller_hangup"),
    ]
    assert rows[0][0] == victim.call_id != rows[1][0] and victim.call_sid not in (rows[0][0], rows[1][0])
    hangups = db.execute(
        "select tenant from call_events where call_id=? and event='HANGUP'", (victim.call_id,)
    ).fetchall()
    assert hangups == [("+442071234567",)]  # once, at the victim's own hang-up, under its own tenant
    # The victim's dialog went on in its own tenant's language: `*` repeated its English prompt.
    bot = [line["text"] for line in result["transcript"] if line["speaker"] == "bot"]
    assert len(bot) >= 2 and "How can I help" in bot[-1]


class _KeyInTheGreeting(Caller):
    """Presses 0 one second into the greeting; hangs up once `rang` is set."""

    def __init__(self, server, rang: asyncio.Event) -> None:
        super().__init__(f"{server.ws_url}/media", "+4930123456", "+4917012345", io.StringIO(), 0.8, 60.0, auth=basic())
        self.rang = rang
        self.key_at = 0.0

    async def _script(self, ws, steps, barge_in_after_s) -> None:
        while self.state.bot_media_frames == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        self.key_at = time.time()
        await ws.send_json({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": {"digit": "0"}})
        await asyncio.wait_for(self.rang.wait(), 30)
        await asyncio.sleep(1.5)  # the handoff sentence has begun


async def test_zero_in_the_greeting_rings_a_free_agent_as_the_disclosure_ends(ivr_server):
    """Issue 18: the disclosure plays to its end, the key acts then (cutting the menu), and a free agent
    is offered the call while the caller hears the handoff sentence, before any queue announcement."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        login = {"username": "anna", "password": PASSWORDS["anna"]}
        async with http.post(f"{ivr_server.url}/agent/login", json=login) as resp:
            assert resp.status == 200
        async with http.ws_connect(f"{ivr_server.ws_url}/agent/ws") as agent:
            await agent.send_json({"type": "state", "state": "available"})
            while (await agent.receive_json(timeout=10)).get("state") != "available":
                pass
            rang = asyncio.Event()
            call = _KeyInTheGreeting(ivr_server, rang)
            running = asyncio.create_task(call.run([], None))
            while (offer := await agent.receive_json(timeout=40)).get("type") != "offer":
                pass
            offered_at = time.time()
            rang.set()
            await agent.send_json({"type": "decline", "call_id": offer["call_id"]})
            result = await running
    assert offer["package"]["reason"] == "dtmf_agent"
    lines = result["transcript"]
    disclosure, menu = lines[0], lines[1]
    assert disclosure["speaker"] == menu["speaker"] == "bot"
    assert "automatischen Sprachassistenten" in disclosure["text"] and not disclosure["meta"].get("interrupted")
    assert menu["meta"]["interrupted"] is True  # the key cut the menu
    assert disclosure["start"] < call.key_at < disclosure["end"]  # pressed during the disclosure
    key = next(line for line in lines if line["text"] == "[DTMF 0]")
    assert key["start"] >= disclosure["end"] - 0.1  # acted on when the disclosure ended, not before
    handoff = next(line for line in lines if line["text"].startswith("Einen Moment bitte"))
    assert offered_at < handoff["end"]  # the agent rang while the caller heard the handoff sentence
    assert not any("Bitte bleiben Sie in der Leitung" in line["text"] for line in lines if line["start"] < offered_at)
