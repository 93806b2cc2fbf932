"""Interop: real SIP phones (baresip, linphonec) call `ivr serve --sip-port`, with the real dialog (Rasa).

The phones play a WAV as their microphone and record what they hear. The
checks: the greeting arrives (duration and energy of what the phone
recorded), keys pressed on the phone drive the dialog (an order status
looked up by keypad), BYE from either side ends the call cleanly, and a
handoff in `telephony` mode becomes a blind transfer (REFER) that the phone
carries out to the agent line, with the handoff id. The phones' own RTCP
reports reach the IVR and end up in the call's MEDIA_QUALITY event.

What the phone heard is checked by its energy and duration, and run
through Vosk: with the test's (Korean) model it must come out as words;
with a German model and voice configured (IVR_ASR_MODEL_DE, IVR_TTS_VOICE_DE)
the greeting must come out as the company's name.
"""

from __future__ import annotations

import asyncio
import audioop
import json
import os
import sqlite3
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.asr import Recognizer, VoskModels
from ivr.audio.codecs import rms
from ivr.localhost import free_port
from ivr.models.catalogue import locate
from tests.conftest import MODEL_ENV, TEST_SETTINGS, start_ivr
from tests.phones import Baresip, Linphone, TransferTarget, missing
from tests.speech import silence, write_wav

MUSTER = "+4930123456"
TELEPHONY_TENANT = "+4930888888"  # handoff: telephony in the test settings


@pytest.fixture(scope="module")
def agent_line():
    target = TransferTarget()
    yield target
    target.close()


@pytest.fixture(scope="module")
def sip_server(rasa_url, dialog_db, agent_line, tmp_path_factory):
    work = tmp_path_factory.mktemp("sip")
    settings = work / "ivr.sip.yml"
    settings.write_text(TEST_SETTINGS.read_text() + (
        "\nsip:\n"
        "  rtp_ports: null\n"
        f"  transfer_to: \"sip:{{queue}}@127.0.0.1:{agent_line.port}\"\n"
        "  transfer_timeout_s: 15\n"
    ))  # fmt: skip
    port = free_port()
    server = start_ivr(rasa_url, work, settings=settings, db_url=dialog_db, args=["--sip-port", str(port)])
    server.sip_port = port
    try:
        yield server
    finally:
        server.proc.terminate()
        server.proc.wait(30)


@pytest.fixture
def quiet_microphone(tmp_path: Path) -> Path:
    """60 s of near-silence (a little noise, like a real line) at 8 kHz: the phones hang up when their file ends."""
    noise = (np.random.default_rng(1).normal(0, 30, 8000 * 60)).astype(np.int16).tobytes()
    return write_wav(tmp_path / "mic.wav", noise + silence(0, 8000), rate=8000)


def call_rows(db_url: str, dialled: str, since: float) -> list[tuple]:
    with sqlite3.connect(db_url[len("sqlite:///") :]) as db:
        return db.execute(
            "select call_id, caller, end_reason, channel from calls where dialled = ? and started_at >= ? order by started_at",
            (dialled, since),
        ).fetchall()


def lines(db_url: str, call_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db_url[len("sqlite:///") :]) as db:
        return db.execute("select speaker, text from utterances where call_id = ? order by id", (call_id,)).fetchall()


