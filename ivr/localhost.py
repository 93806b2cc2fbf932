"""Starting our servers on this machine: a free port, and waiting until a started server answers.

Used by the tools that start `rasa run`, the action server or `ivr serve` as
subprocesses and must not talk to them before they listen: `ivr test`, the
test fixtures and the benchmarks. (`ivr serve` itself supervises its servers
asynchronously, in ivr/dialog/supervisor.py.)
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(
    url: str, proc: subprocess.Popen, timeout: float, log: Path, headers: dict[str, str] | None = None
) -> None:
    """Return once `url` answers 200; raise with the tail of `log` if `proc` exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            command = proc.args[:4] if isinstance(proc.args, (list, tuple)) else proc.args
            raise RuntimeError(f"{command!r} exited with {proc.returncode}; log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{url} not ready after {timeout}s; log:\n{log.read_text()[-3000:]}")
