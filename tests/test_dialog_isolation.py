"""Two IVRs on one machine never share a dialog engine (hardening finding 14).

Seen before the fix: a second `ivr serve` found Rasa's and the action
server's fixed ports taken; its children failed to bind, but its readiness
probes were answered by the first instance's children, so its callers' turns
were understood, and its orders looked up and cancelled, in the other
instance's Rasa and database.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from aiohttp import web

from ivr.dialog import channel_token
from ivr.dialog.rasa_client import RasaClient
from ivr.dialog.supervisor import claim_port
from ivr.errors import DialogUnavailable
from ivr.server import Server
from ivr.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"


@pytest.fixture
async def other_instance():
    """What another instance's Rasa and action server answer on their ports: 200 to every readiness probe."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/webhooks/ivr/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


def _server(tmp_path: Path, **dialog: int) -> Server:
    settings = load_settings(TEST_SETTINGS, env={})
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "20260101-000000-never-loaded.tar.gz").write_bytes(b"")
    dialog_settings = dataclasses.replace(settings.dialog, url=None, actions_url=None, model_dir=str(tmp_path / "models"),
                                          startup_timeout_s=20, **dialog)  # fmt: skip
    return Server(dataclasses.replace(settings, dialog=dialog_settings), ROOT, TEST_SETTINGS)


@pytest.mark.parametrize("field", ["actions_port", "port"])
async def test_a_taken_port_stops_start_up_with_the_field_to_change(tmp_path: Path, other_instance: int, field: str):
    server = _server(tmp_path, **{field: other_instance})
    try:
        with pytest.raises(DialogUnavailable, match=rf"dialog\.{field}: port {other_instance} .* already in use"):
            await server.start(train=False)
        assert server.runtime is None and server.runner is None  # nothing answers calls
    finally:
        await server.stop()


def test_port_zero_is_a_free_port_of_its_own_each_time():
    first, second = claim_port(0, "dialog.port"), claim_port(0, "dialog.actions_port")
    assert first > 0 and second > 0
    assert claim_port(first, "dialog.port") == first  # nothing listens there: a fixed port that is free is kept
    assert load_settings(TEST_SETTINGS, env={}).dialog.port == 0


async def test_rasa_answers_only_the_ivr_holding_its_start_token(rasa_url: str):
    """The session's Rasa was started with a token, as `ivr serve` starts its own."""
    ours = RasaClient(rasa_url, timeout_s=30, token=os.environ[channel_token.ENV])
    foreign = RasaClient(rasa_url, timeout_s=30, token="another-instance")
    bare = RasaClient(rasa_url, timeout_s=30)
    try:
        assert await ours.ready()
        for client in (foreign, bare):
            with pytest.raises(DialogUnavailable, match="started by another IVR"):
                await client.ready()
            with pytest.raises(DialogUnavailable, match="HTTP 401"):
                await client.turn("isolation-probe", "/start_call", slots={"tenant": "+4930123"})
        turn = await ours.turn("isolation-probe", "/start_call", slots={"tenant": "+442071234567", "language": "en"})
        assert turn.reply.text
    finally:
        await ours.end("isolation-probe")
        for client in (ours, foreign, bare):
            await client.close()
