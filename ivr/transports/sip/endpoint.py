"""The SIP endpoint: UDP, TCP and TLS listeners, and dispatch to transactions and calls (RFC 3261 §17, §18).

The transactions themselves, their timers and the one retransmission loop
are in transaction.py; the dialog of a call in call.py. What this module
does for the calls above it:
- answers retransmitted requests from a response cache instead of handling
  them twice (server transactions, kept 32 s, Timer J);
- sends its own requests as client transactions (retransmitted over UDP,
  given up after 64*T1: Timers E/F);
- sends responses back to where the request came from (RFC 3581 symmetric
  response, which is what works behind NAT and through proxies);
- turns every malformed message into a 400-class answer or a dropped
  datagram, and closes a TCP connection that stops making sense. Nothing a
  peer sends can raise out of a transport callback or touch other calls;
  a request whose handler fails anyway gets a 500, so its transaction ends
  and is forgotten like any other;
- counts a call against `max_calls` only once its ACK has come: an INVITE
  nobody acknowledges holds no call slot, only one of the 4 * max_calls
  places for dialogs waiting for their ACK (each holds an RTP port pair
  until the 32 s ACK timer ends it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from typing import TYPE_CHECKING

from sipmessage import Request, Response

from ivr.errors import ConfigError
from ivr.transports.sip.call import SipCall
from ivr.transports.sip.message import (
    ALLOW,
    MAX_FORWARDS,
    REASONS,
    SERVER,
    SipParseError,
    StreamFramer,
    header_number,
    new_branch,
    parse,
    response,
    transaction_key,
)
from ivr.transports.sip.register import Registration
from ivr.transports.sip.rtp_stats import SendStats

# KEEP_TRANSACTION_S is still read from here (tests, tools) though Timer J now lives in transaction.py
from ivr.transports.sip.transaction import KEEP_TRANSACTION_S, ClientTransactions, Flow, ServerTransaction  # noqa: F401

if TYPE_CHECKING:
    from ivr.runtime import Runtime
    from ivr.settings import SipSettings

log = logging.getLogger("ivr.sip")

PENDING_PER_CALL = 4  # dialogs waiting for their ACK, per max_calls: they hold RTP ports but no call slot
_RAW_HEADER = re.compile(rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:.*$")


class SipEndpoint:
    """Listens, matches transactions, and hands dialog work to SipCall objects."""

    def __init__(self, runtime: Runtime, settings: SipSettings):
        self.runtime = runtime
        self.settings = settings
        self.calls: dict[str, SipCall] = {}  # by Call-ID, while the dialog exists
        self.live: set[SipCall] = set()  # until the call's session has finished its bookkeeping
        self.port = settings.port
        self.bad_messages = 0
        self._server_tx: dict[tuple[str, str, str], ServerTransaction] = {}
        self._client_tx = ClientTransactions()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tls: asyncio.base_events.Server | None = None
        self.tls_port: int | None = None
        self._tcp_flows: dict[tuple[str, int], Flow] = {}
        self._sweeper: asyncio.Task | None = None
        self._registration: Registration | None = None
        self.finished_media = SendStats()  # RTP counters of calls that have ended
        self._networks = [ipaddress.ip_network(n, strict=False) for n in settings.allow_from]

    def health(self) -> dict:
        """RTP pacing and robustness counters over all calls so far, for /healthz and the benchmark."""
        totals = SendStats()
        totals.add(self.finished_media)
        for call in self.live:
            totals.add(call.stream.stats)
        return {"port": self.port, "calls": self.confirmed_calls(), "calls_pending": len(self.calls) - self.confirmed_calls(),
                **vars(totals), "bad_messages": self.bad_messages}  # fmt: skip

    def confirmed_calls(self) -> int:
        """Calls that count against `max_calls`: their ACK has come (SipCall.counted)."""
        return sum(1 for call in self.calls.values() if call.counted)

    @property
    def address(self) -> str:
        """The address peers reach us on: `advertise` (behind NAT), else the listening host."""
        return self.settings.advertise or self.settings.host

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        tls = self.settings.tls
        if tls is not None:  # before binding anything: a bad certificate stops start-up and leaves no socket open
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(tls.certificate, tls.key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError([f"sip.tls: cannot load {tls.certificate} / {tls.key}: {exc}"]) from exc
        loop = asyncio.get_running_loop()
        endpoint = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                endpoint._received(data, Flow("UDP", addr[:2], lambda out: endpoint._udp_send(out, addr[:2])))

        self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.settings.host, self.port))
        self.port = self._udp.get_extra_info("sockname")[1]
        self._udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # bursts of calls
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        if "tcp" in self.settings.transports:
            self._tcp = await asyncio.start_server(lambda r, w: self._stream_client(r, w, "TCP"), self.settings.host,
                                                   self.port, family=family)  # fmt: skip
        if tls is not None:
            self._tls = await asyncio.start_server(lambda r, w: self._stream_client(r, w, "TLS"), self.settings.host,
                                                   tls.port, family=family, ssl=context, ssl_handshake_timeout=10)  # fmt: skip
            self.tls_port = self._tls.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep())
        if self.settings.register is not None:
            self._registration = Registration(self, self.settings.register)
            self._registration.start()
        log.info(
            "sip.listening",
            extra={"host": self.settings.host, "port": self.port, "transports": list(self.settings.transports)},
        )

    async def stop(self) -> None:
        await asyncio.gather(*(call.shutdown() for call in list(self.live)))
        if self._registration is not None:
            await self._registration.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
        if self._udp is not None:
            self._udp.close()

    def _udp_send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(data, addr)

    async def _stream_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str) -> None:
        remote = writer.get_extra_info("peername")[:2]
        flow = Flow(transport, remote, writer.write, writer.is_closing)
        self._tcp_flows[remote] = flow
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                try:
                    frames = framer.feed(data)
                except SipParseError as exc:
                    self.bad_messages += 1
                    log.warning("sip.bad_stream", extra={"error": exc.reason, "transport": transport})
                    break  # the stream has lost its framing: nothing after this can be trusted
                except Exception:  # a framer bug: the connection ends, the listener does not
                    self.bad_messages += 1
                    log.exception("sip.framer_failed", extra={"transport": transport})
                    break
                for frame in frames:
                    self._received(frame, flow)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tcp_flows.pop(remote, None)
            writer.close()

    async def _sweep(self) -> None:
        """Forgets answered transactions after Timer J, and any transaction after KEEP_UNANSWERED_S."""
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for key in [k for k, tx in self._server_tx.items() if self._expired(tx, now)]:
                del self._server_tx[key]

    @staticmethod
    def _expired(tx: ServerTransaction, now: float) -> bool:
        return tx.expired(now)

    # ---- inbound -------------------------------------------------------------------

    def _received(self, data: bytes, flow: Flow) -> None:
        if not data.strip():
            return  # CRLF keep-alive (RFC 5626 §4.4.1)
        try:
            message = parse(data)
        except SipParseError as exc:
            self.bad_messages += 1
            log.warning("sip.bad_message", extra={"error": exc.reason, "transport": flow.transport})
            self._reject_raw(data, exc, flow)
            return
        except Exception:  # a parser bug must not escape the transport callback: the datagram is dropped
            self.bad_messages += 1
            log.exception("sip.parser_failed", extra={"transport": flow.transport})
            return
        try:
            if isinstance(message, Response):
                self._client_tx.on_response(message)
            else:
                self._on_request(message, flow)
        except Exception:
            self.bad_messages += 1
            log.exception("sip.handler_failed", extra={"transport": flow.transport})

    def _reject_raw(self, data: bytes, exc: SipParseError, flow: Flow) -> None:
        """A 400-class answer to an unparsable request, if it has what an answer must echo (§8.2.6)."""
        if data.startswith((b"SIP/2.0", b"ACK")):
            return  # never answer a response or an ACK
        head = data.split(b"\r\n\r\n", 1)[0]
        lines = [m.group(0).rstrip(b"\r") for m in _RAW_HEADER.finditer(head)]
        names = {line.split(b":", 1)[0].strip().lower() for line in lines}
        if not ({b"via", b"v"} & names and {b"call-id", b"i"} & names and {b"cseq"} & names):
            return
        reason = str(exc).replace("\r", " ").replace("\n", " ")[:100]
        head_out = f"SIP/2.0 {exc.status} {REASONS.get(exc.status, 'Bad Request')}\r\n".encode() + b"\r\n".join(lines)
        flow.send(
            head_out + f'\r\nWarning: 399 ivr "{reason}"\r\nServer: {SERVER}\r\nContent-Length: 0\r\n\r\n'.encode()
        )

    def _on_request(self, request: Request, flow: Flow) -> None:
        method = request.method
        if method == "ACK":
            tx = self._server_tx.get(transaction_key(request)[:2] + ("INVITE",))
            if tx is not None and tx.last is not None and not tx.last.startswith(b"SIP/2.0 2"):
                tx.acked.set()  # the ACK of an error answer belongs to its transaction (§17.2.1)
                return
            call = self.calls.get(request.call_id)
            if call is not None:
                call.on_ack(request)
            return
        if method == "CANCEL":
            self._on_cancel(request, flow)
            return
        key = transaction_key(request)
        known = self._server_tx.get(key)
        if known is not None:
            if known.last is not None:
                flow.send(known.last)  # a retransmission: the same answer again
            return
        tx = ServerTransaction(request, flow)
        self._server_tx[key] = tx
        try:
            self._on_new_request(request, tx, flow)
        except Exception:
            if not tx.final:
                tx.respond(response(request, 500))  # the transaction ends, and the sweeper forgets it
            raise

    def _on_new_request(self, request: Request, tx: ServerTransaction, flow: Flow) -> None:
        method = request.method
        if (
            header_number("Max-Forwards", request.headers.get("Max-Forwards"), MAX_FORWARDS) == 0
            and method != "OPTIONS"
        ):
            tx.respond(response(request, 483))
            return
        if method == "OPTIONS":
            tx.respond(response(request, 200, headers=(("Allow", ALLOW), ("Accept", "application/sdp"))))
            return
        call = self.calls.get(request.call_id)
        to_tag = request.to_address.parameters.get("tag")
        if method == "INVITE" and not to_tag:
            if call is not None:
                tx.respond(response(request, 482))  # a second INVITE with this Call-ID: a loop or a fork
                return
            if not self.allows(flow.remote[0]):
                tx.respond(response(request, 403))
                log.warning("sip.caller_not_allowed", extra={"transport": flow.transport})
                return
            if not self._room_for_a_call():
                tx.respond(response(request, 503, headers=(("Retry-After", "5"),)))
                return
            call = SipCall(self, request, flow, tx)
            self.calls[request.call_id] = call
            self.live.add(call)
            call.begin()
            return
        if call is None or not call.matches(request):
            tx.respond(response(request, 481))
            return
        call.on_request(request, tx)

    def _room_for_a_call(self) -> bool:
        """Below max_calls confirmed calls, and below PENDING_PER_CALL * max_calls dialogs waiting for their ACK."""
        confirmed = self.confirmed_calls()
        pending = len(self.calls) - confirmed
        return confirmed < self.settings.max_calls and pending < PENDING_PER_CALL * self.settings.max_calls

    def allows(self, address: str) -> bool:
        """Whether `allow_from` lets this host place calls and send media (always, when the list is empty)."""
        if not self._networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def _on_cancel(self, request: Request, flow: Flow) -> None:
        tx = self._server_tx.get(transaction_key(request)[:2] + ("INVITE",))
        if tx is None:
            flow.send(bytes(response(request, 481)))
            return
        flow.send(bytes(response(request, 200)))
        call = self.calls.get(request.call_id)
        if call is not None:
            call.on_cancel()

    def forget(self, call: SipCall) -> None:
        """The dialog is over; once the call is `done` (its session finished) it leaves `live` too."""
        if self.calls.get(call.sip_call_id) is call:
            del self.calls[call.sip_call_id]
        if call.done and call.state == "terminated":
            call.release_slot()
        if call.done and call in self.live:
            self.live.discard(call)
            self.finished_media.add(call.stream.stats)

    # ---- outbound requests -----------------------------------------------------------

    def via_for(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport} {self.address}:{self.port};branch={branch};rport"

    async def request(self, request: Request, destination: tuple[str, int], flow: Flow | None = None) -> Response:
        """A non-INVITE client transaction: the final answer, or TimeoutError after Timer F."""
        transport = flow.transport if flow is not None and not flow.closed() else "UDP"
        branch = new_branch()
        request.headers.setlist("Via", [self.via_for(transport, branch)])
        if request.headers.get("Max-Forwards") is None:
            request.headers.add("Max-Forwards", "70")
        request.headers.set("User-Agent", SERVER)
        request.headers.set("Content-Length", str(len(request.body)))
        send = flow.send if transport != "UDP" and flow is not None else (lambda out: self._udp_send(out, destination))
        return await self._client_tx.run(request, send, reliable=transport != "UDP")
