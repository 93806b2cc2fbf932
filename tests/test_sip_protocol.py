"""SIP messages, SDP offer/answer, RTP packets, keypad events, the jitter buffer, digest auth, in-band DTMF."""

from __future__ import annotations

import hashlib
import re

import pytest
from sipmessage import Request

from ivr.audio.dtmf import ToneDetector, tone
from ivr.transports.sip.message import MAX_MESSAGE, SipParseError, StreamFramer, parse, response, transaction_key
from ivr.transports.sip.register import digest_response, parse_challenge
from ivr.transports.sip.rtp import DtmfEvent, DtmfReceiver, JitterBuffer, RtpError, RtpPacket, dtmf_packets
from ivr.transports.sip.sdp import SdpError, answer, negotiate, parse_offer
from tests.speech import speech

SDP = (
    "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


def invite(body: str = SDP, extra: str = "") -> bytes:
    payload = body.encode()
    return (
        "INVITE sip:+4930123456@127.0.0.1:5060 SIP/2.0\r\n"
        "v: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKabc;rport\r\n"
        "Max-Forwards: 70\r\n"
        'f: "Caller" <sip:+4915112345678@10.0.0.5>;tag=from1\r\n'
        "t: <sip:+4930123456@127.0.0.1>\r\n"
        "i: call-1@10.0.0.5\r\n"
        "CSeq: 1 INVITE\r\n"
        "Subject: a folded\r\n   header\r\n"
        "Contact: <sip:caller@10.0.0.5:5062>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


# ---- messages ------------------------------------------------------------------------


def test_parses_compact_and_folded_headers():
    message = parse(invite())
    assert isinstance(message, Request)
    assert message.method == "INVITE" and message.uri.user == "+4930123456"
    assert message.call_id == "call-1@10.0.0.5"
    assert message.from_address.parameters["tag"] == "from1"
    assert message.headers.get("Subject") == "a folded header"
    assert message.body.startswith(b"v=0")
    assert transaction_key(message) == ("z9hG4bKabc", "10.0.0.5:5062", "INVITE")


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda m: m.replace(b"i: call-1@10.0.0.5\r\n", b""), "missing Call-ID"),
        (lambda m: m.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match"),
        (lambda m: m.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "malformed header"),
        (lambda m: m.replace(b"Content-Length: ", b"Content-Length: 9"), "Content-Length"),
        (lambda m: m.replace(b"\r\n\r\n", b"\r\n"), "no empty line"),
        (lambda m: m.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), "neither a request"),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max Forwards 70"), "line 3: not a header"),
        (lambda m: m.replace(b"Caller", b"\xff\xfe"), "not UTF-8"),
        # Header numbers: ASCII digits only, within bounds. int() and str.isdigit() take Unicode digits: '²' passed
        # isdigit() and then raised in int(), out of the parser (Max-Forwards in the endpoint, after its transaction
        # was stored); '٧٠' (Arabic-Indic 70) was read as 70; 5,000 digits exceed int()'s conversion limit.
        (lambda m: m.replace(b"Max-Forwards: 70", "Max-Forwards: ²".encode()), "Max-Forwards is not a number"),
        (lambda m: m.replace(b"Max-Forwards: 70", "Max-Forwards: ٧٠".encode()), "Max-Forwards is not a number"),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), "Max-Forwards is larger than 255"),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards: -1"), "Max-Forwards is not a number"),
        (lambda m: content_length(m, "²".encode()), "Content-Length is not a number"),
        (lambda m: content_length(m, "٣٤".encode()), "Content-Length is not a number"),
        (lambda m: content_length(m, b"9" * 5000), "Content-Length is larger than 65535"),
        (lambda m: m.replace(b"Content-Type", b"Content-Length: 0\r\nContent-Type"), "more than one Content-Length"),
        (lambda m: m.replace(b"CSeq: 1 INVITE", "CSeq: ١ INVITE".encode()), "CSeq header is not ASCII"),
        (lambda m: m.replace(b"10.0.0.5:5062;branch", "10.0.0.5:٥٠٦٢;branch".encode()), "Via header is not ASCII"),
    ],
)
def test_malformed_messages_name_the_problem(mutate, error):
    with pytest.raises(SipParseError, match=error) as info:
        parse(mutate(invite()))
    assert 400 <= info.value.status < 500


