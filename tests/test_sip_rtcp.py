"""RTCP (RFC 3550 §6, Appendix A): packet layout against hand-built bytes, loss and jitter arithmetic, round trip."""

from __future__ import annotations

import struct

import pytest

from ivr.transports.sip.rtcp import (
    BYE,
    RR,
    SDES,
    SR,
    Goodbye,
    ReceptionStats,
    Report,
    ReportBlock,
    RtcpError,
    RtcpSession,
    SenderInfo,
    next_interval,
    ntp_middle,
    ntp_time,
    parse_compound,
    sdes_cname,
)
from ivr.transports.sip.rtp import RtpPacket
from ivr.transports.sip.sdp import answer, negotiate, parse_offer
from tests.test_sip_protocol import SDP


def hand_built_sr() -> bytes:
    """An SR with one report block, laid out field by field from RFC 3550 §6.4.1 (not with our code)."""
    header = bytes([0x81, 200]) + struct.pack("!H", 12)  # V=2, RC=1; 13 words in all
    sender = struct.pack("!IIIIIII", 0x11223344, 0xE0000000, 0x40000000, 123456, 500, 80000, 0)[:24]
    block = struct.pack("!I", 0xAABBCCDD)
    block += bytes([26]) + (-3 & 0xFFFFFF).to_bytes(3, "big")  # fraction 26/256, cumulative lost -3
    block += struct.pack("!IIII", 0x0001FFFF, 77, 0x33445566, 65536 * 2)
    return header + sender + block


def test_sender_report_fields_match_the_rfc_layout():
    (report,) = parse_compound(hand_built_sr())
    assert report.ssrc == 0x11223344
    assert report.sender == SenderInfo(0xE0000000_40000000, 123456, 500, 80000)
    (block,) = report.blocks
    assert block == ReportBlock(0xAABBCCDD, 26, -3, 0x0001FFFF, 77, 0x33445566, 131072)
    assert report.to_bytes() == hand_built_sr()  # and we write exactly those bytes


def test_compound_report_with_cname_and_bye():
    report = Report(7, None, (ReportBlock(9, 0, 5, 1000, 12, 0, 0),))
    data = report.to_bytes() + sdes_cname(7, "abc") + struct.pack("!BBHI", 0x81, BYE, 1, 7)
    assert [data[1], data[4 + 4 * struct.unpack_from("!H", data, 2)[0] + 1]] == [RR, SDES]
    parsed = parse_compound(data)
    assert parsed == [report, Goodbye((7,))]
    cname = sdes_cname(7, "abc")
    assert len(cname) % 4 == 0 and cname[8:10] == bytes([1, 3]) and cname[10:13] == b"abc" and cname[13] == 0


def test_cumulative_loss_is_clamped_to_24_signed_bits():
    block = ReportBlock(1, 0, 10_000_000, 0, 0, 0, 0)
    assert ReportBlock.parse(block.to_bytes(), 0).cumulative_lost == (1 << 23) - 1


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\x81\xca\x00\x01" + b"\0" * 4, "starts with type 202"),  # SDES first
        (b"\x41\xc9\x00\x01" + b"\0" * 4, "version 1"),
        (b"\x81\xc9\x00\x07" + b"\0" * 8, "runs past"),
        (b"\x80\xc9\x00\x01" + b"\0" * 3, "32-bit words"),
        (b"\xa0\xc9\x00\x01\0\0\0\x04" + b"\x80\xcb\x00\x00", "padding"),  # padding on the first of two
        (b"\x81\xc9\x00\x01\0\0\0\x01", "needs 28 bytes"),  # an RR announcing a block it does not carry
        (b"\x80\xc8\x00\x01\0\0\0\x01", "needs 24 bytes"),  # an SR without sender info
        (b"\x80\xc9\x00\x01\0\0\0\x01" + b"\x82\xcb\x00\x01\0\0\0\x01", "BYE shorter"),
    ],
)
def test_malformed_compounds_are_rtcp_errors(data, error):
    with pytest.raises(RtcpError, match=error):
        parse_compound(data)


def packet(seq: int, ts: int = 0, ssrc: int = 5) -> RtpPacket:
    return RtpPacket(0, seq % 65536, ts, ssrc, b"")


def test_loss_counts_expected_minus_received_per_interval():
    stats = ReceptionStats()
    for seq in range(1000, 1100):  # the first packet is probation, then 99 counted
        stats.on_packet(packet(seq), 0.0)
    assert (stats.expected, stats.received, stats.lost) == (99, 99, 0)
    assert stats.block(0, 0).fraction_lost == 0
    for seq in range(1100, 1200):
        if seq % 4:  # a quarter lost
            stats.on_packet(packet(seq), 0.0)
    block = stats.block(0, 0)
    assert (block.highest_sequence, block.cumulative_lost) == (1199, 25)  # 1100, 1104, ... 1196
    assert block.fraction_lost == 64  # 25 of 100 in 1/256
    stats.on_packet(packet(1101), 0.0)  # a late duplicate makes the interval's loss negative: reported as 0
    assert stats.block(0, 0).fraction_lost == 0


