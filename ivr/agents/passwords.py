"""Password hashes: scrypt, and the threads that check them.

Only scrypt hashes of passwords are configured (`ivr agents hash-password`);
a password is never logged or stored.

scrypt is slow on purpose, so it runs on threads of its own (`HashPool`): on
asyncio's default executor a burst of logins queued ahead of every storage call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

from aiohttp import hdrs, web

from ivr.agents.errors import json_error

log = logging.getLogger("ivr.agents")

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB and some 50 ms per check: slow for guessing, fine for a login
SALT_BYTES, HASH_BYTES = 16, 32
# Limits for parameters read from a stored hash, so a mistyped ivr.yml cannot make every login eat gigabytes.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
_MAX_MEM = 1 << 30


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
def dummy_hash() -> str:
    """Checked for unknown usernames, so a wrong name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


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
            raise json_error(web.HTTPServiceUnavailable, "too many logins at once; try again in a moment",
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