def wait_for_line(db_url: str, call_id: str, speaker: str, needle: str, timeout: float = 30) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lines(db_url, call_id)
        if any(s == speaker and needle in t for s, t in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {speaker} line with {needle!r} within {timeout} s: {lines(db_url, call_id)}")


def the_call(db_url: str, dialled: str, since: float, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = call_rows(db_url, dialled, since)
        if rows:
            return rows[-1][0]
        time.sleep(0.2)
    raise AssertionError(f"no call to {dialled} stored")


def wait_ended(db_url: str, call_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db_url[len("sqlite:///") :]) as db:
            (reason,) = db.execute("select end_reason from calls where call_id = ?", (call_id,)).fetchone()
        if reason:
            return reason
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} not ended")


def media_quality(db_url: str, call_id: str, timeout: float = 15) -> dict:
    """The MEDIA_QUALITY event the IVR logs when a SIP call's media ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db_url[len("sqlite:///") :]) as db:
            row = db.execute(
                "select data from call_events where call_id = ? and event = 'MEDIA_QUALITY'", (call_id,)
            ).fetchone()
        if row:
            return json.loads(row[0])
        time.sleep(0.2)
    raise AssertionError(f"no MEDIA_QUALITY event for {call_id}")


def transcribe(path: Path, model_spec: str) -> str:
    """What Vosk recognizes in a phone's recording (resampled from the line's 8 kHz to 16 kHz)."""
    with wave.open(str(path)) as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    pcm16k, _ = audioop.ratecv(pcm, 2, 1, rate, 16000, None)
    recognizer = Recognizer(VoskModels().get(locate("vosk", model_spec, "/nonexistent")))

    async def run() -> str:
        for i in range(0, len(pcm16k), 3200):
            await recognizer.accept(pcm16k[i : i + 3200])
        return (await recognizer.finish()).text

    return asyncio.run(run())


def speech_seconds(path: Path) -> tuple[float, float]:
    """(seconds of frames louder than a quiet line, loudest frame RMS) of a recording."""
    with wave.open(str(path)) as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    frame = rate // 50 * 2
    levels = [rms(pcm[i : i + frame]) for i in range(0, len(pcm) - frame, frame)]
    return sum(level > 300 for level in levels) * 0.02, max(levels, default=0.0)


@pytest.mark.skipif(bool(missing("baresip", "baresip")), reason=missing("baresip", "baresip") or "")
def test_baresip_hears_the_greeting_and_looks_up_an_order_by_keypad(sip_server, dialog_db, quiet_microphone, tmp_path):
    since = time.time()
    phone = Baresip(tmp_path / "baresip", quiet_microphone)
    try:
        phone.dial(f"sip:{MUSTER}@127.0.0.1:{sip_server.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        call_id = the_call(dialog_db, MUSTER, since)
        wait_for_line(dialog_db, call_id, "bot", "Muster Versand")
        time.sleep(1.0)
        phone.keys("2")
        wait_for_line(dialog_db, call_id, "bot", "Bestellnummer")
        time.sleep(1.0)
        phone.keys("271828#")
        transcript = wait_for_line(dialog_db, call_id, "bot", "unterwegs", timeout=40)
        closed = phone.hang_up()  # BYE from the phone
        assert "reset by user" in str(closed.get("param", "")).lower() or closed.get("type") == "CALL_CLOSED"
    finally:
        phone.close()
    assert ("caller", "[DTMF 2]") in transcript and ("caller", "[DTMF 271828#]") in transcript
    assert wait_ended(dialog_db, call_id) == "caller_hangup"
    (row,) = [r for r in call_rows(dialog_db, MUSTER, since) if r[0] == call_id]
    assert row[3] == "sip" and row[1] == "tester"
    heard = phone.heard_wav
    assert heard is not None, "baresip wrote no recording"
    loud_s, peak = speech_seconds(heard)
    assert loud_s > 4.0 and peak > 1500, (loud_s, peak)  # the greeting and two answers, at speech level
    assert len(transcribe(heard, MODEL_ENV["IVR_ASR_MODEL"]).split()) >= 5  # speech, not just noise
    # baresip's RTCP reached us and echoed our sender reports: the round trip was measured; loopback loses nothing.
    quality = media_quality(dialog_db, call_id)
    assert quality["rtcp_received"] >= 1 and quality["rtt_ms"] is not None and quality["rtt_ms"] < 500, quality
    assert quality["loss_pct"] == 0 and quality["far_end_loss_pct"] == 0 and quality["far_end_jitter_ms"] < 20, quality
    assert quality["concealed_packets"] == 0, quality  # the key events' packets are not taken for lost audio


@pytest.mark.skipif(bool(missing("baresip", "baresip")), reason=missing("baresip", "baresip") or "")
def test_baresip_caller_understands_the_german_greeting(sip_server, dialog_db, quiet_microphone, tmp_path):
    asr, voice = os.environ.get("IVR_ASR_MODEL_DE"), os.environ.get("IVR_TTS_VOICE_DE")
    if not (asr and voice):
        pytest.skip(
            "needs a German Vosk model and Piper voice: set IVR_ASR_MODEL_DE and IVR_TTS_VOICE_DE (ivr models pull de)"
        )
    since = time.time()
    phone = Baresip(tmp_path / "baresip", quiet_microphone)
    try:
        phone.dial(f"sip:{MUSTER}@127.0.0.1:{sip_server.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        wait_for_line(dialog_db, the_call(dialog_db, MUSTER, since), "bot", "Muster Versand")
        time.sleep(8.0)  # the whole greeting
        phone.hang_up()
    finally:
        phone.close()
    assert phone.heard_wav is not None, "baresip wrote no recording"
    heard = transcribe(phone.heard_wav, asr)
    assert "muster" in heard and "versand" in heard, heard


@pytest.mark.skipif(bool(missing("linphonec", "linphone-cli")), reason=missing("linphonec", "linphone-cli") or "")
def test_linphone_looks_up_an_order_by_keypad_and_hangs_up(sip_server, dialog_db, quiet_microphone, tmp_path):
    since = time.time()
    phone = Linphone(tmp_path / "linphone", quiet_microphone)
    try:
        phone.dial(f"sip:{MUSTER}@127.0.0.1:{sip_server.sip_port}")
        phone.wait_for(r"Call \d+ with .* connected\.")
        call_id = the_call(dialog_db, MUSTER, since)
        wait_for_line(dialog_db, call_id, "bot", "Muster Versand")
        phone.keys("2")
        wait_for_line(dialog_db, call_id, "bot", "Bestellnummer")
        phone.keys("271828#")  # linphonec sends one key per second
        transcript = wait_for_line(dialog_db, call_id, "bot", "unterwegs", timeout=40)
        phone.send("terminate")
        phone.wait_for(r"Call \d+ with .* ended")
    finally:
        phone.close()
    assert ("caller", "[DTMF 2]") in transcript and ("caller", "[DTMF 271828#]") in transcript
    assert wait_ended(dialog_db, call_id) == "caller_hangup"
    loud_s, peak = speech_seconds(phone.heard_wav)
    assert loud_s > 4.0 and peak > 1500, (loud_s, peak)
    quality = media_quality(dialog_db, call_id)
    assert quality["rtcp_received"] >= 1 and quality["rtt_ms"] is not None and quality["rtt_ms"] < 500, quality
    assert quality["loss_pct"] == 0 and quality["far_end_loss_pct"] == 0, quality


@pytest.mark.skipif(bool(missing("baresip", "baresip")), reason=missing("baresip", "baresip") or "")
def test_baresip_presses_0_and_is_transferred_to_the_agent_line_with_the_handoff_id(
    sip_server, dialog_db, agent_line, quiet_microphone, tmp_path
):
    since = time.time()
    before = len(agent_line.requests)
    phone = Baresip(tmp_path / "baresip", quiet_microphone)
    try:
        phone.dial(f"sip:{TELEPHONY_TENANT}@127.0.0.1:{sip_server.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        call_id = the_call(dialog_db, TELEPHONY_TENANT, since)
        wait_for_line(dialog_db, call_id, "bot", "Willkommen")
        phone.keys("0")
        # The IVR REFERs the phone to the agent line; the phone calls it and the IVR hangs up (BYE from the IVR).
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not any(r.method == "INVITE" for r in agent_line.requests[before:]):
            time.sleep(0.2)
        reason = wait_ended(dialog_db, call_id, timeout=40)
    finally:
        phone.close()
    invites = [r for r in agent_line.requests[before:] if r.method == "INVITE"]
    assert invites, f"the phone never called the transfer target; it got {agent_line.unreadable[-1:]}"
    assert invites[0].uri.user == "default"  # {queue} in transfer_to: the tenant has no queues of its own
    assert reason.startswith("handoff:")
    transcript = lines(dialog_db, call_id)
    assert ("caller", "[DTMF 0]") in transcript
    with sqlite3.connect(dialog_db[len("sqlite:///") :]) as db:
        (handoff_id,) = db.execute("select handoff_id from handoffs where call_id = ?", (call_id,)).fetchone()
        notes = db.execute(
            "select meta from utterances where call_id = ? and text = '[transfer]'", (call_id,)
        ).fetchall()
    assert len(notes) == 1, transcript
    transfer = json.loads(notes[0][0])
    assert transfer["handoff_id"] == handoff_id and transfer["outcome"] == "transferred", transfer
    assert invites[0].uri.parameters["x-handoff-id"] == handoff_id  # the agent side fetches the package with it
