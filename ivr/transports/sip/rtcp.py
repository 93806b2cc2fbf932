"""RTCP sender and receiver reports for one call (RFC 3550 §6, Appendix A; RFC 5761 multiplexing).

Why: RTCP is how both ends of a phone line learn what the other one hears.
Our reports tell the PBX or trunk how much of the caller's audio we lost and
how much it jittered; theirs tell us the same about our prompts and give the
round-trip time. The figures end up on the call's event log (MEDIA_QUALITY),
so "the bot did not understand me" can be told apart from a bad line.

Pure data, like rtp.py: no socket and no clock. `RtcpSession` is fed the RTP
packets we receive and the RTCP datagrams that arrive, and builds the
compound packets (SR or RR, then SDES CNAME, and BYE at the end) that
`RtpStream` (stream.py) sends every few seconds.
"""

from __future__ import annotations

import math
import random
import secrets
import struct
from dataclasses import dataclass

from ivr.transports.sip.rtp import SEQ_MOD, RtpPacket

RTCP_VERSION = 2
SR, RR, SDES, BYE = 200, 201, 202, 203
CNAME = 1  # SDES item type (§6.5.1)
HEADER = struct.Struct("!BBH")
SENDER_INFO = struct.Struct("!IIIII")  # NTP seconds, NTP fraction, RTP timestamp, packet count, octet count
BLOCK = struct.Struct("!IIIIII")
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MIN_INTERVAL_S = 5.0  # §6.2: the recommended minimum report interval
MAX_DROPOUT, MAX_MISORDER, MIN_SEQUENTIAL = 3000, 100, 2  # Appendix A.1
CLOCK_RATE = 8000  # G.711 and telephone-event


class RtcpError(ValueError):
    """A datagram that is not a valid RTCP compound packet; it is dropped."""


def ntp_time(unix_s: float) -> int:
    """The 64-bit NTP timestamp (§4) of a wall-clock time."""
    return int(round((unix_s + NTP_UNIX_OFFSET) * (1 << 32))) % (1 << 64)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the unit of LSR, DLSR and round-trip times (1/65536 s)."""
    return (ntp >> 16) & 0xFFFFFFFF


def next_interval(minimum_s: float = MIN_INTERVAL_S) -> float:
    """§6.3.1: the deterministic interval times a random factor in [0.5, 1.5], divided by e - 3/2.

    The randomness keeps the reports of many calls from synchronizing; the
    division compensates for the timer reconsideration algorithm, which a
    two-party call does not need.
    """
    return minimum_s * random.uniform(0.5, 1.5) / (math.e - 1.5)


@dataclass(frozen=True)
class ReportBlock:
    """§6.4.1: what a receiver says about one source it hears."""

    ssrc: int
    fraction_lost: int  # 0-255: lost / expected since the previous report, in 1/256
    cumulative_lost: int  # signed 24 bits: expected - received (duplicates can make it negative)
    highest_sequence: int  # extended: cycles in the high 16 bits
    jitter: int  # interarrival jitter estimate, in timestamp units
    last_sr: int  # middle 32 bits of the NTP time of the last SR received from this source, 0 = none
    delay_since_last_sr: int  # 1/65536 s

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)

    def to_bytes(self) -> bytes:
        cumulative = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return BLOCK.pack(self.ssrc, (self.fraction_lost & 0xFF) << 24 | cumulative, self.highest_sequence & 0xFFFFFFFF,
                          self.jitter & 0xFFFFFFFF, self.last_sr, self.delay_since_last_sr)  # fmt: skip


@dataclass(frozen=True)
class SenderInfo:
    """§6.4.1: the sender's wall clock and RTP clock at one instant, and what it has sent."""

    ntp: int
    rtp_timestamp: int
    packets: int
    octets: int


@dataclass(frozen=True)
class Report:
    """An SR (with `sender`) or an RR (without)."""

    ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...]

    def to_bytes(self) -> bytes:
        body = struct.pack("!I", self.ssrc)
        if self.sender is not None:
            s = self.sender
            body += SENDER_INFO.pack(s.ntp >> 32, s.ntp & 0xFFFFFFFF, s.rtp_timestamp % (1 << 32),
                                     s.packets & 0xFFFFFFFF, s.octets & 0xFFFFFFFF)  # fmt: skip
        body += b"".join(block.to_bytes() for block in self.blocks[:31])
        return _packet(SR if self.sender is not None else RR, min(len(self.blocks), 31), body)


@dataclass(frozen=True)
class Goodbye:
    """§6.6: these sources are leaving."""

    ssrcs: tuple[int, ...]


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP bodies are whole 32-bit words")
    return HEADER.pack(RTCP_VERSION << 6 | count, packet_type, len(body) // 4) + body


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """§6.5: one chunk with the CNAME item, ended by a null item and padded to 32 bits."""
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, CNAME, len(text)) + text + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    return _packet(SDES, 1, chunk)


