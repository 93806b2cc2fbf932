"""SIGTERM ends every call properly (hardening finding 13).

Seen before the fix: a SIGTERM'd `ivr serve` left media sockets open until
the client gave up, and open text conversations stayed `ended_at NULL` for
ever. (Waiting callers getting a callback is tested in test_queue_leg.py.)
"""

from __future__ import annotations

import json
import signal
import sqlite3

import aiohttp

from tests.agents import basic
from tests.conftest import start_ivr


async def test_sigterm_hangs_up_media_calls_and_ends_text_conversations(rasa_url, tmp_path):
    server = start_ivr(rasa_url, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/conversations", json={"to": "+442071234567"}) as resp:
                text_id = (await resp.json())["conversation_id"]
            ws = await http.ws_connect(f"{server.ws_url}/media", auth=basic())
            await ws.send_str(
                json.dumps(
                    {
                        "event": "start",
                        "streamSid": "MZ1",
                        "start": {
                            "streamSid": "MZ1",
                            "callSid": "CA-shutdown",
                            "customParameters": {"to": "+442071234567"},
                            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                        },
                    }
                )
            )
            first = await ws.receive(timeout=60)
            assert first.type == aiohttp.WSMsgType.TEXT  # the greeting is playing
            server.proc.send_signal(signal.SIGTERM)
            while (msg := await ws.receive(timeout=60)).type == aiohttp.WSMsgType.TEXT:
                pass  # the rest of the greeting, then the server's close
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1000, "server_shutdown")
        assert server.proc.wait(60) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    rows = dict(sqlite3.connect(server.db).execute("select coalesce(provider_call_id, call_id), end_reason from calls"))
    assert rows == {text_id: "server_shutdown", "CA-shutdown": "server_shutdown"}