def content_length(message: bytes, value: bytes) -> bytes:
    return re.sub(rb"Content-Length: \d+", b"Content-Length: " + value, message)


def test_oversized_message_is_refused_with_413():
    with pytest.raises(SipParseError) as info:
        parse(invite(extra="X-Pad: " + "a" * MAX_MESSAGE + "\r\n"))
    assert info.value.status == 413


def test_response_echoes_the_transaction_and_adds_our_tag():
    request = parse(invite())
    ok = parse(bytes(response(request, 180, to_tag="ours")))
    assert ok.code == 180 and ok.call_id == request.call_id
    assert ok.to_address.parameters["tag"] == "ours"
    assert [str(v) for v in ok.via] == [str(v) for v in request.via]
    assert ok.cseq.method == "INVITE" and ok.cseq.sequence == 1
    trying = parse(bytes(response(request, 100, to_tag="ours")))
    assert "tag" not in trying.to_address.parameters  # 100 Trying never carries a tag (§8.2.6.2)


def test_stream_framer_cuts_by_content_length_across_chunks():
    one, two = invite(), invite().replace(b"call-1", b"call-2")
    stream = b"\r\n\r\n" + one + b"\r\n" + two  # keep-alive CRLFs between messages
    framer = StreamFramer()
    frames = []
    for i in range(0, len(stream), 7):
        frames += framer.feed(stream[i : i + 7])
    assert frames == [one, two]


def test_stream_framer_refuses_a_message_without_length():
    with pytest.raises(SipParseError, match="without Content-Length"):
        StreamFramer().feed(invite().replace(b"Content-Length", b"X-Length"))
    with pytest.raises(SipParseError, match="no end of headers"):
        StreamFramer(limit=1000).feed(b"INVITE " + b"x" * 2000)


@pytest.mark.parametrize("value, error", [("²", "Content-Length is not a number"), ("٣", "Content-Length is not a number"),
                                          ("9" * 5000, "Content-Length is larger than 65535")],
                         ids=["superscript-two", "arabic-indic-three", "5000-digits"])  # fmt: skip
def test_stream_framer_refuses_content_lengths_that_are_not_ascii_numbers(value, error):
    """A 5,000-digit Content-Length on TCP raised ValueError from int(): "Task exception was never retrieved"."""
    with pytest.raises(SipParseError, match=error):
        StreamFramer().feed(content_length(invite(), value.encode()))


def test_stream_framer_finds_content_length_in_any_header_position():
    moved = (
        invite()
        .replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nl: %d\r\n" % len(SDP))
        .replace(b"Content-Length: %d\r\n" % len(SDP), b"")
    )
    assert StreamFramer().feed(moved + moved) == [moved, moved]  # it was only found as the last header


# ---- SDP ---------------------------------------------------------------------------------


def test_answer_takes_the_callers_first_codec_we_speak():
    offer = parse_offer(SDP.encode())
    chosen, index = negotiate(offer)
    assert (chosen.codec, chosen.payload_type, chosen.dtmf_payload_type) == ("PCMA", 8, 101)
    assert (chosen.remote_address, chosen.remote_port, index) == ("10.0.0.5", 40000, 0)
    body = answer(offer, chosen, index, "127.0.0.1", 20002, 7, 1).decode()
    assert "m=audio 20002 RTP/AVP 8 101\r\n" in body
    assert "a=rtpmap:8 PCMA/8000" in body and "a=rtpmap:101 telephone-event/8000" in body
    assert "a=ptime:20" in body and "a=sendrecv" in body and "c=IN IP4 127.0.0.1" in body


def test_static_payload_types_work_without_rtpmap_and_other_streams_are_refused():
    sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=video 5000 RTP/AVP 96\r\nm=audio 40000 RTP/AVP 0\r\n"
    offer = parse_offer(sdp.encode())
    chosen, index = negotiate(offer)
    assert (chosen.codec, chosen.dtmf_payload_type, index) == ("PCMU", None, 1)
    body = answer(offer, chosen, index, "127.0.0.1", 20000, 1, 1).decode()
    assert body.index("m=video 0 RTP/AVP 96") < body.index("m=audio 20000 RTP/AVP 0")


