"""One call's RTP media: a UDP socket and a 20 ms clock (RFC 3550, RFC 3551, RFC 4733).

Every tick sends exactly one packet (prompt audio, or silence when nothing is
queued, so the far end's jitter buffer and NAT bindings stay fed) and plays
one packet out of the receive jitter buffer. The tick runs on an absolute
schedule: a late wake-up is counted, and the next tick is not moved.

Sending: sequence numbers +1 per packet, timestamps +160 per 20 ms (they keep
running while we are on hold and send nothing), the marker bit on the first
packet of a talkspurt. Keypad events replace audio packets while they last.
Receiving is symmetric (RFC 4961): once the caller's packets arrive, we send
to where they come from, which is what works behind NAT. Only packets from
an expected host count (`_expected_host`): the address in the caller's SDP
or the host its signalling came from, and inside `allow_from`. Such a host
may send from another port than the SDP names (a NAT rewrote it); any other
host is dropped and counted in `dropped_foreign`, so spraying the RTP port
range can neither steal a call's audio nor feed it.

RTCP (rtcp.py) uses the next port up, or the RTP port when both sides agreed
on rtcp-mux: a report every 5 s or so, and a BYE when the call ends. The
RTCP socket and the host comparison are in media_sockets.py, the counters
(`SendStats`) in rtp_stats.py.
"""

from __future__ import annotations

import asyncio
import audioop
import dataclasses
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable

from ivr.audio.codecs import Codec, codec_for
from ivr.audio.dtmf import ToneDetector, tone
from ivr.transports.sip.media_sockets import Host, RtcpPort, ip_host
from ivr.transports.sip.rtcp import RtcpError, RtcpSession, SenderInfo, is_rtcp, next_interval, ntp_time
from ivr.transports.sip.rtp import DtmfEvent, DtmfReceiver, JitterBuffer, RtpError, RtpPacket, dtmf_packets
from ivr.transports.sip.rtp_stats import SendStats
from ivr.transports.sip.sdp import Negotiated

log = logging.getLogger("ivr.sip.rtp")

FRAME_S = 0.02
SAMPLES = 160  # per 20 ms at 8 kHz
RELATCH_AFTER_S = 2.0  # symmetric RTP: a new source is taken when the old one has been silent this long
RESYNC_AFTER_S = 0.2  # the loop stalled this long: restart the schedule instead of sending a burst

