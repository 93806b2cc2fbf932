"""An agent desktop client for the benchmarks: login, the /agent/ws socket, agent states.

bench/agent_audio.py (accepts calls and streams audio) and bench/key_to_agent.py
(declines offers, timing the ring) differ only in what they do with the desktop's
messages; both subclass `AgentClient` and implement `on_message`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp


class AgentClient:
    """Logs in as `username`, keeps /agent/ws open and hands every JSON message to `on_message`."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self.username = username
        self.password = password
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.state: str | None = None
        self.states: asyncio.Queue[str] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []

    async def login(self, available: bool = True) -> None:
        """Log in, open the socket and (by default) go available, as an agent starting a shift does."""
        credentials = {"username": self.username, "password": self.password}
        async with self.session.post(f"{self.url}/agent/login", json=credentials) as resp:
            if resp.status != 200:
                raise RuntimeError(f"login {self.username}: HTTP {resp.status} {await resp.text()}")
        self.ws = await self.session.ws_connect(f"{self.url.replace('http://', 'ws://')}/agent/ws", heartbeat=None)
        self.tasks.append(asyncio.create_task(self._receive(self.ws)))
        if available:
            await self.until_state("offline")
            await self.ws.send_json({"type": "state", "state": "available"})
            await self.until_state("available")

    async def until_state(self, wanted: str, timeout: float = 20) -> None:
        async def wait() -> None:
            while await self.states.get() != wanted:
                pass

        await asyncio.wait_for(wait(), timeout)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None, "login first"
        await self.ws.send_json(message)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.on_audio(msg.data, now)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("type") == "state":
                    self.state = str(data["state"])
                    self.states.put_nowait(self.state)
                await self.on_message(data, now)

    async def on_message(self, data: dict[str, Any], now: float) -> None:
        """A JSON message from the desktop socket (`now`: time.monotonic() at arrival)."""

    def on_audio(self, pcm: bytes, now: float) -> None:
        """Caller audio for the agent."""

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
