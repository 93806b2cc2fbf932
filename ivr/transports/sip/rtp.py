"""RTP packets, RFC 4733 keypad events and the receive jitter buffer (RFC 3550, RFC 3551, RFC 4733).

Pure data: nothing here touches a socket or a clock, so every piece is tested
and fuzzed on its own. `RtpStream` (stream.py) drives them every 20 ms.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
EVENT = struct.Struct("!BBH")
DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15
SEQ_MOD = 1 << 16


class RtpError(ValueError):
    """A datagram that is not an RTP packet we can use; it is dropped."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """RFC 3550 §5.1; CSRCs, header extensions and padding are skipped."""
        if len(data) < HEADER.size:
            raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6}")
        offset = HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
            if len(data) < offset + 4:
                raise RtpError("truncated header extension")
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        end = len(data)
        if first & 0x20:  # padding: the last byte counts the padding bytes, itself included
            if end == 0 or data[-1] == 0:
                raise RtpError("bad padding length")
            end -= data[-1]
        if offset > end:
            raise RtpError("header longer than the packet")
        payload_type = second & 0x7F
        if 72 <= payload_type <= 76:
            raise RtpError("an RTCP packet on the RTP port")  # RFC 5761 §4
        return cls(payload_type, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))

    def to_bytes(self) -> bytes:
        first = RTP_VERSION << 6
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return HEADER.pack(first, second, self.sequence % SEQ_MOD, self.timestamp % (1 << 32), self.ssrc) + self.payload


@dataclass(frozen=True)
class DtmfEvent:
    """One RFC 4733 telephone-event payload."""

    key: str
    end: bool
    volume: int  # dBm0 below zero, 0-63
    duration: int  # in timestamp units (1/8000 s)

    @classmethod
    def parse(cls, payload: bytes) -> DtmfEvent:
        if len(payload) < EVENT.size:
            raise RtpError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = EVENT.unpack_from(payload)
        if event >= len(DTMF_EVENTS):
            raise RtpError(f"telephone-event {event} is not a keypad digit")
        return cls(DTMF_EVENTS[event], bool(flags & 0x80), flags & 0x3F, duration)

    def to_bytes(self) -> bytes:
        return EVENT.pack(DTMF_EVENTS.index(self.key), (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)


class DtmfReceiver:
    """Turns the repeated packets of RFC 4733 events into one key press each.

    All packets of one event share its timestamp (§2.5.1.2), and its end packet
    is sent three times; a key is reported on the first packet seen of a new
    event, so a lost start packet does not lose the key.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None  # (ssrc, timestamp) of the last event reported

    def receive(self, packet: RtpPacket) -> str | None:
        event = DtmfEvent.parse(packet.payload)
        key = (packet.ssrc, packet.timestamp)
        if key == self._last:
            return None
        self._last = key
        return event.key


def dtmf_packets(key: str, duration_ms: int = 120, volume: int = 10) -> list[tuple[DtmfEvent, bool]]:
    """The payloads of one key press, one per 20 ms, the end packet three times (§2.5.1.4).

    Returns (event, marker) pairs; all share the timestamp of the event start.
    """
    if key not in DTMF_EVENTS:
        raise ValueError(f"{key!r} is not a DTMF key")
    steps = max(1, duration_ms // 20)
    packets = [(DtmfEvent(key, False, volume, 160 * (i + 1)), i == 0) for i in range(steps - 1)]
    packets += [(DtmfEvent(key, True, volume, 160 * steps), steps == 1 and n == 0) for n in range(3)]
    return packets


@dataclass
class JitterStats:
    received: int = 0
    lost: int = 0  # never arrived, concealed
    late: int = 0  # arrived after their turn to play had passed
    duplicates: int = 0
    reordered: int = 0
    overflows: int = 0  # the buffer was longer than its limit: the oldest audio was dropped


class JitterBuffer:
    """Reorders packets by sequence number and releases them `depth` packets behind the newest.

    The stream pulls one packet per 20 ms tick. A gap whose later packets have
    arrived is declared lost (the caller conceals it); an empty buffer is an
    underrun and the buffer refills to `depth` before playing again, which is
    how it adapts to a sender that paused (on hold, silence suppression).
    """

    def __init__(self, depth: int = 3, limit: int = 50):
        self.depth = depth
        self.limit = limit
        self.stats = JitterStats()
        self._packets: dict[int, bytes] = {}
        self._next: int | None = None  # extended sequence number to play next
        self._highest: int | None = None
        self._playing = False
        self._ssrc: int | None = None

    def _extend(self, sequence: int) -> int:
        """RFC 3550 Appendix A.1: the 16-bit number unwrapped next to the highest seen."""
        if self._highest is None:
            return sequence + SEQ_MOD  # room below the first packet for ones that were reordered
        highest = self._highest
        base = highest - highest % SEQ_MOD
        candidates = (base - SEQ_MOD + sequence, base + sequence, base + SEQ_MOD + sequence)
        return min(candidates, key=lambda c: abs(c - highest))

    def push(self, packet: RtpPacket) -> None:
        if packet.ssrc != self._ssrc:  # a new source (the PBX switched streams): start over
            self._ssrc = packet.ssrc
            self._packets.clear()
            self._next = self._highest = None
            self._playing = False
        self.stats.received += 1
        ext = self._extend(packet.sequence)
        if self._next is not None and ext < self._next:
            self.stats.late += 1
            return
        if ext in self._packets:
            self.stats.duplicates += 1
            return
        if self._highest is not None and ext < self._highest:
            self.stats.reordered += 1
        self._highest = ext if self._highest is None else max(self._highest, ext)
        self._packets[ext] = packet.payload
        if len(self._packets) > self.limit:
            self.stats.overflows += 1
            oldest = min(self._packets)
            del self._packets[oldest]
            if self._next is not None and self._next <= oldest:
                self._next = oldest + 1

    def pop(self) -> tuple[str, bytes | None]:
        """("audio", payload), ("lost", None) or ("wait", None) for this tick."""
        if not self._packets:
            self._playing = False
            return "wait", None
        if not self._playing:
            if self._highest is None or len(self._packets) < self.depth:
                return "wait", None
            self._playing = True
            self._next = min(self._packets)
        assert self._next is not None
        payload = self._packets.pop(self._next, None)
        self._next += 1
        if payload is None:
            self.stats.lost += 1
            return "lost", None
        return "audio", payload
