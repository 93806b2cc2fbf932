"""Who may read call data: agent logins (session cookie) and machine clients (HTTP Basic).

Transcripts and handoff packages are personal data (GDPR), so every API route
that returns them asks `current_user` first, and users only see the tenants
their `agents:` entry in ivr.yml lists.

People log in once and get a random session token in an HttpOnly,
SameSite=Strict cookie; machines (a CRM or an external ACD) send HTTP Basic
credentials with each request instead. The browser login is JSON (which
another site's page cannot send without a CORS preflight we never grant); a
login whose Origin or Sec-Fetch-Site names another site is refused (403), and
so is a form post without this site's Origin (login CSRF: a foreign page must
not log the agent's browser into an account of the attacker's choice).

Both ways count towards the same brute-force limit per username and source
address (login_limits.py); password checks run on threads of their own
(passwords.py). Failures are logged with the username only (no password, no
address). Sessions (sessions.py), the failure counts and the buckets live in
this process's memory: a restart logs everyone out, and several `ivr serve`
processes behind one address need sticky sessions (or Basic auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BasicAuth, hdrs, web

from ivr.agents.errors import json_error
from ivr.agents.login_limits import Key, LoginThrottle, SourceLimiter, client_address, trusted_networks
from ivr.agents.passwords import HashPool, dummy_hash
from ivr.agents.sessions import SessionStore
from ivr.settings import AgentUser, LoginSettings

log = logging.getLogger("ivr.agents")

COOKIE = "ivr_session"
BASIC_CACHE_S = 60.0  # machines send Basic credentials with every request: do not run scrypt for each


def foreign_origin(request: web.BaseRequest) -> str | None:
    """Why `request` looks sent by another site's page, or None.

    Browsers say where a request comes from (Origin on POSTs and websocket
    handshakes, Sec-Fetch-Site on all requests); pages cannot forge either.
    Requests without them come from tools, which have no cookie to abuse.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site!r}, not same-origin"
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return None
    if urlsplit(origin).netloc not in {request.host, request.headers.get("X-Forwarded-Host")}:
        return "the Origin header names another site"
    return None