def test_sequence_wrap_counts_cycles_and_reordering_is_not_loss():
    stats = ReceptionStats()
    for seq in [65530, 65531, 65533, 65532, 65534, 65535, 0, 2, 1, 3]:
        stats.on_packet(packet(seq), 0.0)
    assert stats.extended_max == 65536 + 3
    assert (stats.expected, stats.lost) == (9, 0)


def test_a_sequence_jump_restarts_after_two_packets_in_a_row():
    stats = ReceptionStats()
    for seq in range(10, 20):
        stats.on_packet(packet(seq), 0.0)
    stats.on_packet(packet(30000), 0.0)  # one stray packet far away: ignored
    assert (stats.expected, stats.lost) == (9, 0)
    stats.on_packet(packet(30001), 0.0)  # a second in sequence: the sender restarted
    stats.on_packet(packet(30002), 0.0)
    assert stats.extended_max == 30002 and stats.lost == 0 and stats.received == 2


def test_jitter_follows_the_rfc_estimator():
    steady = ReceptionStats()
    for i in range(200):
        steady.on_packet(packet(i, 160 * i), 0.02 * i + 0.5)
    assert steady.jitter == pytest.approx(0, abs=1)
    wobbly = ReceptionStats()
    for i in range(400):  # every other packet 10 ms late: each transit differs by 80 timestamp units
        wobbly.on_packet(packet(i, 160 * i), 0.02 * i + (0.01 if i % 2 else 0.0))
    assert wobbly.jitter == pytest.approx(80, abs=2)


def test_round_trip_from_an_echoed_sender_report():
    ivr, phone = RtcpSession(ssrc=1), RtcpSession(ssrc=2)
    phone.reception.on_packet(packet(1, ssrc=1), 0.0)
    phone.reception.on_packet(packet(2, ssrc=1), 0.0)
    t0 = 1_800_000_000.0
    sr = ivr.compound(t0, SenderInfo(ntp_time(t0), 0, 2, 320))
    phone.receive(sr, t0 + 0.040)  # 40 ms on the way
    rr = phone.compound(t0 + 0.540, None)  # held 500 ms before reporting
    (report,) = [p for p in parse_compound(rr) if isinstance(p, Report)]
    assert report.blocks[0].last_sr == ntp_middle(ntp_time(t0))
    assert report.blocks[0].delay_since_last_sr == pytest.approx(0.5 * 65536, abs=2)
    ivr.receive(rr, t0 + 0.600)  # 60 ms back
    assert ivr.far_end.rtt_ms == pytest.approx(100, abs=0.1)
    assert ivr.far_end.reports == 1 and ivr.far_end.fraction_lost == 0


def test_reports_about_other_sources_and_impossible_round_trips_are_ignored():
    session = RtcpSession(ssrc=1)
    other = Report(2, None, (ReportBlock(99, 128, 50, 0, 0, 0, 0),)).to_bytes()
    session.receive(other, 1_800_000_000.0)
    assert session.far_end.reports == 0
    future = ntp_middle(ntp_time(1_800_000_010.0))  # an LSR from the future gives a negative round trip
    session.receive(Report(2, None, (ReportBlock(1, 0, 0, 0, 0, future, 0),)).to_bytes(), 1_800_000_000.0)
    assert session.far_end.reports == 1 and session.far_end.rtt_ms is None


def test_the_report_interval_is_randomized_around_five_seconds():
    intervals = [next_interval() for _ in range(2000)]
    assert min(intervals) > 2.0 and max(intervals) < 6.2
    assert 3.8 < sum(intervals) / len(intervals) < 4.4


def test_sdp_names_the_rtcp_port_and_accepts_rtcp_mux():
    with_port = SDP.replace("a=ptime:20", "a=ptime:20\r\na=rtcp:53001 IN IP4 192.0.2.9").encode()
    chosen, index = negotiate(parse_offer(with_port))
    assert chosen.rtcp_destination == ("192.0.2.9", 53001)
    plain, _ = negotiate(parse_offer(SDP.encode()))
    assert plain.rtcp_destination == (plain.remote_address, plain.remote_port + 1)
    assert b"rtcp-mux" not in answer(parse_offer(SDP.encode()), plain, 0, "127.0.0.1", 20000, 1, 1)
    muxed_offer = parse_offer(SDP.replace("a=ptime:20", "a=ptime:20\r\na=rtcp-mux").encode())
    muxed, _ = negotiate(muxed_offer)
    assert muxed.rtcp_mux and muxed.rtcp_destination == (muxed.remote_address, muxed.remote_port)
    assert b"a=rtcp-mux\r\n" in answer(muxed_offer, muxed, 0, "127.0.0.1", 20000, 1, 1)


def test_an_sr_carries_the_sender_info_it_was_given():
    session = RtcpSession(ssrc=0xDEADBEEF)
    data = session.compound(1_800_000_000.25, SenderInfo(ntp_time(1_800_000_000.25), 4242, 10, 1600), bye=True)
    assert data[1] == SR
    report, bye = parse_compound(data)
    assert report.ssrc == 0xDEADBEEF and report.blocks == ()  # nothing heard yet: no block
    assert report.sender.ntp >> 32 == 1_800_000_000 + 2_208_988_800 and report.sender.ntp & 0xFFFFFFFF == 1 << 30
    assert (report.sender.rtp_timestamp, report.sender.packets, report.sender.octets) == (4242, 10, 1600)
    assert bye == Goodbye((0xDEADBEEF,))
