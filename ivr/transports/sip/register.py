"""Registration with a PBX or SIP trunk (RFC 3261 §10) and digest authentication (RFC 7616, RFC 8760).

Trunks and PBXs that do not send calls to a fixed address want the IVR to
register. The account comes from the environment (the variables named in
`sip.register`), never from the settings file, and neither it nor the digest
is logged. The binding is refreshed before it expires; a failure is retried
every `retry_s` and shows in the log with the registrar's status code.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import re
import secrets
from typing import TYPE_CHECKING

from sipmessage import URI, Request, Response

from ivr.transports.sip.message import new_tag
from ivr.transports.sip.transaction import UserAgent

if TYPE_CHECKING:
    from ivr.settings import SipRegistration

log = logging.getLogger("ivr.sip.register")

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^",\s]*)\s*(?:,|$)')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Digest realm="x", qop="auth,auth-int", ...` → ("Digest", {...}); quoted commas stay inside values.

    (sipmessage's AuthChallenge splits at every comma, which breaks the common `qop="auth,auth-int"`.)
    """
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise ValueError(f"malformed challenge near {rest[position : position + 20]!r}")
        value = match.group(2)
        params[match.group(1).lower()] = value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        position = match.end()
    return scheme, params


def digest_response(challenge: str, method: str, uri: str, user: str, password: str,
                    cnonce: str | None = None, nc: int = 1) -> str:  # fmt: skip
    """The Authorization value for a Digest challenge (qop=auth or none; MD5 or SHA-256)."""
    scheme, params = parse_challenge(challenge)
    algorithm = (params.get("algorithm") or "MD5").upper()
    if scheme.lower() != "digest" or algorithm not in _HASHES:
        raise ValueError(f"unsupported challenge {scheme} {algorithm}")
    h = lambda text: _HASHES[algorithm](text.encode()).hexdigest()  # noqa: E731
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    fields: dict[str, str] = {"username": user, "realm": realm, "nonce": nonce, "uri": uri, "algorithm": algorithm}
    qops = [q.strip() for q in (params.get("qop") or "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        fields.update(qop="auth", nc=count, cnonce=cnonce, response=h(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}"))
    elif qops:
        raise ValueError(f"unsupported qop {params.get('qop')}")
    else:
        fields["response"] = h(f"{ha1}:{nonce}:{ha2}")
    if params.get("opaque"):
        fields["opaque"] = params["opaque"]
    unquoted = {"algorithm", "qop", "nc"}
    return "Digest " + ", ".join(f"{k}={v}" if k in unquoted else f'{k}="{v}"' for k, v in fields.items())


class Registration:
    """Keeps one binding at the registrar; `endpoint` sends the REGISTERs as client transactions."""

    def __init__(self, endpoint: UserAgent, config: SipRegistration):
        self.endpoint = endpoint
        self.config = config
        self.registrar = URI.parse(config.registrar)
        self.user = os.environ.get(config.user_env, "")
        self.password = os.environ.get(config.password_env, "")
        self.domain = config.domain or self.registrar.host
        self.call_id = f"{secrets.token_hex(10)}@ivr"
        self.tag = new_tag()
        self.cseq = random.randrange(1, 1 << 16)
        self.registered = asyncio.Event()
        self.last_status: int | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if not self.user:
            log.error("sip.register_no_account", extra={"env": self.config.user_env})
            return
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.registered.is_set():
            try:
                await asyncio.wait_for(self.register(expires=0), 5)
            except (TimeoutError, asyncio.TimeoutError, ValueError):
                pass

    async def _loop(self) -> None:
        while True:
            try:
                granted = await self.register(self.config.expires_s)
                wait = max(granted * 0.8, 5) if granted else self.config.retry_s
            except (TimeoutError, ValueError) as exc:
                log.warning("sip.register_failed", extra={"error": str(exc)})
                self.registered.clear()
                wait = self.config.retry_s
            await asyncio.sleep(wait)

    async def register(self, expires: int) -> int:
        """One REGISTER, answering one challenge; returns the granted expiry (0 = failed or removed)."""
        credentials: tuple[str, str] | None = None
        for _ in range(2):
            answer = await self.endpoint.request(self._request(expires, credentials), self._destination())
            self.last_status = answer.code
            if answer.code in (401, 407) and credentials is None:
                header = "WWW-Authenticate" if answer.code == 401 else "Proxy-Authenticate"
                challenge = answer.headers.get(header) or ""
                name = "Authorization" if answer.code == 401 else "Proxy-Authorization"
                credentials = (
                    name,
                    digest_response(challenge, "REGISTER", str(self.registrar), self.user, self.password),
                )
                continue
            break
        if not 200 <= answer.code < 300:
            log.warning("sip.register_refused", extra={"status": answer.code})
            self.registered.clear()
            return 0
        granted = _granted_expiry(answer, expires)
        if expires:
            self.registered.set()
            log.info("sip.registered", extra={"registrar": self.registrar.host, "expires": granted})
        else:
            self.registered.clear()
        return granted

    def _destination(self) -> tuple[str, int]:
        return self.registrar.host, self.registrar.port or 5060

    def _request(self, expires: int, credentials: tuple[str, str] | None) -> Request:
        self.cseq += 1
        aor = f"<sip:{self.user}@{self.domain}>"
        request = Request("REGISTER", self.registrar)
        request.headers.add("From", f"{aor};tag={self.tag}")
        request.headers.add("To", aor)
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.cseq} REGISTER")
        request.headers.add("Contact", f"<sip:{self.user}@{self.endpoint.address}:{self.endpoint.port}>")
        request.headers.add("Expires", str(expires))
        if credentials is not None:
            request.headers.add(credentials[0], credentials[1])
        return request


def _granted_expiry(answer: Response, asked: int) -> int:
    for contact in answer.headers.getlist("Contact"):
        for part in contact.split(";")[1:]:
            name, _, value = part.partition("=")
            if name.strip().lower() == "expires" and value.strip().isdigit():
                return int(value)
    expires = answer.headers.get("Expires")
    return int(expires) if expires and expires.isdigit() else asked
