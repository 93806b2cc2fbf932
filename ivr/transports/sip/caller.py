"""A minimal SIP phone (UAC) in asyncio, for tests and benchmarks of the SIP endpoint.

It places one call over UDP or TCP, sends caller audio on a 20 ms clock
(silence between turns, as a line does), sends RFC 4733 keys, records what
arrives with arrival times (RTCP too, on its own port or muxed), sends
receiver reports on request, answers BYE and NOTIFY, puts the IVR on hold by
re-INVITE, and hangs up. The interop tests use real phones (baresip,
linphone); this one exists to measure and to reach protocol corners those
phones cannot be scripted into.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from sipmessage import URI, Request, Response

from ivr.audio.codecs import codec_for
from ivr.transports.sip.message import Message, StreamFramer, new_branch, new_tag, parse, response
from ivr.transports.sip.rtcp import Goodbye, Report, RtcpError, RtcpSession, is_rtcp
from ivr.transports.sip.rtp import DtmfEvent, RtpPacket, dtmf_packets
from ivr.transports.sip.sdp import negotiate, parse_offer
from ivr.transports.sip.transaction import ClientTransactions, Timers

FRAME_S = 0.02


@dataclass
class Received:
    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)  # (arrival monotonic, packet)
    rtcp: list[tuple[float, list[Report | Goodbye]]] = field(default_factory=list)  # (arrival monotonic, compound)

    def pcm(self, payload_type: int) -> bytes:
        codec = codec_for("audio/pcmu" if payload_type == 0 else "audio/pcma", 8000)
        ordered = sorted((p for _, p in self.packets if p.payload_type == payload_type), key=lambda p: p.timestamp)
        return b"".join(codec.decode(p.payload) for p in ordered)


class SipCaller:
    def __init__(self, server: tuple[str, int], transport: str = "UDP", host: str = "127.0.0.1",
                 sdp_formats: str = "0 8 101", direction: str = "sendrecv", ca_file: Path | None = None,
                 rtcp_mux: bool = False):  # fmt: skip
        self.server = server
        self.ca_file = ca_file  # TLS: the certificate to trust
        self.transport = transport
        self.host = host
        self.sdp_formats = sdp_formats
        self.direction = direction
        self.rtcp_mux = rtcp_mux  # offer a=rtcp-mux; otherwise RTCP has its own port, offered by a=rtcp
        self.drop_every = 0  # > 0: every Nth audio packet is not sent (its sequence number is used up: loss)
        self.call_id = f"{secrets.token_hex(8)}@caller"
        self.tag = new_tag()
        self.cseq = 1
        self.remote_tag: str | None = None
        self.remote_target: URI | None = None
        self.route_set: list[str] = []
        self.final: Response | None = None
        self.responses: list[Response] = []
        self.requests: list[Request] = []  # what the IVR sent us (BYE, REFER, ...)
        self.received = Received()
        self.bye_received = asyncio.Event()
        self.refer_answer = 202  # what a REFER gets; 2xx is followed by a NOTIFY with `refer_outcome`
        self.refer_outcome = "SIP/2.0 200 OK"
        self.answered = asyncio.Event()
        self.payload_type = 0
        self.ssrc = secrets.randbits(32)
        self._seq = 0
        self._ts = 0
        self._sip: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.StreamWriter | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtp_remote: tuple[str, int] | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._rtcp_remote: tuple[str, int] | None = None
        self.rtcp = RtcpSession(self.ssrc)
        self.sip_port = 0
        self.rtp_port = 0
        self.rtcp_port = 0
        self._transactions = ClientTransactions()
        self._audio: asyncio.Queue[bytes] = asyncio.Queue()
        self._keys: list[tuple[DtmfEvent, bool]] = []
        self._clock: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []

    # ---- sockets ----------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        caller = self

        class Rtp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                if caller.rtcp_mux and is_rtcp(data):
                    caller._on_rtcp(data)
                    return
                try:
                    packet = RtpPacket.parse(data)
                except ValueError:
                    return
                caller.received.packets.append((time.monotonic(), packet))
                caller.rtcp.reception.on_packet(
                    packet, time.monotonic(), audio=packet.payload_type == caller.payload_type
                )

        class Rtcp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                caller._on_rtcp(data)

        class Sip(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                caller._on_message(data)

        self._rtp, _ = await loop.create_datagram_endpoint(Rtp, local_addr=(self.host, 0))
        self.rtp_port = self._rtp.get_extra_info("sockname")[1]
        if not self.rtcp_mux:
            self._rtcp, _ = await loop.create_datagram_endpoint(Rtcp, local_addr=(self.host, 0))
            self.rtcp_port = self._rtcp.get_extra_info("sockname")[1]
        if self.transport in ("TCP", "TLS"):
            context = None
            if self.transport == "TLS":
                context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            reader, self._tcp = await asyncio.open_connection(*self.server, ssl=context)
            self.sip_port = self._tcp.get_extra_info("sockname")[1]
            self._tasks.append(asyncio.create_task(self._read_tcp(reader)))
        else:
            self._sip, _ = await loop.create_datagram_endpoint(Sip, local_addr=(self.host, 0))
            self.sip_port = self._sip.get_extra_info("sockname")[1]

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for frame in framer.feed(data):
                self._on_message(frame)

    def send_raw(self, data: bytes) -> None:
        if self._tcp is not None:
            self._tcp.write(data)
        elif self._sip is not None:
            self._sip.sendto(data, self.server)

    def close(self) -> None:
        for task in [*self._tasks, *([self._clock] if self._clock else [])]:
            task.cancel()
        for transport in (self._sip, self._rtp, self._rtcp, self._tcp):
            if transport is not None:
                transport.close()

    # ---- signalling ------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message: Message = parse(data)
        except ValueError:
            return
        if isinstance(message, Response):
            self.responses.append(message)
            self._transactions.on_response(message)
            return
        self.requests.append(message)
        if message.method == "ACK":
            return
        if message.method == "REFER":
            self.send_raw(bytes(response(message, self.refer_answer)))
            if self.refer_answer < 300:
                self._tasks.append(asyncio.create_task(self._notify_refer()))
            return
        self.send_raw(bytes(response(message, 200)))
        if message.method == "BYE":
            self.bye_received.set()

    def _on_rtcp(self, data: bytes) -> None:
        try:
            self.received.rtcp.append((time.monotonic(), self.rtcp.receive(data, time.time())))
        except RtcpError:
            pass

    def send_receiver_report(self) -> None:
        """An RR about the IVR's stream (echoing its last SR, so the IVR can measure the round trip)."""
        transport = self._rtp if self.rtcp_mux else self._rtcp
        if transport is not None and self._rtcp_remote is not None:
            transport.sendto(self.rtcp.compound(time.time(), None), self._rtcp_remote)

    async def _notify_refer(self) -> None:
        """RFC 3515 §2.4.5: the outcome of the transfer as a message/sipfrag NOTIFY."""
        notify = self._dialog_request("NOTIFY", self.refer_outcome.encode() + b"\r\n")
        notify.headers.set("Event", "refer")
        notify.headers.set("Subscription-State", "terminated;reason=noresource")
        notify.headers.set("Content-Type", "message/sipfrag;version=2.0")
        await self._transact(notify)

    def _request(self, method: str, uri: URI, to: str, body: bytes = b"", branch: str | None = None) -> Request:
        request = Request(method, uri, body)
        request.headers.add(
            "Via", f"SIP/2.0/{self.transport} {self.host}:{self.sip_port};branch={branch or new_branch()};rport"
        )
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<sip:+4915112345678@{self.host}>;tag={self.tag}")
        request.headers.add("To", to)
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.cseq} {method}")
        transport = f";transport={self.transport.lower()}" if self.transport != "UDP" else ""
        request.headers.add("Contact", f"<sip:caller@{self.host}:{self.sip_port}{transport}>")
        if body:
            request.headers.add("Content-Type", "application/sdp")
        request.headers.add("Content-Length", str(len(body)))  # set again if the body changes
        return request

    async def _transact(self, request: Request, timeout: float = 10.0) -> Response:
        """A client transaction (a CANCEL shares its INVITE's branch, the CSeq method tells them apart)."""
        timers = Timers(give_up=timeout)
        try:
            return await self._transactions.run(request, self.send_raw, reliable=self.transport != "UDP", timers=timers)
        except TimeoutError:
            raise TimeoutError(f"no final answer to {request.method}") from None

    def sdp(self, direction: str | None = None, version: int = 1) -> bytes:
        formats = self.sdp_formats.split()
        lines = ["v=0", f"o=caller 1 {version} IN IP4 {self.host}", "s=call", f"c=IN IP4 {self.host}", "t=0 0",
                 f"m=audio {self.rtp_port} RTP/AVP {' '.join(formats)}"]  # fmt: skip
        names = {"0": "PCMU/8000", "8": "PCMA/8000", "101": "telephone-event/8000", "9": "G722/8000", "18": "G729/8000"}
        lines += [f"a=rtpmap:{f} {names[f]}" for f in formats if f in names]
        if "101" in formats:
            lines.append("a=fmtp:101 0-16")
        lines += [
            "a=ptime:20",
            "a=rtcp-mux" if self.rtcp_mux else f"a=rtcp:{self.rtcp_port}",
            f"a={direction or self.direction}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def call(
        self, number: str, timeout: float = 15.0, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        """INVITE; on 200 the ACK is sent and media starts. Returns the final answer."""
        await self.open()
        uri = URI.parse(f"sip:{number}@{self.server[0]}:{self.server[1]}")
        self.invite_to = f"<sip:{number}@{self.server[0]}>"
        invite = self._request("INVITE", uri, self.invite_to, self.sdp())
        for name, value in extra_headers:
            invite.headers.add(name, value)
        self.invite = invite
        self.final = await self._transact(invite, timeout)
        to = self.final.to_address
        self.remote_tag = to.parameters.get("tag")
        if self.final.code >= 300:
            self._ack(self.final, invite)
            return self.final
        contacts = self.final.contact
        self.remote_target = contacts[0].uri if contacts else uri
        self.route_set = [str(a) for a in reversed(self.final.record_route)]  # §12.1.2: through the proxies
        answer = parse_offer(self.final.body)
        chosen, _ = negotiate(answer)
        self.payload_type = chosen.payload_type
        self.dtmf_payload_type = chosen.dtmf_payload_type
        self._rtp_remote = (chosen.remote_address, chosen.remote_port)
        self._rtcp_remote = chosen.rtcp_destination
        self._ack(self.final, invite)
        self._clock = asyncio.create_task(self._send_clock())
        self.answered.set()
        return self.final

    def _ack(self, final: Response, invite: Request) -> None:
        """2xx: a new transaction to the Contact; error: the same branch (RFC 3261 §17.1.1.3)."""
        same = final.code >= 300
        branch = str(invite.via[0].parameters.get("branch")) if same else None
        uri = invite.uri if same else (self.remote_target or invite.uri)
        ack = self._request("ACK", uri, str(final.to_address), branch=branch)
        ack.headers.set("CSeq", f"{invite.cseq.sequence} ACK")
        if not same:
            self._route(ack)
        self.send_raw(bytes(ack))

    def _route(self, request: Request) -> Request:
        for route in self.route_set:
            request.headers.add("Route", route)
        return request

    def _dialog_request(self, method: str, body: bytes = b"") -> Request:
        self.cseq += 1
        assert self.final is not None
        return self._route(
            self._request(method, self.remote_target or self.invite.uri, str(self.final.to_address), body)
        )

    async def hang_up(self) -> Response:
        answer = await self._transact(self._dialog_request("BYE"))
        self.close()
        return answer

    async def reinvite(self, direction: str, version: int) -> Response:
        request = self._dialog_request("INVITE", self.sdp(direction, version))
        answer = await self._transact(request)
        ack = self._route(self._request("ACK", self.remote_target or self.invite.uri, str(answer.to_address)))
        ack.headers.set("CSeq", f"{request.cseq.sequence} ACK")
        self.send_raw(bytes(ack))
        return answer

    async def cancel(self) -> None:
        request = self._request(
            "CANCEL", self.invite.uri, self.invite_to, branch=str(self.invite.via[0].parameters.get("branch"))
        )
        request.headers.set("CSeq", f"{self.invite.cseq.sequence} CANCEL")
        await self._transact(request)

    # ---- media --------------------------------------------------------------------------

    def play(self, pcm: bytes) -> None:
        """Queues PCM16 8 kHz audio to send, after what is already queued."""
        for i in range(0, len(pcm), 320):
            self._audio.put_nowait(pcm[i : i + 320].ljust(320, b"\0"))

    def press(self, key: str) -> None:
        self._keys.extend(dtmf_packets(key, 100))

    async def _send_clock(self) -> None:
        codec = codec_for("audio/pcmu" if self.payload_type == 0 else "audio/pcma", 8000)
        loop = asyncio.get_running_loop()
        due = loop.time()
        key_ts = 0
        while True:
            due += FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self._keys and self.dtmf_payload_type is not None:
                event, first = self._keys.pop(0)
                if first:
                    key_ts = self._ts
                packet = RtpPacket(self.dtmf_payload_type, self._seq, key_ts, self.ssrc, event.to_bytes(), first)
            else:
                pcm = self._audio.get_nowait() if not self._audio.empty() else bytes(320)
                packet = RtpPacket(self.payload_type, self._seq, self._ts, self.ssrc, codec.encode(pcm), self._seq == 0)
            self._seq = (self._seq + 1) % 65536
            self._ts += 160
            if self.drop_every and self._seq % self.drop_every == 0 and packet.payload_type == self.payload_type:
                continue
            if self._rtp is not None and self._rtp_remote is not None:
                self._rtp.sendto(packet.to_bytes(), self._rtp_remote)
