"""One SIP call: the INVITE dialog (RFC 3261 §12-15) wired to a CallSession.

INVITE → 100 Trying → 180 Ringing → 200 OK with the SDP answer, retransmitted
over UDP until the ACK (§13.3.1.4). The greeting starts at the ACK. BYE ends
the call from either side, CANCEL before the answer gives 487, a re-INVITE
changes the media (hold and resume). A handoff in `telephony` mode becomes a
blind transfer: REFER to the configured target with the handoff id in a header
(RFC 3515, RFC 4488 progress by NOTIFY), then BYE.

The dialog's identifiers, route set and in-dialog requests (the REFER too)
are in dialog.py, the MediaSink the session talks to (`RtpSink`) in
media_sink.py, the transactions and their retransmissions in transaction.py. The endpoint
that dispatches to this call is seen only through `CallHost`, so this module
does not import endpoint.py (which imports it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from sipmessage import Request

from ivr.session.admission import Refusal, Ticket
from ivr.session.call import CallSession
from ivr.session.events import HandBack
from ivr.session.frames import AudioIn, CallStart, CallStop, DtmfIn, InboundFrame, MarkAck
from ivr.storage import EventName
from ivr.transports.sip.dialog import (
    Dialog,
    caller_number,
    dialled_number,
    info_key,
    transfer_target,
)
from ivr.transports.sip.media_sink import RtpSink
from ivr.transports.sip.message import ALLOW, response
from ivr.transports.sip.sdp import Negotiated, Offer, SdpError, answer, negotiate, parse_offer
from ivr.transports.sip.stream import RtpStream
from ivr.transports.sip.transaction import Flow, ServerTransaction, UserAgent

if TYPE_CHECKING:
    from ivr.runtime import Runtime
    from ivr.settings import SipSettings

log = logging.getLogger("ivr.sip.call")


class CallHost(UserAgent, Protocol):
    """What a call needs from the endpoint that dispatches to it."""

    runtime: Runtime
    settings: SipSettings

    def allows(self, address: str) -> bool: ...

    def confirmed_calls(self) -> int: ...

    def forget(self, call: SipCall) -> None: ...


class SipCall:
    def __init__(self, endpoint: CallHost, invite: Request, flow: Flow, tx: ServerTransaction):
        self.endpoint = endpoint
        self.settings = endpoint.settings
        self.invite = invite
        self.flow = flow
        self.tx = tx
        self.sip_call_id = invite.call_id
        self.dialog = Dialog(endpoint, invite, flow)
        self.state = "early"  # early → confirmed → terminated
        self.session: CallSession | None = None
        self.stream = RtpStream(self._on_audio, self._on_key, self._on_mark, max(1, self.settings.jitter_ms // 20),
                                signalling_host=flow.remote[0], allowed=endpoint.allows)  # fmt: skip
        self.counted = False  # against max_calls: from the ACK on (SipEndpoint.confirmed_calls)
        self.ticket: Ticket | None = None  # admission: taken before the 180, released when the call is done
        self.negotiated: Negotiated | None = None
        self._offer: Offer | None = None
        self._sdp_id = random.randrange(1 << 30)
        self._sdp_version = 1
        self._last_sdp = b""
        self._acked = asyncio.Event()
        self._inbound: asyncio.Queue[InboundFrame] = asyncio.Queue()
        self._refer_progress: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()

    # ---- helpers -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def matches(self, request: Request) -> bool:
        return self.dialog.matches(request)

    def _answer(self, code: int, tx: ServerTransaction | None = None, **kwargs: Any) -> None:
        tx = tx or self.tx
        headers = list(kwargs.pop("headers", ()))
        if code >= 180 or code == 101:
            headers.append(("Contact", self.dialog.contact()))
        tx.respond(response(tx.request, code, self.dialog.local_tag, headers=headers, **kwargs))

    @property
    def done(self) -> bool:
        """Nothing of the call is still running: no session, or its bookkeeping has finished."""
        return self.session is None or self.session.finished.is_set()

    def _end_unanswered(self, code: int, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A final error answer to the INVITE (retransmitted until its ACK); the call is over."""
        self.state = "terminated"
        self._answer(code, headers=list(headers))
        self.tx.repeat_until_acked()
        self.stream.close()
        self.endpoint.forget(self)

    def _reject(self, code: int, why: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Refuses the INVITE, saying why in a Warning; nothing of the call remains."""
        warning = why.replace('"', "'").replace("\r", " ").replace("\n", " ")[:120]
        self._end_unanswered(code, (*headers, ("Warning", f'399 ivr "{warning}"')))
        log.info("sip.rejected", extra={"status": code, "why": why})

    def release_slot(self) -> None:
        """The call is done: its admission slot is free again (the endpoint calls this when it forgets the call)."""
        if self.ticket is not None:
            self.ticket.release()

    # ---- incoming call -----------------------------------------------------------------

    def begin(self) -> None:
        self._spawn(self._set_up_or_fail())

    async def _set_up_or_fail(self) -> None:
        """A failure on our side while setting up ends this call (and frees its slot), not the endpoint."""
        try:
            await self._set_up()
        except Exception:
            log.exception("sip.setup_failed", extra={"sip_transport": self.flow.transport})
            if self.session is not None and not self.session.closed:
                await self.session.close("internal_error")
            await self.hang_up("internal_error")

    async def _set_up(self) -> None:
        self._answer(100)
        invite = self.invite
        content_type = (invite.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not invite.body:
            self._reject(488, "INVITE without an SDP offer (late offer) is not supported")
            return
        if content_type != "application/sdp":
            self._reject(415, f"body of type {content_type or 'none'}; application/sdp expected")
            return
        try:
            self._offer = parse_offer(invite.body)
            self.negotiated, index = negotiate(self._offer)
        except SdpError as exc:
            self._reject(exc.status, str(exc))
            return
        runtime = self.endpoint.runtime
        start = CallStart(
            call_id=f"sip-{secrets.token_hex(8)}",
            dialled=dialled_number(invite, runtime.settings),
            caller=caller_number(invite),
            sample_rate=8000,
            channel="sip",
            parameters={"transport": self.flow.transport, "codec": self.negotiated.codec},
            provider_call_id=self.sip_call_id[:200],
        )
        try:
            runtime.settings.tenant_for(start.dialled)
        except LookupError as exc:
            self._reject(404, str(exc))
            return
        # Before 180/200: a refused call is one the proxy can still route to another IVR (Kamailio on 503).
        admitted = runtime.admission.try_admit(start.channel)
        if isinstance(admitted, Refusal):
            self._reject(503, admitted.text, (("Retry-After", str(admitted.retry_after_s)),))
            return
        self.ticket = admitted
        try:
            await self.stream.bind(self.settings.host, self.settings.rtp_ports)
        except OSError as exc:
            self._reject(503, str(exc))
            return
        self.stream.configure(self.negotiated, self.settings.inband_dtmf)
        self._last_sdp = answer(self._offer, self.negotiated, index, self.endpoint.address, self.stream.local_port,
                                self._sdp_id, self._sdp_version)  # fmt: skip
        self._answer(180)
        if self.settings.answer_delay_s > 0:
            await asyncio.sleep(self.settings.answer_delay_s)
        if self.state != "early":
            return  # cancelled while ringing
        self.state = "confirmed"
        self._answer(200, body=self._last_sdp, content_type="application/sdp", headers=[("Allow", ALLOW)])
        log.info("sip.answered", extra={"call_id": start.call_id, "sip_transport": self.flow.transport,
                                        "codec": self.negotiated.codec, "dtmf": self.negotiated.dtmf_payload_type})  # fmt: skip
        if not await self._wait_for_ack():
            log.warning("sip.no_ack", extra={"call_id": start.call_id})
            await self.hang_up("no_ack")
            return
        if self.state != "confirmed":
            return  # BYE right after the ACK
        if self.endpoint.confirmed_calls() >= self.settings.max_calls:
            # Other calls were ACKed while this one waited: it was answered, but the limit holds.
            log.warning("sip.over_max_calls", extra={"call_id": start.call_id})
            await self.hang_up("max_calls")
            return
        self.counted = True
        # The session (and its call record) starts only now: a call that never got through leaves nothing behind.
        self.session = CallSession(runtime, RtpSink(self), start)
        self.stream.start()
        await self.session.begin()  # before any frame, as on every transport: a BYE now queues behind it
        self._spawn(self._feed_session())
        self._spawn(self._watch_session())

    async def _wait_for_ack(self) -> bool:
        """Retransmits the 2xx (UDP: T1 doubling to T2) until the ACK; False after 64*T1 (§13.3.1.4).

        The dialog does this, not the INVITE's server transaction: a 2xx ends
        that transaction, and its ACK is a transaction of its own (§17.2.1).
        """
        return await self.tx.repeat_until(self._acked, lambda: self.state == "confirmed")

    def on_ack(self, request: Request) -> None:
        if request.cseq.sequence == self.invite.cseq.sequence or self.state == "confirmed":
            self._acked.set()

    def on_cancel(self) -> None:
        if self.state != "early":
            return  # already answered: the caller sends BYE (§9.2)
        self._end_unanswered(487)
        log.info("sip.cancelled", extra={"sip_transport": self.flow.transport})

    # ---- in-dialog requests ---------------------------------------------------------------

    def on_request(self, request: Request, tx: ServerTransaction) -> None:
        if request.cseq.sequence <= self.dialog.remote_cseq and request.method != "ACK":
            tx.respond(response(request, 500, headers=(("Warning", '399 ivr "CSeq lower than the last one"'),)))
            return
        self.dialog.remote_cseq = request.cseq.sequence
        method = request.method
        if method == "BYE":
            tx.respond(response(request, 200))
            self._ended_by_caller()
        elif method == "INVITE":
            self._reinvite(request, tx)
        elif method == "NOTIFY":
            tx.respond(response(request, 200))
            match = re.match(rb"\s*SIP/2\.0 (\d{3})", request.body)
            if match:
                self._refer_progress.put_nowait(int(match.group(1)))
        elif method == "INFO":
            self._info(request, tx)
        else:
            tx.respond(response(request, 405, headers=(("Allow", ALLOW),)))

    def _ended_by_caller(self) -> None:
        if self.state == "terminated":
            return
        self.state = "terminated"
        self._acked.set()  # a BYE before the ACK also means the caller got the 200
        self.stream.close()
        self.endpoint.forget(self)
        if self.session is not None:
            self._inbound.put_nowait(CallStop("caller_hangup"))  # after the audio already queued
        log.info("sip.bye_received", extra={"sip_transport": self.flow.transport})

    def _reinvite(self, request: Request, tx: ServerTransaction) -> None:
        """Hold (sendonly/inactive), resume, or a session refresh without a body."""
        if not request.body:
            self._answer(200, tx, body=self._last_sdp, content_type="application/sdp")
            return
        try:
            offer = parse_offer(request.body)
            negotiated, index = negotiate(offer)
        except SdpError as exc:
            self._answer(exc.status, tx, headers=[("Warning", f'399 ivr "{exc}"')])
            return
        self.dialog.refresh_target(request)
        self.negotiated = negotiated
        self.stream.configure(negotiated, self.settings.inband_dtmf)
        self._sdp_version += 1
        self._last_sdp = answer(offer, negotiated, index, self.endpoint.address, self.stream.local_port,
                                self._sdp_id, self._sdp_version)  # fmt: skip
        self._answer(200, tx, body=self._last_sdp, content_type="application/sdp", headers=[("Allow", ALLOW)])
        log.info("sip.media_changed", extra={"direction": negotiated.direction, "codec": negotiated.codec})

    def _info(self, request: Request, tx: ServerTransaction) -> None:
        """SIP INFO keys (dialog.info_key), as some PBXs send them."""
        try:
            key = info_key(request)
        except ValueError as exc:
            tx.respond(response(request, 400, headers=(("Warning", f'399 ivr "{exc}"'),)))
            return
        tx.respond(response(request, 200))
        if key is not None:
            self._on_key(key)

    # ---- media callbacks (from the RTP clock) ----------------------------------------------

    def _on_audio(self, pcm: bytes) -> None:
        self._inbound.put_nowait(AudioIn(pcm))

    def _on_key(self, key: str) -> None:
        self._inbound.put_nowait(DtmfIn(key))

    def _on_mark(self, name: str) -> None:
        self._inbound.put_nowait(MarkAck(name))

    async def _feed_session(self) -> None:
        """The session sees this call's frames in order, as from any other transport."""
        assert self.session is not None
        while not self.session.closed:
            frame = await self._inbound.get()
            await self.session.handle(frame)
            if isinstance(frame, CallStop):
                return

    async def _watch_session(self) -> None:
        assert self.session is not None
        await self.session.finished.wait()
        if self.state == "confirmed":
            await self.hang_up("session_ended")
        self.stream.close()
        self.endpoint.forget(self)
        quality = self.stream.quality()
        log.info("sip.media_quality", extra={"call_id": self.session.call_id, **quality})
        await self.session.conversation.event(EventName.MEDIA_QUALITY, **quality)

    # ---- outgoing requests ------------------------------------------------------------------

    async def shutdown(self) -> None:
        """The server stops: the caller gets a BYE (or a 503 while ringing), the transcript is closed."""
        if self.session is not None:
            await self.session.shut_down()
        else:
            await self.hang_up("server_shutdown")
        pending = [t for t in self._tasks if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=2)  # the BYE's answer, if it comes quickly
        for task in pending:
            task.cancel()
        self.endpoint.forget(self)

    async def hang_up(self, reason: str) -> None:
        """BYE from our side (bot goodbye, handoff, max duration, shutdown)."""
        if self.state == "early":
            self._end_unanswered(480 if reason != "server_shutdown" else 503)
        if self.state != "confirmed":
            self.stream.close()
            self.endpoint.forget(self)
            return
        self.state = "terminated"
        self.stream.close()
        self.endpoint.forget(self)
        cause = (
            '16;text="Normal call clearing"'
            if reason in ("bot_hangup", "session_ended")
            else f'16;text="{reason[:60]}"'
        )
        request, destination = self.dialog.request("BYE", headers=(("Reason", f"Q.850;cause={cause}"),))
        self._spawn(self._send_bye(request, destination))

    async def _send_bye(self, request: Request, destination: tuple[str, int]) -> None:
        try:
            answer_ = await self.endpoint.request(request, destination, self.flow)
            log.info("sip.bye_sent", extra={"status": answer_.code})
        except TimeoutError:
            log.warning("sip.bye_unanswered")

    async def transfer(self, event: HandBack) -> None:
        """Blind transfer (REFER) of a handed-off call to `sip.transfer_to`; the result goes on the transcript."""
        target = self.settings.transfer_to
        if not target or self.state != "confirmed" or self.session is None:
            return
        handoff_id = event.handoff_id or ""
        uri = transfer_target(target, event.queue or "default", handoff_id)
        outcome = await self.dialog.refer(uri, handoff_id, self._refer_progress, self.settings.transfer_timeout_s)
        await self.session.conversation.note(
            "[transfer]", {"target": uri, "handoff_id": handoff_id, "outcome": outcome}
        )
        log.info("sip.transfer", extra={"call_id": self.session.call_id, "outcome": outcome})
