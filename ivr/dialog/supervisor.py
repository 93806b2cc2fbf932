"""Starts and supervises the dialog engine's processes for `ivr serve`.

Two processes make up the dialog engine: `rasa run` (NLU and policies) and the
Rasa action server (`rasa_sdk`, running `dialogs/actions`: orders, tickets,
FAQ answers, handoffs). Rasa runs in its own process because its TensorFlow
inference would hold the GIL in bursts and jitter the 20 ms audio pacing, a
crash in it must not take calls down, and one Rasa server can serve several IVR
processes when scaled out. Both are restarted with backoff if they die.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

import aiohttp

from ivr.dialog import channel_token
from ivr.dialog.rasa_client import RasaClient
from ivr.errors import DialogUnavailable

log = logging.getLogger("ivr.dialog.supervisor")


CREDENTIALS = "ivr.dialog.rasa_channel.IvrInput: {}\n"
# Rasa's command line with its models loaded without a throw-away training step (ivr/dialog/rasa_main.py).
RASA = [sys.executable, "-m", "ivr.dialog.rasa_main"]
ACTIONS_PACKAGE = "dialogs.actions"


def endpoints_yaml(actions_url: str) -> str:
    """Rasa's endpoints file: where the action server is."""
    return f"action_endpoint:\n  url: {actions_url.rstrip('/')}/webhook\n"


def rasa_command(model: Path, port: int, config_dir: Path, actions_url: str | None) -> list[str]:
    """`rasa run` with the IVR channel; also used by the tests to start the same server."""
    (config_dir / "credentials.yml").write_text(CREDENTIALS)
    cmd = [*RASA, "run", "--model", str(model), "--port", str(port),
           "--interface", "127.0.0.1", "--credentials", str(config_dir / "credentials.yml")]  # fmt: skip
    if actions_url:
        (config_dir / "endpoints.yml").write_text(endpoints_yaml(actions_url))
        cmd += ["--endpoints", str(config_dir / "endpoints.yml")]
    return cmd


def claim_port(port: int, field: str) -> int:
    """The loopback port a child will listen on: a free one for 0, else `port` if nothing listens there yet.

    A child that cannot bind its port exits, and a readiness probe on that port would then be answered by
    whoever holds it (another `ivr serve` on the same machine): its callers' turns went to the other
    instance's Rasa and actions, which read and wrote the other instance's database. Refusing to start
    with the field to change is the only safe answer to a taken port.
    """
    if port == 0:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise DialogUnavailable(
                f"{field}: port {port} on 127.0.0.1 is already in use (another `ivr serve` or `rasa run`?); "
                f"set {field}: 0 to start on a free port"
            ) from None
    return port


def actions_command(port: int) -> list[str]:
    return [sys.executable, "-m", "rasa_sdk", "--actions", ACTIONS_PACKAGE, "--port", str(port)]


def actions_env(settings_file: Path, database_url: str) -> dict[str, str]:
    """What the action server needs to find tenants and storage, and to listen on loopback only."""
    return {"IVR_SETTINGS": str(settings_file), "IVR_DATABASE_URL": database_url, "SANIC_HOST": "127.0.0.1"}


class Supervised:
    """A child process that must answer a readiness probe, restarted with backoff when it dies."""

    name = "process"

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], startup_timeout_s: float):
        self.command = command
        self.cwd = cwd
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore", **env)
        self.startup_timeout_s = startup_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None
        self._stopping = False
        self.state = "stopped"  # starting | ready | restarting | stopped, shown by /healthz
        self.restarts = 0

    def health(self) -> dict[str, object]:
        return {"state": self.state, "restarts": self.restarts}

    async def ready(self) -> bool:
        raise NotImplementedError

    async def _spawn(self) -> None:
        self.state = "starting"
        self._process = await asyncio.create_subprocess_exec(*self.command, cwd=self.cwd, env=self.env)
        log.info(f"{self.name}.started", extra={"pid": self._process.pid})

    async def start(self) -> None:
        await self._spawn()
        await self.wait_ready()
        self._watch = asyncio.create_task(self._supervise())

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout_s
        while loop.time() < deadline:
            if self._process and self._process.returncode is not None:
                raise DialogUnavailable(f"{self.name} exited with code {self._process.returncode} during start-up")
            if await self.ready():
                self.state = "ready"
                return
            await asyncio.sleep(0.5)
        raise DialogUnavailable(f"{self.name} did not become ready within {self.startup_timeout_s:.0f} s")

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            log.error(f"{self.name}.exited", extra={"code": code, "restart_in_s": backoff})
            self.state = "restarting"
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            await self._spawn()
            try:
                await self.wait_ready()
                backoff = 1.0
            except DialogUnavailable as exc:
                log.error(f"{self.name}.restart_failed", extra={"error": str(exc)})

    async def stop(self) -> None:
        self._stopping = True
        self.state = "stopped"
        if self._watch:
            self._watch.cancel()
        if self._process and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 15)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()


class RasaServer(Supervised):
    """`rasa run` on its own port, answering only requests that carry this start's token."""

    name = "rasa"

    def __init__(self, model: Path, port: int, project_root: Path, actions_url: str | None, startup_timeout_s: float):
        self.url = f"http://127.0.0.1:{port}"
        self.token = secrets.token_urlsafe(24)
        config_dir = Path(tempfile.mkdtemp(prefix="ivr-rasa-"))
        super().__init__(rasa_command(model, port, config_dir, actions_url) + ["--quiet"], project_root,
                         {channel_token.ENV: self.token}, startup_timeout_s)  # fmt: skip

    async def ready(self) -> bool:
        client = RasaClient(self.url, timeout_s=2, token=self.token)
        try:
            return await client.ready()
        finally:
            await client.close()


class ActionServer(Supervised):
    name = "actions"

    def __init__(self, port: int, project_root: Path, settings_file: Path, database_url: str, startup_timeout_s: float):
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(actions_command(port), project_root, actions_env(settings_file, database_url),
                         startup_timeout_s)  # fmt: skip

    async def ready(self) -> bool:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
                async with http.get(f"{self.url}/health") as resp:
                    return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False
