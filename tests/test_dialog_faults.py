"""The dialog engine's processes die mid-call (hardening findings 2 and 5), reproduced with real kills.

One `ivr serve` of its own supervises its own `rasa run` and action server,
as in production; the tests kill those children by PID and talk on through
the text API, which drives the same Conversation a phone call does.

Seen before the fixes: after Rasa came back, an English tenant's conversation
went on as the default German tenant (its slots had been sent with the first
turn only); with the action server dead mid-form, the next turn answered
nothing at all, and no person was offered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from ivr.dialog import channel_token
from ivr.localhost import free_port, wait_http
from ivr.session.prompts import SAY_AGAIN, TECHNICAL_PROBLEM
from ivr.settings import load_settings
from tests.conftest import MODEL_ENV, ROOT, TEST_SETTINGS

ACME = "+442071234567"  # English tenant; the default tenant is German


def _children(pid: int) -> dict[str, int]:
    """The supervised children of an `ivr serve`, by what they run."""
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        child, args = line.strip().split(" ", 1)
        if "ivr.dialog.rasa_main" in args:
            found["rasa"] = int(child)
        elif "rasa_sdk" in args:
            found["actions"] = int(child)
    return found


async def _wait_restarted(http: aiohttp.ClientSession, url: str, name: str, timeout: float = 180) -> None:
    """Until /healthz shows the child restarted once and ready again."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(f"{url}/healthz") as resp:
            health = (await resp.json())["dialog"][name]
        if health == {"state": "ready", "restarts": 1}:
            return
        assert time.monotonic() < deadline, f"{name} not restarted after {timeout} s: {health}"
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def own_ivr(rasa_model: Path, dialog_db: str, tmp_path_factory: pytest.TempPathFactory):
    """`ivr serve` starting its own Rasa and action server (no IVR_DIALOG_URL), on the session's model."""
    work = tmp_path_factory.mktemp("faults")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("IVR_DIALOG_URL", channel_token.ENV)}
    env.update(MODEL_ENV, IVR_DATABASE_URL=dialog_db)
    log = work / "ivr.log"
    cmd = [sys.executable, "-m", "ivr.cli", "--settings", str(TEST_SETTINGS), "serve", "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, 300, log)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(60)


async def _start(http: aiohttp.ClientSession, url: str, to: str) -> tuple[str, dict]:
    async with http.post(f"{url}/api/conversations", json={"to": to, "from": "+447700900123"}) as resp:
        first = await resp.json()
    return first["conversation_id"], first


async def _say(http: aiohttp.ClientSession, url: str, cid: str, text: str) -> dict:
    async with http.post(f"{url}/api/conversations/{cid}/messages", json={"text": text}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_tenant_survives_a_rasa_restart(own_ivr):
    url, proc = own_ivr
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        cid, first = await _start(http, url, ACME)
        assert "Acme" in " ".join(first["replies"])
        os.kill(_children(proc.pid)["rasa"], signal.SIGKILL)
        await _wait_restarted(http, url, "rasa")
        turn = await _say(http, url, cid, "what are your opening hours")
    answer = load_settings(TEST_SETTINGS, env={}).tenants[ACME].faq_answer("opening_hours", "en")
    assert turn["slots"].get("tenant") == ACME
    assert turn["replies"] and answer in turn["replies"][0]  # Acme's own answer, in English


async def test_a_dead_action_server_gets_an_apology_then_a_person_never_silence(own_ivr):
    url, proc = own_ivr
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        cid, _ = await _start(http, url, ACME)
        assert (await _say(http, url, cid, "where is my order"))["requested_slot"] == "order_number"
        os.kill(_children(proc.pid)["actions"], signal.SIGKILL)
        first = await _say(http, url, cid, "five zero zero three zero zero")  # the form's validation action is gone
        assert first["replies"] == [SAY_AGAIN["en"]] and first["handoff"] is None
        second = await _say(http, url, cid, "five zero zero three zero zero")
        assert second["replies"] == [TECHNICAL_PROBLEM["en"]]
        assert second["handoff"]["reason"] == "dialog_failed" and second["ended"]
        await _wait_restarted(http, url, "actions")  # and it comes back for the next caller
