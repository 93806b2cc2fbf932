"""Client for the IVR channel of a running Rasa server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from ivr.dialog import channel_token
from ivr.dialog.payloads import DialogTurn
from ivr.errors import DialogUnavailable


class RasaClient:
    """One aiohttp session shared by all calls; one POST per turn.

    Rasa works through its requests one after the other (inference holds its
    process), so turns are let through per tenant, at most `turns_per_tenant`
    at a time: one company's surge of calls (or one slow turn) then queues
    behind itself, and another company's caller is answered in between. A turn
    that cannot get through within the timeout fails like one Rasa did not
    answer, and the caller is offered a person.
    """

    def __init__(self, base_url: str, timeout_s: float = 8.0, token: str | None = None, turns_per_tenant: int = 4):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {channel_token.HEADER: token} if token else {}
        self.turns_per_tenant = turns_per_tenant
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def turn(
        self,
        sender: str,
        text: str,
        slots: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tenant: str = "",
    ) -> DialogTurn:
        """Send one caller message; raises DialogUnavailable on timeout or error."""
        lane = self._lanes.setdefault(tenant, asyncio.Semaphore(self.turns_per_tenant))
        try:
            await asyncio.wait_for(lane.acquire(), self.timeout_s)
        except asyncio.TimeoutError:
            raise DialogUnavailable(f"{self.turns_per_tenant} turns of this tenant already waiting on Rasa") from None
        try:
            return await self._post_turn(sender, text, slots, metadata)
        finally:
            lane.release()

    async def _post_turn(
        self, sender: str, text: str, slots: dict[str, Any] | None, metadata: dict[str, Any] | None
    ) -> DialogTurn:
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
