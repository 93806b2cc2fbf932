"""Starts and supervises `rasa run` for `ivr serve`.

Rasa runs in its own process: its TensorFlow inference would otherwise hold
the GIL in bursts and jitter the 20 ms audio pacing, a crash in it must not
take calls down with it, and one Rasa server can serve several IVR processes
when scaled out. The supervisor restarts it with backoff if it dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

from ivr.dialog.rasa_client import RasaClient
from ivr.errors import DialogUnavailable

log = logging.getLogger("ivr.dialog.rasa")

CREDENTIALS = "ivr.dialog.rasa_channel.IvrInput: {}\n"


class RasaServer:
    def __init__(self, model: Path, port: int, project_root: Path, startup_timeout_s: float = 240.0):
        self.model = Path(model)
        self.port = port
        self.project_root = project_root
        self.startup_timeout_s = startup_timeout_s
        self.url = f"http://127.0.0.1:{port}"
        self._process: Optional[asyncio.subprocess.Process] = None
        self._watch: Optional[asyncio.Task] = None
        self._stopping = False
        self._credentials = Path(tempfile.mkdtemp(prefix="ivr-rasa-")) / "credentials.yml"
        self._credentials.write_text(CREDENTIALS)

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "rasa", "run",
            "--model", str(self.model),
            "--port", str(self.port),
            "--interface", "127.0.0.1",
            "--credentials", str(self._credentials),
            "--quiet",
        ]  # fmt: skip

    async def _spawn(self) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
        self._process = await asyncio.create_subprocess_exec(*self._command(), cwd=self.project_root, env=env)
        log.info("rasa.started", extra={"pid": self._process.pid, "port": self.port})

    async def start(self) -> None:
        """Start Rasa and wait until the IVR channel answers."""
        await self._spawn()
        await self.wait_ready()
        self._watch = asyncio.create_task(self._supervise())

    async def wait_ready(self) -> None:
        client = RasaClient(self.url, timeout_s=2)
        deadline = asyncio.get_running_loop().time() + self.startup_timeout_s
        try:
            while asyncio.get_running_loop().time() < deadline:
                if self._process and self._process.returncode is not None:
                    raise DialogUnavailable(f"rasa run exited with code {self._process.returncode} during start-up")
                if await client.ready():
                    return
                await asyncio.sleep(0.5)
        finally:
            await client.close()
        raise DialogUnavailable(f"rasa run did not become ready within {self.startup_timeout_s:.0f} s")

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            log.error("rasa.exited", extra={"code": code, "restart_in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            await self._spawn()
            try:
                await self.wait_ready()
                backoff = 1.0
            except DialogUnavailable as exc:
                log.error("rasa.restart_failed", extra={"error": str(exc)})

    async def stop(self) -> None:
        self._stopping = True
        if self._watch:
            self._watch.cancel()
        if self._process and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 15)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()