OnAudio = Callable[[bytes], None]
OnKey = Callable[[str], None]
OnMark = Callable[[str], None]


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class RtpStream(asyncio.DatagramProtocol):
    def __init__(self, on_audio: OnAudio, on_key: OnKey, on_mark: OnMark, jitter_frames: int = 3,
                 signalling_host: str | None = None, allowed: Callable[[str], bool] = lambda host: True):  # fmt: skip
        """`signalling_host` is where the call's INVITE came from; `allowed` is the endpoint's allow_from check."""
        self.on_audio = on_audio
        self.on_key = on_key
        self.on_mark = on_mark
        self.stats = SendStats()
        self.jitter = JitterBuffer(depth=jitter_frames)
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0
        self.negotiated: Negotiated | None = None
        self.codec: Codec = codec_for("audio/pcmu", 8000)
        self._remote: tuple[str, int] | None = None
        self._latched_at: float | None = None
        self._signalling_host = ip_host(signalling_host)
        self._allowed = allowed
        self._expected: set[Host] = set()  # hosts media may come from (configure)
        self._outbound: deque[bytes | _Mark] = deque()
        self._keys: deque[tuple[DtmfEvent, bool]] = deque()  # queued RFC 4733 packets (event, marker)
        self._key_timestamp = 0
        self._ssrc = secrets.randbits(32)
        self._sequence = random.randrange(1 << 16)  # random start (RFC 3550 §5.1)
        self._timestamp = random.randrange(1 << 32)
        self._talkspurt = True  # the next packet sent starts one: marker bit
        self._dtmf_in = DtmfReceiver()
        self._tones: ToneDetector | None = None
        self._last_pcm = b""
        self._concealed = 0
        self._ticker: asyncio.Task | None = None
        self.rtcp = RtcpSession(self._ssrc)
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_remote: tuple[str, int] | None = None  # latched: where the caller's RTCP comes from
        self._rtcp_due = 0.0
        self._octets = 0  # payload bytes sent, for our sender reports

    # ---- set-up --------------------------------------------------------------

    async def bind(self, host: str, ports: tuple[int, int] | None) -> int:
        """Binds an even RTP port and the odd RTCP port above it (RFC 3550 §11), from the range or any free pair."""
        loop = asyncio.get_running_loop()
        candidates = [0] * 50 if ports is None else list(range(ports[0] + ports[0] % 2, ports[1], 2))
        random.shuffle(candidates)
        for port in candidates[:200]:
            try:
                await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
            except OSError:
                continue
            if self.local_port % 2 == 0:
                try:
                    self._rtcp_transport, _ = await loop.create_datagram_endpoint(
                        lambda: RtcpPort(self.rtcp_received), local_addr=(host, self.local_port + 1)
                    )
                    return self.local_port
                except OSError:
                    pass
            assert self.transport is not None
            self.transport.close()  # an odd port from the system, or its neighbour is taken: next pair
            self.transport = None
        raise OSError(f"no free RTP/RTCP port pair in {ports or 'the system range'}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local_port = transport.get_extra_info("sockname")[1]

    def configure(self, negotiated: Negotiated, inband_dtmf: str = "auto") -> None:
        """Applies an offer/answer result (the first INVITE, or a re-INVITE for hold/resume)."""
        resumed = self.negotiated is not None and not self.negotiated.we_send and negotiated.we_send
        self.negotiated = negotiated
        self.codec = codec_for("audio/pcmu" if negotiated.codec == "PCMU" else "audio/pcma", 8000)
        if self._latched_at is None or negotiated.remote_address not in ("0.0.0.0", "::"):
            self._remote = (negotiated.remote_address, negotiated.remote_port)
            self._latched_at = None
        hosts = {ip_host(negotiated.remote_address), ip_host(negotiated.rtcp_address), self._signalling_host}
        self._expected = {h for h in hosts if h is not None and not h.is_unspecified}
        wants_tones = inband_dtmf == "always" or (inband_dtmf == "auto" and negotiated.dtmf_payload_type is None)
        self._tones = ToneDetector() if wants_tones else None
        if resumed:
            self._talkspurt = True

    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop())

    def close(self) -> None:
        """Ends the media; the caller is told by an RTCP BYE (§6.6) when media had started."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
            self._send_rtcp(bye=True)
        for transport in (self.transport, self._rtcp_transport):
            if transport is not None:
                transport.close()

    # ---- outbound --------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        """Queues one 20 ms frame of PCM16 at 8 kHz; the clock sends it."""
        self._outbound.append(pcm)

    def send_mark(self, name: str) -> None:
        """`on_mark(name)` fires when every frame queued before it has been sent."""
        self._outbound.append(_Mark(name))

    def clear(self) -> None:
        """Barge-in: drop the queued audio (marks too: the player has forgotten them)."""
        self._outbound.clear()
        self._talkspurt = True

    def send_key(self, key: str, duration_ms: int = 120) -> None:
        """An RFC 4733 key press, or the key's tones when the caller offered no telephone-event."""
        if self.negotiated is not None and self.negotiated.dtmf_payload_type is None:
            pcm = tone(key, duration_ms) + bytes(2 * SAMPLES * 2)
            for i in range(0, len(pcm) - 2 * SAMPLES + 1, 2 * SAMPLES):
                self._outbound.append(pcm[i : i + 2 * SAMPLES])
            return
        self._keys.extend(dtmf_packets(key, duration_ms))
        self.stats.dtmf_sent += 1

    @property
    def queued_frames(self) -> int:
        return sum(1 for item in self._outbound if isinstance(item, bytes))

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        self._rtcp_due = due + next_interval() / 2  # §6.2: the first report after half an interval
        while True:
            due += FRAME_S
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lateness = -delay
                self.stats.max_lateness_ms = max(self.stats.max_lateness_ms, lateness * 1000)
                if lateness > FRAME_S:
                    self.stats.late_ticks += 1
                if lateness > RESYNC_AFTER_S:
                    self.stats.resyncs += 1
                    due = loop.time()
            try:
                self._send_tick()
                self._receive_tick()
                if loop.time() >= self._rtcp_due:
                    self._send_rtcp()
                    self._rtcp_due = loop.time() + next_interval()
            except Exception:  # one bad tick must not end the call's media
                log.exception("rtp.tick_failed")

    def _marks_reached(self) -> None:
        while self._outbound and isinstance(self._outbound[0], _Mark):
            self.on_mark(self._outbound.popleft().name)  # type: ignore[union-attr]

    def _send_tick(self) -> None:
        self._marks_reached()
        item = self._outbound.popleft() if self._outbound else None
        frame = item if isinstance(item, bytes) else None  # marks at the head were taken off just above
        self._marks_reached()  # a prompt's mark fires with its last frame, not a tick later
        negotiated = self.negotiated
        if negotiated is None or not negotiated.we_send or self._remote is None:
            self._timestamp += SAMPLES  # the media clock runs on while we are silent (on hold)
            self._keys.clear()
            return
        if self._keys:
            event, first = self._keys.popleft()
            if first:
                self._key_timestamp = self._timestamp
            packet = RtpPacket(negotiated.dtmf_payload_type or 101, self._sequence, self._key_timestamp, self._ssrc,
                               event.to_bytes(), marker=first)  # fmt: skip
        else:
            pcm = frame if frame is not None and len(frame) == 2 * SAMPLES else bytes(2 * SAMPLES)
            packet = RtpPacket(negotiated.payload_type, self._sequence, self._timestamp, self._ssrc,
                               self.codec.encode(pcm), marker=self._talkspurt)  # fmt: skip
            self._talkspurt = False
        self._sequence = (self._sequence + 1) % (1 << 16)
        self._timestamp = (self._timestamp + SAMPLES) % (1 << 32)
        if self.transport is not None:
            self.transport.sendto(packet.to_bytes(), self._remote)
            self.stats.packets += 1
            self._octets += len(packet.payload)

    # ---- RTCP -----------------------------------------------------------------

    def _send_rtcp(self, bye: bool = False) -> None:
        """An SR while we send (an RR while we are on hold), to the caller's RTCP address."""
        negotiated = self.negotiated
        if negotiated is None or self._remote is None:
            return
        if negotiated.rtcp_mux:
            transport, destination = self.transport, self._remote
        else:
            transport, destination = self._rtcp_transport, self._rtcp_remote or negotiated.rtcp_destination
        if transport is None or transport.is_closing():
            return
        now = time.time()
        sender = (
            SenderInfo(ntp_time(now), self._timestamp, self.stats.packets, self._octets) if negotiated.we_send else None
        )
        transport.sendto(self.rtcp.compound(now, sender, bye=bye), destination)
        self.stats.rtcp_sent += 1

    def rtcp_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """The caller's reports; taken only from an expected host, and once RTP flows from the host it comes from."""
        latched_elsewhere = self._latched_at is not None and self._remote is not None and addr[0] != self._remote[0]
        if latched_elsewhere or not self._expected_host(addr[0]):
            self.stats.dropped_foreign += 1
            return
        try:
            self.rtcp.receive(data, time.time())
        except RtcpError:
            self.stats.rtcp_dropped += 1
            return
        self.stats.rtcp_received += 1
        if self.negotiated is not None and not self.negotiated.rtcp_mux:
            self._rtcp_remote = addr  # symmetric RTCP, as for RTP

    def quality(self) -> dict:
        """The call's media figures both ways, for the call-event log (MEDIA_QUALITY)."""
        return {
            "codec": self.negotiated.codec if self.negotiated else None,
            "sent_packets": self.stats.packets,
            **self.rtcp.quality(),
            "concealed_packets": self.jitter.stats.lost,
            "late_packets": self.jitter.stats.late,
            "rtcp_sent": self.stats.rtcp_sent,
            "rtcp_received": self.stats.rtcp_received,
        }

    # ---- inbound ---------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        negotiated = self.negotiated
        if negotiated is None:
            return
        if negotiated.rtcp_mux and is_rtcp(data):
            self.rtcp_received(data, addr[:2])
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.stats.dropped_bad += 1
            return
        if packet.payload_type not in (negotiated.payload_type, negotiated.dtmf_payload_type):
            self.stats.dropped_bad += 1  # comfort noise, video, another codec: not ours
            return
        if not self._accept_source(addr[:2]):
            self.stats.dropped_foreign += 1
            return
        is_audio = packet.payload_type == negotiated.payload_type
        self.rtcp.reception.on_packet(packet, asyncio.get_running_loop().time(), audio=is_audio)
        if not is_audio:
            try:
                key = self._dtmf_in.receive(packet)
            except RtpError:
                self.stats.dropped_bad += 1
                return
            if key is not None:
                self.on_key(key)
            # The event took an audio packet's place in the sequence (RFC 4733 §2.5): its slot plays as
            # silence; left out, the jitter buffer would see a gap and conceal it as a lost packet.
            packet = dataclasses.replace(packet, payload=b"")
        self.jitter.push(packet)

    def _expected_host(self, address: str) -> bool:
        """The latching rule: media comes from the SDP's host or the signalling peer's, inside allow_from.

        The port is not checked: a NAT in front of the caller may send from
        another port than the SDP names, and symmetric RTP follows it there.
        """
        host = ip_host(address)
        return host is not None and host in self._expected and self._allowed(str(host))

    def _accept_source(self, addr: tuple[str, int]) -> bool:
        if not self._expected_host(addr[0]):
            return False
        now = asyncio.get_running_loop().time()
        if self._latched_at is not None and addr != self._remote and now - self._latched_at < RELATCH_AFTER_S:
            return False
        if addr != self._remote:
            log.info("rtp.latched", extra={"port": addr[1]})
        self._remote = addr
        self._latched_at = now
        return True

    def _receive_tick(self) -> None:
        if self.negotiated is None or not self.negotiated.we_receive:
            return
        kind, payload = self.jitter.pop()
        if kind == "wait":
            return
        if kind == "lost":
            # Conceal one lost packet with the last one at half level, longer losses with silence.
            self._concealed += 1
            pcm = audioop.mul(self._last_pcm, 2, 0.5) if self._concealed == 1 and self._last_pcm else bytes(2 * SAMPLES)
        elif not payload:  # a keypad event's slot
            self._concealed = 0
            pcm = bytes(2 * SAMPLES)
        else:
            self._concealed = 0
            try:
                pcm = self.codec.decode(payload)
            except ValueError:
                return
            self._last_pcm = pcm
        if self._tones is not None:
            key = self._tones.process(pcm)
            if key is not None:
                self.on_key(key)
        self.on_audio(pcm)
