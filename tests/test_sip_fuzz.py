"""Property-based fuzzing of everything that reads bytes from the network: SIP, SDP, RTP, RTCP.

The property is the same everywhere: malformed, truncated or oversized input
ends as the module's own error (which the endpoint turns into a 400-class
answer or a dropped packet), never as another exception, and never hangs.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.transports.sip.message import SipParseError, StreamFramer, parse
from ivr.transports.sip.rtcp import ReceptionStats, Report, ReportBlock, RtcpError, RtcpSession, SenderInfo, sdes_cname
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


# Numbers as peers should not write them: Unicode digits ('²' passes str.isdigit() but not int(), '٣' passes both),
# signs, and runs of ASCII digits longer than int() converts (4,300).
NUMBERS = st.one_of(
    st.text(st.characters(whitelist_categories=("Nd", "No")), min_size=1, max_size=8),
    st.text("0123456789", min_size=1, max_size=12).flatmap(
        lambda ascii_digits: st.text(st.characters(whitelist_categories=("Nd", "No")), max_size=3).map(
            lambda other: ascii_digits + other
        )
    ),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.integers(-(2**70), 2**70).map(str),
)
HEADER_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80), NUMBERS
)


@FUZZ
@given(
    st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Contact", "Max-Forwards"]),
    HEADER_VALUES,
)
def test_any_header_value(name, value):
    lines = VALID.split(b"\r\n")
    replaced = [
        f"{name}: {value}".encode() if line.lower().startswith(name.lower().encode() + b":") else line for line in lines
    ]
    parses_or_refuses(b"\r\n".join(replaced))


NUMBER_HEADERS = {
    "Max-Forwards: 70": "Max-Forwards: {}",
    "Content-Length: ": "Content-Length: {}",  # completed by the real length in VALID; replaced whole below
    "CSeq: 1 INVITE": "CSeq: {} INVITE",
    "10.0.0.5:5062;branch": "10.0.0.5:{};branch",
}


@FUZZ
@given(st.sampled_from(sorted(NUMBER_HEADERS)), NUMBERS)
def test_numbers_in_headers(where, number):
    """Every number a header carries is read from ASCII digits within bounds, or the message is refused."""
    text = VALID.decode()
    if where == "Content-Length: ":
        head, _, body = text.partition("\r\n\r\n")
        data = (re.sub(r"Content-Length: \d+", "Content-Length: " + number, head) + "\r\n\r\n" + body).encode()
    else:
        data = text.replace(where, NUMBER_HEADERS[where].format(number)).encode()
    try:
        parse(data)
    except SipParseError as exc:
        assert 400 <= exc.status < 500
        return
    assert number.isascii() and number.isdigit()  # only a plain ASCII number gets through


@FUZZ
@given(NUMBERS)
def test_stream_framer_with_any_content_length(number):
    stream = re.sub(rb"Content-Length: \d+", b"Content-Length: " + number.encode(), VALID)
    try:
        frames = StreamFramer().feed(stream)
    except SipParseError as exc:
        assert exc.status in (400, 413)
        return
    for frame in frames:
        parses_or_refuses(frame)


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


def rtcp_is_read_or_refused(session: RtcpSession, data: bytes) -> None:
    try:
        session.receive(data, 1_800_000_000.0)
    except RtcpError:
        pass
    far = session.far_end
    assert far.fraction_lost is None or 0 <= far.fraction_lost <= 255
    assert far.rtt_ms is None or 0 <= far.rtt_ms < 32768 * 1000


@FUZZ
@given(st.binary(max_size=1500))
def test_rtcp_random_bytes(data):
    rtcp_is_read_or_refused(RtcpSession(ssrc=1), data)


VALID_RTCP = (Report(2, SenderInfo(1 << 63, 5, 6, 7), (ReportBlock(1, 30, 12, 99, 40, 0x1234, 99),)).to_bytes()
              + sdes_cname(2, "caller"))  # fmt: skip


@FUZZ
@given(st.integers(0, len(VALID_RTCP)), st.binary(max_size=64), st.integers(0, 64))
def test_rtcp_truncated_spliced_and_cut(position, noise, removed):
    session = RtcpSession(ssrc=1)
    rtcp_is_read_or_refused(session, VALID_RTCP[:position])
    rtcp_is_read_or_refused(session, VALID_RTCP[:position] + noise + VALID_RTCP[position:])
    rtcp_is_read_or_refused(session, VALID_RTCP[:position] + VALID_RTCP[position + removed :])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 1), st.integers(0, (1 << 32) - 1)), max_size=300))
def test_reception_stats_with_any_arrivals(arrivals):
    """Any order, source switches and timestamps: loss stays within what was expected, blocks always encode."""
    stats = ReceptionStats()
    for i, (sequence, ssrc, timestamp) in enumerate(arrivals):
        stats.on_packet(RtpPacket(0, sequence, timestamp, ssrc, b""), i * 0.02)
        assert stats.lost <= stats.expected and stats.jitter >= 0
        if i % 17 == 0 and stats.ssrc is not None:
            block = stats.block(0, 0)
            assert 0 <= block.fraction_lost <= 255
            assert ReportBlock.parse(block.to_bytes(), 0).ssrc == block.ssrc
