"""Client for the IVR channel of a running Rasa server."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import aiohttp

from ivr.dialog import channel_token
from ivr.dialog.payloads import DialogTurn
from ivr.errors import DialogUnavailable


class RasaClient:
    """One aiohttp session shared by all calls; one POST per turn."""

    def __init__(self, base_url: str, timeout_s: float = 8.0, token: Optional[str] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {channel_token.HEADER: token} if token else {}
        self._session: Optional[aiohttp.ClientSession] = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def turn(
        self,
        sender: str,
        text: str,
        slots: Optional[dict[str, Any]] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> DialogTurn:
        """Send one caller message; raises DialogUnavailable on timeout or error."""
        body = {"sender": sender, "text": text, "slots": slots or {}, "metadata": metadata or {}}
        started = time.perf_counter()
        try:
            async with self._http().post(f"{self.base_url}/webhooks/ivr/turn", json=body) as resp:
                if resp.status != 200:
                    detail = (await resp.text())[:200]
                    raise DialogUnavailable(f"Rasa answered HTTP {resp.status}: {detail}")
                data = await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DialogUnavailable(f"Rasa at {self.base_url} did not answer: {exc!r}") from exc
        return DialogTurn.from_json(data, time.perf_counter() - started)

    async def end(self, sender: str) -> None:
        try:
            async with self._http().post(f"{self.base_url}/webhooks/ivr/end", json={"sender": sender}):
                pass
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # forgetting a tracker is housekeeping; the call is over either way

    async def ready(self) -> bool:
        """Whether the Rasa at base_url has a model loaded; raises if it is not the one this client may use.

        401 means a Rasa with another start's token listens there: waiting would only end in a time-out
        (or, worse, in using it), so it is an error at once.
        """
        try:
            async with self._http().get(f"{self.base_url}/webhooks/ivr/") as resp:
                if resp.status == 401:
                    raise DialogUnavailable(
                        f"the Rasa answering at {self.base_url} was started by another IVR (it refused this "
                        f"start's {channel_token.HEADER})"
                    )
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
