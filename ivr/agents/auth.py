"""Who may read call data: agent logins (session cookie) and machine clients (HTTP Basic).

Transcripts and handoff packages are personal data (GDPR), so every API route
that returns them asks `current_user` first, and users only see the tenants
their `agents:` entry in ivr.yml lists. Only scrypt hashes of passwords are
configured (`ivr agents hash-password`); a password is never logged or stored.

People log in once and get a random session token in an HttpOnly,
SameSite=Strict cookie; machines (a CRM or an external ACD) send HTTP Basic
credentials with each request instead. The browser login is JSON (which
another site's page cannot send without a CORS preflight we never grant); a
login whose Origin or Sec-Fetch-Site names another site is refused (403), and
so is a form post without this site's Origin (login CSRF: a foreign page must
not log the agent's browser into an account of the attacker's choice).

Both ways count towards the same brute-force limit per username *and source
address*: after `MAX_FAILURES` wrong passwords within `WINDOW_S` from one
address, that address's further attempts for the name are refused with 429 for
`LOCKOUT_S`, even with the right password. Per address, so that somebody
guessing cannot lock a machine's Basic-auth user out for everybody. Spraying
many names from one address is held back by a token bucket per address
(`logins.attempts_per_minute`, `logins.attempt_burst`; 429 beyond it). The
address is the connection's peer unless that is one of `logins.trusted_proxies`;
then it is the client X-Forwarded-For names (IPv6: its /64, which one machine
typically owns). Failures are logged with the username only (no password, no
address).

scrypt is slow on purpose, so it runs on threads of its own (`HashPool`): on
asyncio's default executor a burst of logins queued ahead of every storage call.

Sessions, the failure counts and the buckets live in this process's memory: a
restart logs everyone out, and several `ivr serve` processes behind one address
need sticky sessions (or Basic auth).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import BasicAuth, hdrs, web

from ivr.settings import AgentUser, LoginSettings

log = logging.getLogger("ivr.agents")
E = TypeVar("E", bound=web.HTTPException)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Key = tuple[str, str]  # (username, source address): what the brute-force limit counts

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

    def lookup(self, token: str) -> str | None:
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
    """Failed logins per (username, source address): `MAX_FAILURES` within `WINDOW_S` lock the pair for `LOCKOUT_S`.

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
        self._failures: dict[Key, deque[float]] = {}
        self._locked: dict[Key, float] = {}

    def retry_after(self, key: Key) -> float:
        """Seconds until `key` may try again; 0 when it is not locked."""
        until = self._locked.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked[key]
            return 0.0
        return left

    def failed(self, key: Key) -> int:
        """Count a failure; returns the failures within the window (reaching the limit locks the key)."""
        now = self._clock()
        if key not in self._failures and len(self._failures) >= self.MAX_NAMES:
            self._prune(now)
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        times.append(now)
        count = len(times)
        if count >= self.max_failures:
            self._locked[key] = now + self.lockout_s
            del self._failures[key]
        return count

    def _prune(self, now: float) -> None:
        self._failures = {k: t for k, t in self._failures.items() if t and now - t[-1] < self.window_s}
        self._locked = {k: until for k, until in self._locked.items() if until > now}
        while len(self._failures) >= self.MAX_NAMES:  # still full: forget the oldest keys
            self._failures.pop(next(iter(self._failures)))