@pytest.mark.parametrize("direction, ours, we_send", [("sendonly", "recvonly", False), ("inactive", "inactive", False),
                                                      ("sendrecv", "sendrecv", True)])  # fmt: skip
def test_hold_offers_stop_our_audio(direction, ours, we_send):
    offer = parse_offer(SDP.replace("a=sendrecv", f"a={direction}").encode())
    chosen, index = negotiate(offer)
    assert chosen.we_send is we_send
    assert f"a={ours}" in answer(offer, chosen, index, "127.0.0.1", 20000, 1, 2).decode()


def test_old_style_hold_by_zero_address():
    chosen, _ = negotiate(parse_offer(SDP.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0").encode()))
    assert not chosen.we_send


def test_offers_we_cannot_take_name_what_was_offered():
    with pytest.raises(SdpError, match="audio 9 18") as info:
        negotiate(parse_offer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 9 18\r\n"))
    assert info.value.status == 488
    with pytest.raises(SdpError, match="line 2") as info:
        parse_offer(b"v=0\r\nm=audio notaport RTP/AVP 0\r\n")
    assert info.value.status == 400


@pytest.mark.parametrize("change", [("c=IN IP4 10.0.0.5", "c=IN IP4 media.example.com"),
                                    ("a=ptime:20", "a=ptime:20\r\na=rtcp:40001 IN IP4 rtcp.example.com")])  # fmt: skip
def test_connection_addresses_that_are_host_names_are_refused_not_resolved(change):
    """A c= host name was resolved by sendto on the event loop, for every packet we sent."""
    with pytest.raises(SdpError, match="not an IP address") as info:
        negotiate(parse_offer(SDP.replace(*change).encode()))
    assert info.value.status == 488
    chosen, _ = negotiate(parse_offer(SDP.replace("IN IP4 10.0.0.5", "IN IP6 2001:db8::5").encode()))
    assert chosen.remote_address == "2001:db8::5"


def test_media_ports_out_of_range_are_refused():
    with pytest.raises(SdpError, match="line 6") as info:
        parse_offer(SDP.replace("m=audio 40000", "m=audio 70000").encode())
    assert info.value.status == 400


# ---- RTP ---------------------------------------------------------------------------------


def test_rtp_round_trip_and_header_extras():
    packet = RtpPacket(0, 65535, 2**32 - 160, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert RtpPacket.parse(packet.to_bytes()) == packet
    raw = bytearray(packet.to_bytes())
    raw[0] |= 0x10 | 0x20 | 0x01  # extension, padding, one CSRC
    body = bytes(raw[:12]) + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXT!" + b"\xff" * 160 + b"\x00\x00\x03"
    assert RtpPacket.parse(body).payload == b"\xff" * 160


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 20, b"\x80\xc8" + b"\x00" * 20,
                                  b"\x90\x00" + b"\x00" * 10 + b"\x00\x00\xff\xff"])  # fmt: skip
def test_rtp_garbage_is_rejected(data):
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_dtmf_packets_follow_rfc4733():
    packets = dtmf_packets("5", duration_ms=100)
    assert [first for _, first in packets] == [True, False, False, False, False, False, False]
    events = [event for event, _ in packets]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [e.duration for e in events[:5]] == [160, 320, 480, 640, 800]
    assert {e.key for e in events} == {"5"} and events[-1].duration == events[-2].duration == 800
    assert DtmfEvent.parse(events[0].to_bytes()) == events[0]


def test_dtmf_receiver_reports_each_press_once_even_without_its_first_packet():
    receiver = DtmfReceiver()
    keys = []
    for n, (key, ts) in enumerate([("1", 1000), ("2", 5000)]):
        for i, (event, first) in enumerate(dtmf_packets(key)):
            if n == 1 and i == 0:
                continue  # the start packet of the second press is lost
            keys.append(receiver.receive(RtpPacket(101, i, ts, 1, event.to_bytes(), first)))
    assert [k for k in keys if k] == ["1", "2"]
    with pytest.raises(RtpError):
        receiver.receive(RtpPacket(101, 0, 9999, 1, b"\x20\x00\x00\xa0"))  # event 32 is not a key


def frames(*seqs: int, ssrc: int = 7) -> list[RtpPacket]:
    return [RtpPacket(0, s % 65536, 160 * s, ssrc, bytes([s % 256])) for s in seqs]


def drain(buffer: JitterBuffer, ticks: int) -> list[object]:
    out = []
    for _ in range(ticks):
        kind, payload = buffer.pop()
        out.append(payload[0] if kind == "audio" else kind)
    return out


def test_jitter_buffer_reorders_and_waits_for_its_depth():
    buffer = JitterBuffer(depth=3)
    for packet in frames(10, 12):
        buffer.push(packet)
    assert buffer.pop() == ("wait", None)
    for packet in frames(11, 13):
        buffer.push(packet)
    assert drain(buffer, 5) == [10, 11, 12, 13, "wait"]
    assert buffer.stats.reordered == 1


def test_jitter_buffer_conceals_loss_and_drops_late_and_duplicate_packets():
    buffer = JitterBuffer(depth=2)
    for packet in frames(1, 3, 4, 3):
        buffer.push(packet)
    assert drain(buffer, 2) == [1, "lost"]
    buffer.push(frames(2)[0])  # arrives after its turn
    assert drain(buffer, 3) == [3, 4, "wait"]
    assert (buffer.stats.lost, buffer.stats.late, buffer.stats.duplicates) == (1, 1, 1)


def test_jitter_buffer_unwraps_sequence_numbers_and_restarts_on_a_new_source():
    buffer = JitterBuffer(depth=2)
    for packet in frames(65534, 65535, 65536, 65537):
        buffer.push(packet)
    assert drain(buffer, 4) == [254, 255, 0, 1]
    for packet in frames(500, 501, ssrc=8):
        buffer.push(packet)
    assert drain(buffer, 2) == [500 % 256, 501 % 256]


def test_jitter_buffer_has_a_limit():
    buffer = JitterBuffer(depth=2, limit=10)
    for packet in frames(*range(40)):
        buffer.push(packet)
    assert buffer.stats.overflows == 30
    assert drain(buffer, 10) == list(range(30, 40))


# ---- digest authentication ---------------------------------------------------------------------


def test_digest_matches_the_rfc_2617_example():
    challenge = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                 'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')  # fmt: skip
    header = digest_response(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
    scheme, fields = parse_challenge(header)
    assert scheme == "Digest" and fields["qop"] == "auth" and fields["nc"] == "00000001"
    assert fields["response"] == "6629fae49393a05397450978507c4ef1"
    assert fields["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


def test_malformed_challenges_are_errors():
    with pytest.raises(ValueError, match="malformed challenge"):
        parse_challenge('Digest realm="unterminated')


def test_digest_sha256_without_qop():
    header = digest_response('Digest realm="pbx", nonce="n1", algorithm=SHA-256', "REGISTER", "sip:pbx", "ivr", "pw")
    got = parse_challenge(header)[1]["response"]
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    assert got == h(f"{h('ivr:pbx:pw')}:n1:{h('REGISTER:sip:pbx')}")
    with pytest.raises(ValueError, match="unsupported"):
        digest_response('Digest realm="x", nonce="n", algorithm=SHA-512', "REGISTER", "sip:x", "u", "p")


# ---- in-band DTMF -------------------------------------------------------------------------------


def keys_in(pcm: bytes) -> str:
    detector = ToneDetector()
    found = [detector.process(pcm[i : i + 320]) for i in range(0, len(pcm) - 319, 320)]
    return "".join(k for k in found if k)


def test_every_key_is_heard_once_per_press():
    pcm = b"".join(tone(key, 80) + bytes(1600) for key in "0123456789*#ABCD")
    assert keys_in(pcm) == "0123456789*#ABCD"
    assert keys_in(tone("7", 500)) == "7"  # a long press is one key


def test_too_short_or_too_quiet_tones_are_not_keys():
    assert keys_in(tone("5", 20) + bytes(1600)) == ""
    assert keys_in(tone("5", 200, level=200)) == ""


def test_speech_does_not_sound_like_keys():
    pcm = speech("Hello, I would like to check the status of my order number five, please. "
                 "Could you also tell me your opening hours on Saturday?", rate=8000)  # fmt: skip
    assert len(pcm) > 8000 * 2 * 3
    assert keys_in(pcm) == ""