def goodbye(ssrc: int) -> bytes:
    return _packet(BYE, 1, struct.pack("!I", ssrc))


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: on a port shared with RTP, RTCP is told apart by its second byte (packet types 192-223)."""
    return len(data) > 1 and 192 <= data[1] <= 223


def parse_compound(data: bytes) -> list[Report | Goodbye]:
    """The reports and BYEs of a compound packet (§6.1); SDES, APP and unknown types are skipped.

    Checked as Appendix A.2 asks: version 2 everywhere, the first packet an SR
    or RR, padding only on the last one, lengths that add up to the datagram.
    """
    if len(data) < HEADER.size or len(data) % 4:
        raise RtcpError(f"{len(data)} bytes is not a whole number of 32-bit words of RTCP")
    found: list[Report | Goodbye] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            raise RtcpError("truncated RTCP header")
        first, packet_type, words = HEADER.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if first >> 6 != RTCP_VERSION:
            raise RtcpError(f"RTCP version {first >> 6}")
        if offset == 0 and packet_type not in (SR, RR):
            raise RtcpError(f"compound packet starts with type {packet_type}, not SR or RR")
        if end > len(data):
            raise RtcpError(f"RTCP packet of type {packet_type} runs past the datagram")
        if first & 0x20 and end != len(data):
            raise RtcpError("padding on an RTCP packet that is not the last")
        count = first & 0x1F
        body_end = end - (data[end - 1] if first & 0x20 else 0)
        if body_end < offset + 4:
            raise RtcpError("bad RTCP padding length")
        if packet_type in (SR, RR):
            found.append(_parse_report(data, offset + 4, body_end, count, packet_type == SR))
        elif packet_type == BYE:
            if offset + 4 + 4 * count > body_end:
                raise RtcpError("BYE shorter than its source count")
            found.append(Goodbye(struct.unpack_from(f"!{count}I", data, offset + 4)))
        offset = end
    return found


def _parse_report(data: bytes, start: int, end: int, count: int, is_sender: bool) -> Report:
    needed = 4 + (SENDER_INFO.size if is_sender else 0) + BLOCK.size * count
    if end - start < needed:
        raise RtcpError(
            f"{'SR' if is_sender else 'RR'} with {count} report blocks needs {needed} bytes, has {end - start}"
        )
    (ssrc,) = struct.unpack_from("!I", data, start)
    offset = start + 4
    sender = None
    if is_sender:
        ntp_s, ntp_f, rtp_ts, packets, octets = SENDER_INFO.unpack_from(data, offset)
        sender = SenderInfo(ntp_s << 32 | ntp_f, rtp_ts, packets, octets)
        offset += SENDER_INFO.size
    blocks = tuple(ReportBlock.parse(data, offset + i * BLOCK.size) for i in range(count))
    return Report(ssrc, sender, blocks)


class ReceptionStats:
    """Appendix A.1, A.3 and A.8 for the one source we receive: sequence tracking, loss and jitter."""

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.received = 0
        self._base = self._max = self._cycles = 0
        self._bad_seq = SEQ_MOD + 1
        self._probation = 0
        self._expected_prior = self._received_prior = 0
        self._transit: int | None = None
        self.jitter = 0.0  # timestamp units, the §6.4.1 estimator

    def _restart(self, sequence: int) -> None:
        self._base = self._max = sequence
        self._cycles = 0
        self._bad_seq = SEQ_MOD + 1
        self.received = self._expected_prior = self._received_prior = 0

    def on_packet(self, packet: RtpPacket, arrival_s: float, audio: bool = True) -> None:
        """One received packet; `audio` False for telephone-event packets, whose timestamps do not advance."""
        sequence = packet.sequence
        if packet.ssrc != self.ssrc:  # a new source: §6.2.1 probation before it counts
            self.ssrc = packet.ssrc
            self._restart(sequence)
            self._max = (sequence - 1) % SEQ_MOD
            self._probation = MIN_SEQUENTIAL
            self._transit = None
            self.jitter = 0.0
        if not self._update_sequence(sequence):
            return
        self.received += 1
        if audio:
            transit = int(arrival_s * CLOCK_RATE) - packet.timestamp
            if self._transit is not None:
                delta = abs(transit - self._transit) % (1 << 32)
                delta = min(delta, (1 << 32) - delta)
                self.jitter += (delta - self.jitter) / 16
            self._transit = transit

    def _update_sequence(self, sequence: int) -> bool:
        """Appendix A.1, `update_seq`: False for a packet that must not be counted."""
        delta = (sequence - self._max) % SEQ_MOD
        if self._probation:  # a new source counts from its second packet in sequence on
            if sequence == (self._max + 1) % SEQ_MOD:
                self._probation -= 1
                self._max = sequence
                if self._probation == 0:
                    self._restart(sequence)
                    return True
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self._max = sequence
            return False
        if delta < MAX_DROPOUT:
            if sequence < self._max:
                self._cycles += SEQ_MOD
            self._max = sequence
        elif delta <= SEQ_MOD - MAX_MISORDER:
            if sequence == self._bad_seq:  # two in a row after a jump: the sender restarted
                self._restart(sequence)
            else:
                self._bad_seq = (sequence + 1) % SEQ_MOD
                return False
        return True  # in order, or a duplicate or reordered packet

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max

    @property
    def expected(self) -> int:
        return max(0, self.extended_max - self._base + 1) if self.ssrc is not None else 0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def block(self, last_sr: int, delay_since_last_sr: int) -> ReportBlock:
        """Appendix A.3: the report block for this source; starts the next fraction-lost interval."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        assert self.ssrc is not None
        return ReportBlock(self.ssrc, min(fraction, 255), self.lost, self.extended_max, int(self.jitter),
                           last_sr, delay_since_last_sr)  # fmt: skip


