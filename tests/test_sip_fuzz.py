"""Property-based fuzzing of everything that reads bytes from the network: SIP, SDP, RTP.

The property is the same everywhere: malformed, truncated or oversized input
ends as the module's own error (which the endpoint turns into a 400-class
answer or a dropped packet), never as another exception, and never hangs.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.transports.sip.message import SipParseError, StreamFramer, parse
from ivr.transports.sip.rtp import DtmfReceiver, JitterBuffer, RtpError, RtpPacket
from ivr.transports.sip.sdp import SdpError, negotiate, parse_offer
from tests.test_sip_protocol import SDP, invite

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = invite()


def parses_or_refuses(data: bytes) -> None:
    try:
        parse(data)
    except SipParseError as exc:
        assert 400 <= exc.status < 500


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    parses_or_refuses(data)


@FUZZ
@given(st.integers(0, len(VALID)))
def test_truncated_messages(cut):
    parses_or_refuses(VALID[:cut])


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=64))
def test_bytes_spliced_into_a_valid_message(position, noise):
    parses_or_refuses(VALID[:position] + noise + VALID[position:])


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(1, 40))
def test_bytes_removed_from_a_valid_message(position, length):
    parses_or_refuses(VALID[:position] + VALID[position + length :])


HEADER_VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80)


@FUZZ
@given(st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Contact", "Max-Forwards"]), HEADER_VALUES)
def test_any_header_value(name, value):
    lines = VALID.split(b"\r\n")
    replaced = [
        f"{name}: {value}".encode() if line.lower().startswith(name.lower().encode() + b":") else line for line in lines
    ]
    parses_or_refuses(b"\r\n".join(replaced))


@FUZZ
@given(st.integers(1, 200_000))
def test_oversized_headers(size):
    parses_or_refuses(VALID.replace(b"Max-Forwards: 70", b"X-Big: " + b"a" * size))


@FUZZ
@given(st.lists(st.integers(1, 300), min_size=1, max_size=30), st.binary(max_size=300))
def test_stream_framer_with_any_chunking_and_trailing_garbage(cuts, garbage):
    stream = VALID + VALID + garbage
    framer = StreamFramer()
    frames: list[bytes] = []
    position = 0
    try:
        for cut in cuts + [len(stream)]:
            frames += framer.feed(stream[position : position + cut])
            position += cut
    except SipParseError:
        pass
    assert frames[:2] == [VALID, VALID][: len(frames[:2])]
    for frame in frames:
        parses_or_refuses(frame)


@FUZZ
@given(st.binary(max_size=1500))
def test_rtp_depacketizer(data):
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert len(packet.payload) <= len(data)
    try:
        DtmfReceiver().receive(packet)
    except RtpError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 3), st.booleans()), max_size=300))
def test_jitter_buffer_with_any_arrival_order(arrivals):
    """Any mix of sequence numbers, sources and pops: no crash, and never more audio out than in."""
    buffer = JitterBuffer(depth=3, limit=50)
    played = 0
    for sequence, ssrc, pop in arrivals:
        buffer.push(RtpPacket(0, sequence, sequence * 160, ssrc, b"x"))
        if pop:
            kind, payload = buffer.pop()
            played += kind == "audio"
    assert played <= len(arrivals)
    assert len(buffer._packets) <= buffer.limit


@FUZZ
@given(st.binary(max_size=2000))
def test_sdp_random_bytes(data):
    try:
        negotiate(parse_offer(data))
    except SdpError as exc:
        assert exc.status in (400, 488)


@FUZZ
@given(st.integers(0, len(SDP)), st.text(max_size=40))
def test_sdp_mutations(position, noise):
    try:
        negotiate(parse_offer((SDP[:position] + noise + SDP[position:]).encode()))
    except SdpError as exc:
        assert exc.status in (400, 488)
