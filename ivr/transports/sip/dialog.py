"""The dialog of an INVITE we answered (RFC 3261 §12): who it is between, and the requests we send inside it.

Also the two halves of a blind transfer that need no call: the Refer-To URI
and the outcome the NOTIFYs report (RFC 3515); and the key a SIP INFO in the
dialog carries.

The routing rules are the media stream's: the dialled number comes from the
Request-URI, or the To header when the Request-URI does not name a tenant
(trunks that put the registered account there); the caller's number comes
from P-Asserted-Identity, else From, and is withheld when the caller asked
for privacy (RFC 3323/3325), as German law requires for suppressed numbers.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import TYPE_CHECKING

from sipmessage import URI, Address, Request

from ivr.transports.sip.message import new_tag
from ivr.transports.sip.rtp import DTMF_EVENTS
from ivr.transports.sip.transaction import Flow, UserAgent

if TYPE_CHECKING:
    from ivr.settings import Settings

HANDOFF_HEADER = "X-Handoff-Id"  # on the REFER, for the PBX that carries out the transfer
HANDOFF_PARAMETER = "x-handoff-id"  # on the transfer target's URI, for whoever answers the transferred call
ANONYMOUS = {"anonymous", "unknown", "restricted", "unavailable"}


def dialled_number(invite: Request, settings: Settings) -> str | None:
    candidates = [invite.uri.user, invite.to_address.uri.user]
    for number in candidates:
        if number and settings.has_tenant(number):
            return number
    return next((n for n in candidates if n), None)


def caller_number(invite: Request) -> str | None:
    privacy = {token.strip().lower() for token in re.split(r"[;,]", invite.headers.get("Privacy") or "")}
    if "id" in privacy or "user" in privacy:
        return None
    asserted = invite.headers.get("P-Asserted-Identity")
    user: str | None = None
    if asserted:
        try:
            user = Address.parse_many(asserted)[0].uri.user
        except (ValueError, IndexError):
            user = None
    user = user or invite.from_address.uri.user
    return None if not user or user.lower() in ANONYMOUS else user


def transfer_target(template: str, queue: str, handoff_id: str) -> str:
    """The Refer-To URI: `{queue}` and `{handoff_id}` filled in; without `{handoff_id}` it goes in a URI parameter.

    The id rides in the URI because every phone keeps the Request-URI when it
    follows a REFER. The RFC 3261 alternative, a header embedded in Refer-To
    (`?X-Handoff-Id=`), is not safe: baresip 1.0 copies it into the
    Request-URI, where it does not belong, and linphone 5.1 crashes on REFER.
    """
    uri = template.replace("{queue}", queue).replace("{handoff_id}", handoff_id)
    if handoff_id and "{handoff_id}" not in template:
        uri += f";{HANDOFF_PARAMETER}={handoff_id}"
    return uri


async def refer_outcome(progress: asyncio.Queue[int], timeout_s: float) -> str:
    """Waits for the NOTIFY carrying the transfer target's final answer (RFC 3515 §2.4.5)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        try:
            code = await asyncio.wait_for(progress.get(), left)
        except asyncio.TimeoutError:
            break
        if code >= 200:
            return "transferred" if code < 300 else f"target answered {code}"
    return "accepted, no final notify"


def info_key(request: Request) -> str | None:
    """The key a SIP INFO carries (application/dtmf-relay, application/dtmf); None for any other body.

    ValueError when the body is of a DTMF type but names no key (the INFO gets a 400).
    """
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    body = request.body.decode("utf-8", "replace")
    key: str | None = None
    if content_type == "application/dtmf-relay":
        match = re.search(r"(?im)^\s*signal\s*=\s*(\S)", body)
        key = match.group(1).upper() if match else None
    elif content_type == "application/dtmf":
        key = body.strip()[:1].upper() or None
    if content_type in ("application/dtmf-relay", "application/dtmf") and key not in set(DTMF_EVENTS):
        raise ValueError("no DTMF key in the body")
    return key