@dataclass
class FarEnd:
    """What the caller's RTCP told us about our stream."""

    reports: int = 0
    fraction_lost: int | None = None  # in 1/256, the latest report
    cumulative_lost: int | None = None
    jitter: int | None = None  # timestamp units
    rtt_ms: float | None = None  # the latest round trip measured (needs an SR of ours echoed back)
    said_bye: bool = False


class RtcpSession:
    """The RTCP side of one call: what we know of the caller's stream and what the caller says of ours."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.cname = secrets.token_urlsafe(12)  # RFC 7022: random, so it says nothing about the host
        self.reception = ReceptionStats()
        self.far_end = FarEnd()
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of its NTP time, our arrival time)

    def compound(self, now_unix: float, sender: SenderInfo | None, bye: bool = False) -> bytes:
        """Our next report: an SR while we send (else an RR), the caller's block once we hear it, SDES CNAME."""
        blocks: tuple[ReportBlock, ...] = ()
        if self.reception.ssrc is not None and self.reception.received:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = min(0xFFFFFFFF, int((now_unix - self._last_sr[1]) * 65536))
            blocks = (self.reception.block(lsr, dlsr),)
        packet = Report(self.ssrc, sender, blocks).to_bytes() + sdes_cname(self.ssrc, self.cname)
        if bye:
            packet += goodbye(self.ssrc)
        return packet

    def receive(self, data: bytes, now_unix: float) -> list[Report | Goodbye]:
        """One RTCP datagram from the caller, and what it held; RtcpError (nothing changed) for garbage."""
        packets = parse_compound(data)
        for packet in packets:
            if isinstance(packet, Goodbye):
                self.far_end.said_bye |= self.reception.ssrc in packet.ssrcs
                continue
            if packet.sender is not None and packet.ssrc == self.reception.ssrc:
                self._last_sr = (ntp_middle(packet.sender.ntp), now_unix)
            for block in packet.blocks:
                if block.ssrc == self.ssrc:
                    self._far_end_report(block, now_unix)
        return packets

    def _far_end_report(self, block: ReportBlock, now_unix: float) -> None:
        far = self.far_end
        far.reports += 1
        far.fraction_lost, far.cumulative_lost, far.jitter = block.fraction_lost, block.cumulative_lost, block.jitter
        if block.last_sr:  # §6.4.1: round trip = arrival - LSR - DLSR, all in 1/65536 s
            rtt = (ntp_middle(ntp_time(now_unix)) - block.last_sr - block.delay_since_last_sr) % (1 << 32)
            if rtt < 1 << 31:  # a negative result (clock skew, a forged block) wraps to a huge number
                far.rtt_ms = round(rtt * 1000 / 65536, 1)

    def quality(self) -> dict[str, float | None]:
        """The line quality both ways: what we heard of the caller, and what the caller reported of us."""
        rx, far = self.reception, self.far_end
        return {
            "received_packets": rx.received,
            "lost_packets": max(0, rx.lost),
            "loss_pct": round(100 * max(0, rx.lost) / rx.expected, 2) if rx.expected else None,
            "jitter_ms": round(rx.jitter * 1000 / CLOCK_RATE, 1) if rx.ssrc is not None else None,
            "far_end_loss_pct": round(100 * far.fraction_lost / 256, 2) if far.fraction_lost is not None else None,
            "far_end_lost_packets": far.cumulative_lost,
            "far_end_jitter_ms": round(far.jitter * 1000 / CLOCK_RATE, 1) if far.jitter is not None else None,
            "rtt_ms": far.rtt_ms,
        }