class SourceLimiter:
    """Password checks per source address: a token bucket of `burst` checks, refilled at `per_minute`.

    The per-name lock-out alone lets one address try four passwords for every
    username it can think of; this bounds what one address may try (and how
    much of the hashing threads it may take) whatever the names.
    """

    MAX_SOURCES = 10_000  # many addresses must not grow memory without bound

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.per_s, self.burst, self._clock = per_minute / 60.0, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # source → (tokens, when counted)

    def take(self, source: str) -> float:
        """0 when `source` may check a password now (and this counts), else the seconds until it may."""
        now = self._clock()
        if source not in self._buckets and len(self._buckets) >= self.MAX_SOURCES:
            self._prune(now)
        tokens, at = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return (1.0 - tokens) / self.per_s
        self._buckets[source] = (tokens - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget the buckets that have filled up again (they behave like new ones), else the oldest."""
        self._buckets = {s: (t, at) for s, (t, at) in self._buckets.items() if t + (now - at) * self.per_s < self.burst}
        while len(self._buckets) >= self.MAX_SOURCES:
            self._buckets.pop(next(iter(self._buckets)))


class HashPool:
    """scrypt checks on `threads` threads of their own, at most `queue` more waiting.

    A check costs some 50 ms of CPU and 16 MiB. On asyncio's default executor a
    burst of logins queued ahead of every storage call (80 parallel logins made
    a text call's set-up take 7 s instead of 0.3 s); here logins only wait for
    each other, and beyond `threads + queue` checks in flight a login is
    refused at once (503 with Retry-After) instead of queueing without end.
    """

    def __init__(self, threads: int, queue: int):
        self.threads, self.limit = threads, threads + queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="ivr-hash")
        self._pending = 0  # submitted and not done; done callbacks run on the hashing threads, hence the lock
        self._lock = threading.Lock()

    async def verify(self, password: str, stored: str) -> bool:
        """`verify_password` on the pool's threads; raises 503 when `limit` checks are in flight already."""
        with self._lock:
            if self._pending >= self.limit:
                busy = True
            else:
                busy, self._pending = False, self._pending + 1
        if busy:
            log.warning("agent.login_busy", extra={"in_flight": self.limit})
            raise _error(web.HTTPServiceUnavailable, "too many logins at once; try again in a moment",
                         {hdrs.RETRY_AFTER: "1"})  # fmt: skip
        future: Future[bool] = self._executor.submit(verify_password, password, stored)
        future.add_done_callback(self._done)  # also when the waiting request goes away: the thread is busy until then
        return await asyncio.wrap_future(future)

    @property
    def in_flight(self) -> int:
        """Checks running or waiting for a thread."""
        return self._pending

    def _done(self, _: Future[bool]) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """The `logins.trusted_proxies` entries as networks (the settings schema checked them)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def client_address(request: web.BaseRequest, trusted: Sequence[Network] = ()) -> str:
    """Where `request` comes from, as the brute-force limits count it.

    The connection's peer; when that is a trusted proxy, the nearest address in
    X-Forwarded-For that is not one (each proxy appends the address it was
    connected from, so entries left of a trusted one may be made up by the
    client). An IPv6 client counts as its /64.
    """
    address = _ip(request.remote or "")
    if address is None:
        return request.remote or "unknown"
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")]
    while hops and any(address in net for net in trusted):
        forwarded = _ip(hops.pop())
        if forwarded is None:  # a trusted proxy passed on something that is no address: stop at the proxy
            break
        address = forwarded
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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
        stored = user.password_hash if user else _dummy_hash()
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
            raise _error(web.HTTPTooManyRequests, "too many failed logins for this user; try again later", retry)

    def _refuse_if_throttled(self, name: str, source: str) -> None:
        wait = self.sources.take(source)
        if wait > 0:
            log.warning("agent.login_throttled", extra={"username": name, "retry_after_s": math.ceil(wait)})
            retry: dict[str, str] = {hdrs.RETRY_AFTER: str(math.ceil(wait))}
            raise _error(web.HTTPTooManyRequests, "too many login attempts from this address; try again later", retry)

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
    _dummy_hash()  # made now, so that the first unknown username takes no longer than the others

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
    """Username and password of a login that is not another site's (login CSRF): 403 naming the reason if it is.

    JSON cannot be sent cross-site without a CORS preflight, which is never
    granted; a form can, so a form counts only with this site's Origin.
    """
    reason = foreign_origin(request)
    if reason is not None:
        raise _error(web.HTTPForbidden, f"cross-site login refused: {reason}")
    if request.content_type == "application/json":
        try:
            data: Any = await request.json()
        except ValueError:
            raise _error(web.HTTPBadRequest, "the body is not valid JSON") from None
    elif request.content_type in _FORMS:
        if hdrs.ORIGIN not in request.headers:
            message = "cross-site login refused: a login form needs this site's Origin header; send JSON instead"
            raise _error(web.HTTPForbidden, message)
        data = await request.post()
    else:
        message = "send username and password as JSON (Content-Type: application/json)"
        raise _error(web.HTTPUnsupportedMediaType, message)
    if not hasattr(data, "get"):  # a dict or the form's MultiDict
        raise _error(web.HTTPBadRequest, "send username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise _error(web.HTTPBadRequest, "send username and password")
    return username, password


_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _unauthorized(request: web.Request, message: str) -> web.HTTPUnauthorized:
    headers: dict[str, str] = {}
    if request.path.startswith("/api/") and "X-Requested-With" not in request.headers:
        headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="ivr"'
    return _error(web.HTTPUnauthorized, message, headers)


def _error(kind: type[E], message: str, headers: dict[str, str] | None = None) -> E:
    """An HTTP error with a JSON body `{"error": message}`."""
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