class Auth:
    """The users (read from the settings on every use, so the current list counts), sessions and limits."""

    def __init__(
        self,
        users: Callable[[], Iterable[AgentUser]],
        sessions: SessionStore | None = None,
        throttle: LoginThrottle | None = None,
        limits: LoginSettings = LoginSettings(),
    ):
        self._users = users
        self.sessions = sessions or SessionStore()
        self.throttle = throttle or LoginThrottle()
        self.sources = SourceLimiter(limits.attempts_per_minute, limits.attempt_burst)
        self.hashes = HashPool(limits.hash_threads, limits.hash_queue)
        self.trusted = trusted_networks(limits.trusted_proxies)
        self._key = secrets.token_bytes(32)  # for the Basic cache: keyed digests, never the passwords
        self._verified: dict[bytes, float] = {}
        self._attempts: dict[Key, tuple[asyncio.Lock, int]] = {}  # per key: its lock and how many use it

    def user(self, username: str) -> AgentUser | None:
        return next((u for u in self._users() if u.username == username), None)

    def source(self, request: web.BaseRequest) -> str:
        return client_address(request, self.trusted)

    async def authenticate(self, username: str, password: str, source: str, cache: bool = False) -> AgentUser | None:
        """The user if the password is right, else None (logged, counted); raises 429 while locked or throttled.

        `source` is the client's address (`Auth.source`). Attempts for one name
        from one source are checked one after the other, so a burst of parallel
        guesses cannot all be tried before the first failures count. Raises 503
        when the hashing threads are full. `cache`: remember a success for
        `BASIC_CACHE_S` (Basic auth comes with every request).
        """
        name = username.strip().lower()[:64]
        key = (name, source)
        self._refuse_if_locked(key)
        user = self.user(name)
        stored = user.password_hash if user else dummy_hash()
        digest = hmac.digest(self._key, "\0".join((name, password, stored)).encode("utf-8"), "sha256")
        if cache and user is not None and self._verified.get(digest, 0.0) > time.monotonic():
            return user
        self._refuse_if_throttled(name, source)
        async with self._one_at_a_time(key):
            self._refuse_if_locked(key)  # the attempts before this one may have locked it
            if await self.hashes.verify(password, stored) and user is not None:
                if cache:
                    now = time.monotonic()
                    self._verified = {k: t for k, t in self._verified.items() if t > now}
                    self._verified[digest] = now + BASIC_CACHE_S
                return user
            failures = self.throttle.failed(key)
        log.warning(
            "agent.login_failed",
            extra={"username": name, "failures": failures, "locked": failures >= self.throttle.max_failures},
        )
        return None

    def close(self) -> None:
        self.hashes.close()

    def _refuse_if_locked(self, key: Key) -> None:
        wait = self.throttle.retry_after(key)
        if wait > 0:
            log.warning("agent.login_refused", extra={"username": key[0], "retry_after_s": math.ceil(wait)})
            retry: dict[str, str] = {hdrs.RETRY_AFTER: str(math.ceil(wait))}
            raise json_error(web.HTTPTooManyRequests, "too many failed logins for this user; try again later", retry)

    def _refuse_if_throttled(self, name: str, source: str) -> None:
        wait = self.sources.take(source)
        if wait > 0:
            log.warning("agent.login_throttled", extra={"username": name, "retry_after_s": math.ceil(wait)})
            retry: dict[str, str] = {hdrs.RETRY_AFTER: str(math.ceil(wait))}
            raise json_error(
                web.HTTPTooManyRequests, "too many login attempts from this address; try again later", retry
            )

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: Key) -> AsyncIterator[None]:
        lock, waiting = self._attempts.get(key, (asyncio.Lock(), 0))
        self._attempts[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._attempts[key]
            if waiting == 1:
                del self._attempts[key]
            else:
                self._attempts[key] = (lock, waiting - 1)


AUTH = web.AppKey("agent_auth", Auth)
_USER_KEY = "ivr.agents.user"  # the request's authenticated user, so one request checks credentials once


def setup(
    app: web.Application, users: Callable[[], Iterable[AgentUser]], limits: LoginSettings = LoginSettings()
) -> Auth:
    """Give `app` its login state; `users` returns the configured agents (e.g. `lambda: runtime.settings.agents`).

    The hashing threads end with the app.
    """
    auth = Auth(users, limits=limits)
    app[AUTH] = auth
    dummy_hash()  # made now, so that the first unknown username takes no longer than the others

    async def close(_: web.Application) -> None:
        auth.close()

    # aiohttp 3.9 annotates its signals for aiosignal < 1.4; aiosignal 1.4 made Signal generic over the arguments.
    app.on_cleanup.append(close)  # type: ignore[arg-type]
    return auth


def routes() -> list[web.RouteDef]:
    return [web.post("/agent/login", login), web.post("/agent/logout", logout), web.get("/api/me", me)]


# Request handling


async def current_user(request: web.Request, roles: set[str] | None = None) -> AgentUser:
    """The logged-in user (session cookie) or the machine client (HTTP Basic) making `request`.

    Raises 401 without valid credentials (for /api/ paths with a Basic
    challenge, unless the request says `X-Requested-With`, as the browser
    desktop does, so browsers show no password dialog of their own), 429 while
    the username is locked and 403 when `roles` is given and the user's role is
    not in it.
    """
    user: AgentUser | None = request.get(_USER_KEY)
    if user is None:
        user = await _authenticate(request)
        request[_USER_KEY] = user
    if roles is not None and user.role not in roles:
        raise json_error(web.HTTPForbidden, f"this needs the role {' or '.join(sorted(roles))}")
    return user


async def _authenticate(request: web.Request) -> AgentUser:
    auth = request.app[AUTH]
    token = request.cookies.get(COOKIE)
    if token:
        username = auth.sessions.lookup(token)
        user = auth.user(username) if username else None
        if user is not None:
            return user
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if header[:6].lower() == "basic ":
        try:
            credentials = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            raise _unauthorized(request, "malformed Basic credentials") from None
        user = await auth.authenticate(credentials.login, credentials.password, auth.source(request), cache=True)
        if user is None:
            raise _unauthorized(request, "wrong username or password")
        return user
    raise _unauthorized(request, "session expired, please log in again" if token else "please log in")


async def login(request: web.Request) -> web.Response:
    """`POST /agent/login` with `username` and `password` (JSON, or a form of this site): starts a session (cookie)."""
    auth = request.app[AUTH]
    username, password = await _login_form(request)
    user = await auth.authenticate(username, password, auth.source(request))
    if user is None:
        raise json_error(web.HTTPUnauthorized, "wrong username or password")
    old = request.cookies.get(COOKIE)
    if old:  # a fresh token on every login: a token planted before login is worth nothing
        auth.sessions.logout(old)
    log.info("agent.login", extra={"username": user.username})
    response = web.json_response(user_json(user), headers={hdrs.CACHE_CONTROL: "no-store"})
    # Behind a TLS proxy the request itself is plain HTTP; the proxy's header still marks the cookie Secure.
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(
        COOKIE, auth.sessions.login(user.username), path="/", httponly=True, samesite="Strict", secure=secure
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """`POST /agent/logout`: ends the session (answers 200 also when there was none)."""
    token = request.cookies.get(COOKIE)
    if token:
        auth = request.app[AUTH]
        username = auth.sessions.lookup(token)
        auth.sessions.logout(token)
        if username:
            log.info("agent.logout", extra={"username": username})
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    """`GET /api/me`: who is logged in, with role, tenants and skills (the desktop shows and uses them)."""
    return web.json_response(user_json(await current_user(request)), headers={hdrs.CACHE_CONTROL: "no-store"})


def user_json(user: AgentUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "name": user.name,
        "role": user.role,
        "tenants": list(user.tenants),
        "skills": list(user.skills),
    }


async def _login_form(request: web.Request) -> tuple[str, str]:
    """Username and password of a login that is not another site's (login CSRF): 403 naming the reason if it is.

    JSON cannot be sent cross-site without a CORS preflight, which is never
    granted; a form can, so a form counts only with this site's Origin.
    """
    reason = foreign_origin(request)
    if reason is not None:
        raise json_error(web.HTTPForbidden, f"cross-site login refused: {reason}")
    if request.content_type == "application/json":
        try:
            data: Any = await request.json()
        except ValueError:
            raise json_error(web.HTTPBadRequest, "the body is not valid JSON") from None
    elif request.content_type in _FORMS:
        if hdrs.ORIGIN not in request.headers:
            message = "cross-site login refused: a login form needs this site's Origin header; send JSON instead"
            raise json_error(web.HTTPForbidden, message)
        data = await request.post()
    else:
        message = "send username and password as JSON (Content-Type: application/json)"
        raise json_error(web.HTTPUnsupportedMediaType, message)
    if not hasattr(data, "get"):  # a dict or the form's MultiDict
        raise json_error(web.HTTPBadRequest, "send username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise json_error(web.HTTPBadRequest, "send username and password")
    return username, password


_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _unauthorized(request: web.Request, message: str) -> web.HTTPUnauthorized:
    headers: dict[str, str] = {}
    if request.path.startswith("/api/") and "X-Requested-With" not in request.headers:
        headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="ivr"'
    return json_error(web.HTTPUnauthorized, message, headers)
