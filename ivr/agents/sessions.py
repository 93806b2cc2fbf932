"""Login sessions: random tokens for the session cookie, with an idle and an absolute expiry.

Sessions live in this process's memory: a restart logs everyone out, and
several `ivr serve` processes behind one address need sticky sessions (or
Basic auth).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

IDLE_S = 8 * 3600.0  # a shift's break does not log anybody out, a forgotten desk the next morning does
ABSOLUTE_S = 12 * 3600.0  # a stolen cookie is useless after one long shift


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
