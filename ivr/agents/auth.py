"""Who may read call data: agent logins (session cookie) and machine clients (HTTP Basic).

Transcripts and handoff packages are personal data (GDPR), so every API route
that returns them asks `current_user` first, and users only see the tenants
their `agents:` entry in ivr.yml lists. Only scrypt hashes of passwords are
configured (`ivr agents hash-password`); a password is never logged or stored.

People log in once and get a random session token in an HttpOnly,
SameSite=Strict cookie; machines (a CRM or an external ACD) send HTTP Basic
credentials with each request instead. Both count towards the same brute-force
limit per username: after `MAX_FAILURES` wrong passwords within `WINDOW_S`
further attempts are refused with 429 for `LOCKOUT_S`, even with the right
password. Failures are logged with the username only (no password, no address).

Sessions and the failure counts live in this process's memory: a restart logs
everyone out, and several `ivr serve` processes behind one address need sticky
sessions (or Basic auth).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, AsyncIterator, Callable, Iterable, Optional, TypeVar

from aiohttp import BasicAuth, hdrs, web

from ivr.settings import AgentUser

log = logging.getLogger("ivr.agents")
E = TypeVar("E", bound=web.HTTPException)

COOKIE = "ivr_session"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB and some 50 ms per check: slow for guessing, fine for a login
SALT_BYTES, HASH_BYTES = 16, 32
# Limits for parameters read from a stored hash, so a mistyped ivr.yml cannot make every login eat gigabytes.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
_MAX_MEM = 1 << 30

MAX_FAILURES = 5
WINDOW_S = 300.0
LOCKOUT_S = 300.0
IDLE_S = 8 * 3600.0  # a shift's break does not log anybody out, a forgotten desk the next morning does
ABSOLUTE_S = 12 * 3600.0  # a stolen cookie is useless after one long shift
BASIC_CACHE_S = 60.0  # machines send Basic credentials with every request: do not run scrypt for each


# Password hashes


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64) of `password` with a fresh random salt."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the `hash_password` result `stored`; False for anything malformed."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        n_, r_, p_ = int(n), int(r), int(p)
        salt_b, expected_b = base64.b64decode(salt, validate=True), base64.b64decode(expected, validate=True)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt" or not password or not expected_b or not _sane(n_, r_, p_):
        return False
    try:
        digest = _scrypt(password, salt_b, n_, r_, p_, len(expected_b))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected_b)


def _sane(n: int, r: int, p: int) -> bool:
    return 1 < n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    maxmem = min(_MAX_MEM, 128 * r * (n + p + 2) + (1 << 20))
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Checked for unknown usernames, so a wrong name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


# Sessions and the brute-force limit


@dataclass
class _Session:
    username: str
    created: float
    seen: float


class SessionStore:
    """Random session tokens → username, in this process's memory (a restart logs everybody out)."""

    def __init__(
        self, idle_s: float = IDLE_S, absolute_s: float = ABSOLUTE_S, clock: Callable[[], float] = time.monotonic
    ):
        self.idle_s, self.absolute_s, self._clock = idle_s, absolute_s, clock
        self._sessions: dict[str, _Session] = {}

    def login(self, username: str) -> str:
        now = self._clock()
        self._sessions = {t: s for t, s in self._sessions.items() if self._alive(s, now)}
        token = secrets.token_urlsafe(32)
        self._sessions[token] = _Session(username, now, now)
        return token

    def lookup(self, token: str) -> Optional[str]:
        """The session's username (and the session counts as used now), or None if unknown or expired."""
        session = self._sessions.get(token)
        now = self._clock()
        if session is None:
            return None
        if not self._alive(session, now):
            del self._sessions[token]
            return None
        session.seen = now
        return session.username

    def logout(self, token: str) -> None:
        self._sessions.pop(token, None)

    def _alive(self, session: _Session, now: float) -> bool:
        return now - session.seen < self.idle_s and now - session.created < self.absolute_s


