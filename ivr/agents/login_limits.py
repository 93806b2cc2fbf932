"""The brute-force limits on logins, and the client address they count by.

Both ways of logging in (session login and HTTP Basic) count towards the same
limit per username *and source address*: after `MAX_FAILURES` wrong passwords
within `WINDOW_S` from one address, that address's further attempts for the
name are refused with 429 for `LOCKOUT_S`, even with the right password. Per
address, so that somebody guessing cannot lock a machine's Basic-auth user out
for everybody. Spraying many names from one address is held back by a token
bucket per address (`logins.attempts_per_minute`, `logins.attempt_burst`; 429
beyond it). The address is the connection's peer unless that is one of
`logins.trusted_proxies`; then it is the client X-Forwarded-For names (IPv6:
its /64, which one machine typically owns).

The failure counts and the buckets live in this process's memory.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Key = tuple[str, str]  # (username, source address): what the brute-force limit counts

MAX_FAILURES = 5
WINDOW_S = 300.0
LOCKOUT_S = 300.0


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