class Dialog:
    """The UAS side of a dialog (§12.1.1): its tags, route set, CSeq numbers and the remote target."""

    def __init__(self, agent: UserAgent, invite: Request, flow: Flow):
        self.agent = agent
        self.flow = flow
        self.call_id = invite.call_id
        self.local_tag = new_tag()
        self.remote_tag = invite.from_address.parameters.get("tag")
        to = invite.to_address
        self.local_address = Address(to.uri, to.name, to.parameters.replace(tag=self.local_tag))
        self.remote_address = invite.from_address
        contacts = invite.contact
        self.remote_target: URI = contacts[0].uri if contacts else invite.from_address.uri
        self.route_set = list(invite.record_route)  # §12.1.1: the UAS keeps Record-Route in order
        self.local_cseq = random.randrange(1, 1 << 16)
        self.remote_cseq = invite.cseq.sequence

    def matches(self, request: Request) -> bool:
        return request.to_address.parameters.get("tag") == self.local_tag

    def contact(self) -> str:
        if self.flow.transport == "TLS":
            return f"<sip:ivr@{self.agent.address}:{self.agent.tls_port};transport=tls>"
        transport = ";transport=tcp" if self.flow.transport == "TCP" else ""
        return f"<sip:ivr@{self.agent.address}:{self.agent.port}{transport}>"

    def refresh_target(self, request: Request) -> None:
        """A re-INVITE's Contact is the new remote target (§12.2.2)."""
        contacts = request.contact
        if contacts:
            self.remote_target = contacts[0].uri

    def request(self, method: str, body: bytes = b"", content_type: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> tuple[Request, tuple[str, int]]:  # fmt: skip
        """A request inside this dialog (§12.2.1.1) and where to send it (`next_hop`)."""
        self.local_cseq += 1
        request = Request(method, self.remote_target, body)
        for route in self.route_set:
            request.headers.add("Route", str(route))
        request.headers.add("From", str(self.local_address))
        request.headers.add("To", str(self.remote_address))
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.local_cseq} {method}")
        request.headers.add("Contact", self.contact())
        for name, value in headers:
            request.headers.add(name, value)
        if content_type:
            request.headers.add("Content-Type", content_type)
        return request, self.next_hop()

    async def refer(self, uri: str, handoff_id: str, progress: asyncio.Queue[int], timeout_s: float) -> str:
        """Sends the REFER of a blind transfer to `uri` and waits for its outcome (`refer_outcome`)."""
        headers: tuple[tuple[str, str], ...] = (
            ("Refer-To", f"<{uri}>"),
            ("Referred-By", f"<{self.local_address.uri}>"),
        )
        if handoff_id:
            headers += ((HANDOFF_HEADER, handoff_id),)
        request, destination = self.request("REFER", headers=headers)
        outcome = "failed"
        try:
            accepted = await self.agent.request(request, destination, self.flow)
            if 200 <= accepted.code < 300:
                outcome = await refer_outcome(progress, timeout_s)
            else:
                outcome = f"refused {accepted.code}"
        except TimeoutError:
            outcome = "no answer to REFER"
        return outcome

    def next_hop(self) -> tuple[str, int]:
        """Where requests inside the dialog go: back to the host and port the INVITE came from.

        Never to a host the peer names in Contact or Record-Route: that let a
        caller aim our BYE and REFER at a third host (reflection), and made
        us resolve host names on the event loop. The Request-URI and Route
        headers still carry the peer's Contact and route set, so a proxy that
        sent us the INVITE routes them on as usual; a phone behind NAT is
        reached at its public address. When a TCP or TLS connection has
        closed, the request goes by UDP to the same host, at the port the
        first Route or the Contact names.
        """
        host, port = self.flow.remote
        if self.flow.transport != "UDP":
            hop = self.route_set[0].uri if self.route_set else self.remote_target
            port = hop.port if hop.port and 0 < hop.port < 65536 else 5060
        return host, port