class LoginThrottle:
    """Failed logins per username: `MAX_FAILURES` within `WINDOW_S` lock the name for `LOCKOUT_S`.

    A successful login does not clear earlier failures: otherwise a machine
    client's valid requests would keep resetting an attacker's count.
    """

    MAX_NAMES = 10_000  # random usernames must not grow memory without bound

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        lockout_s: float = LOCKOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures, self.window_s, self.lockout_s, self._clock = max_failures, window_s, lockout_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def retry_after(self, username: str) -> float:
        """Seconds until `username` may try again; 0 when it is not locked."""
        until = self._locked.get(username)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked[username]
            return 0.0
        return left

    def failed(self, username: str) -> int:
        """Count a failure; returns the failures within the window (reaching the limit locks the name)."""
        now = self._clock()
        if username not in self._failures and len(self._failures) >= self.MAX_NAMES:
            self._prune(now)
        times = self._failures.setdefault(username, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        times.append(now)
        count = len(times)
        if count >= self.max_failures:
            self._locked[username] = now + self.lockout_s
            del self._failures[username]
        return count

    def _prune(self, now: float) -> None:
        self._failures = {u: t for u, t in self._failures.items() if t and now - t[-1] < self.window_s}
        self._locked = {u: until for u, until in self._locked.items() if until > now}
        while len(self._failures) >= self.MAX_NAMES:  # still full: forget the oldest names
            self._failures.pop(next(iter(self._failures)))


class Auth:
    """The users (read from the settings on every use, so the current list counts), sessions and throttle."""

    def __init__(
        self,
        users: Callable[[], Iterable[AgentUser]],
        sessions: Optional[SessionStore] = None,
        throttle: Optional[LoginThrottle] = None,
    ):
        self._users = users
        self.sessions = sessions or SessionStore()
        self.throttle = throttle or LoginThrottle()
        self._key = secrets.token_bytes(32)  # for the Basic cache: keyed digests, never the passwords
        self._verified: dict[bytes, float] = {}
        self._attempts: dict[str, tuple[asyncio.Lock, int]] = {}  # per name: its lock and how many use it

    def user(self, username: str) -> Optional[AgentUser]:
        return next((u for u in self._users() if u.username == username), None)

    async def authenticate(self, username: str, password: str, cache: bool = False) -> Optional[AgentUser]:
        """The user if the password is right, else None (logged, counted); raises 429 while the name is locked.

        Attempts for one name are checked one after the other, so a burst of
        parallel guesses cannot all be tried before the first failures count.
        `cache`: remember a success for `BASIC_CACHE_S` (Basic auth comes with every request).
        """
        name = username.strip().lower()[:64]
        self._refuse_if_locked(name)
        user = self.user(name)
        stored = user.password_hash if user else _dummy_hash()
        key = hmac.digest(self._key, "\0".join((name, password, stored)).encode("utf-8"), "sha256")
        if cache and user is not None and self._verified.get(key, 0.0) > time.monotonic():
            return user
        async with self._one_at_a_time(name):
            self._refuse_if_locked(name)  # the attempts before this one may have locked it
            if await asyncio.to_thread(verify_password, password, stored) and user is not None:
                if cache:
                    now = time.monotonic()
                    self._verified = {k: t for k, t in self._verified.items() if t > now}
                    self._verified[key] = now + BASIC_CACHE_S
                return user
            failures = self.throttle.failed(name)
        log.warning(
            "agent.login_failed",
            extra={"username": name, "failures": failures, "locked": failures >= self.throttle.max_failures},
        )
        return None

    def _refuse_if_locked(self, name: str) -> None:
        wait = self.throttle.retry_after(name)
        if wait > 0:
            log.warning("agent.login_refused", extra={"username": name, "retry_after_s": math.ceil(wait)})
            retry = {hdrs.RETRY_AFTER: str(math.ceil(wait))}
            raise _error(web.HTTPTooManyRequests, "too many failed logins for this user; try again later", retry)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, name: str) -> AsyncIterator[None]:
        lock, waiting = self._attempts.get(name, (asyncio.Lock(), 0))
        self._attempts[name] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._attempts[name]
            if waiting == 1:
                del self._attempts[name]
            else:
                self._attempts[name] = (lock, waiting - 1)


AUTH = web.AppKey("agent_auth", Auth)
_USER_KEY = "ivr.agents.user"  # the request's authenticated user, so one request checks credentials once


def setup(app: web.Application, users: Callable[[], Iterable[AgentUser]]) -> Auth:
    """Give `app` its login state; `users` returns the configured agents (e.g. `lambda: runtime.settings.agents`)."""
    auth = Auth(users)
    app[AUTH] = auth
    _dummy_hash()  # made now, so that the first unknown username takes no longer than the others
    return auth


def routes() -> list[web.RouteDef]:
    return [web.post("/agent/login", login), web.post("/agent/logout", logout), web.get("/api/me", me)]


# Request handling


async def current_user(request: web.Request, roles: Optional[set[str]] = None) -> AgentUser:
    """The logged-in user (session cookie) or the machine client (HTTP Basic) making `request`.

    Raises 401 without valid credentials (for /api/ paths with a Basic
    challenge, unless the request says `X-Requested-With`, as the browser
    desktop does, so browsers show no password dialog of their own), 429 while
    the username is locked and 403 when `roles` is given and the user's role is
    not in it.
    """
    user: Optional[AgentUser] = request.get(_USER_KEY)
    if user is None:
        user = await _authenticate(request)
        request[_USER_KEY] = user
    if roles is not None and user.role not in roles:
        raise _error(web.HTTPForbidden, f"this needs the role {' or '.join(sorted(roles))}")
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
        user = await auth.authenticate(credentials.login, credentials.password, cache=True)
        if user is None:
            raise _unauthorized(request, "wrong username or password")
        return user
    raise _unauthorized(request, "session expired, please log in again" if token else "please log in")


async def login(request: web.Request) -> web.Response:
    """`POST /agent/login` with `username` and `password` (form or JSON): starts a session (cookie)."""
    auth = request.app[AUTH]
    username, password = await _login_form(request)
    user = await auth.authenticate(username, password)
    if user is None:
        raise _error(web.HTTPUnauthorized, "wrong username or password")
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
    if request.content_type == "application/json":
        try:
            data: Any = await request.json()
        except ValueError:
            raise _error(web.HTTPBadRequest, "the body is not valid JSON") from None
    else:
        data = await request.post()
    if not hasattr(data, "get"):  # a dict or the form's MultiDict
        raise _error(web.HTTPBadRequest, "send username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise _error(web.HTTPBadRequest, "send username and password")
    return username, password


def _unauthorized(request: web.Request, message: str) -> web.HTTPUnauthorized:
    headers = {}
    if request.path.startswith("/api/") and "X-Requested-With" not in request.headers:
        headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="ivr"'
    return _error(web.HTTPUnauthorized, message, headers)


def _error(kind: type[E], message: str, headers: Optional[dict[str, str]] = None) -> E:
    """An HTTP error with a JSON body `{"error": message}`."""
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
