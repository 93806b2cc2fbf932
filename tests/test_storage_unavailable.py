"""A locked or unreachable database does not silence callers (hardening finding 6).

Seen before the fix: with the SQLite file locked for 25 s by another process
(a held `BEGIN EXCLUSIVE`), a new text conversation got a 500 after 15 s, and a
phone caller heard nothing and was cut off: every transcript line and call
event was awaited on the call path. Now the call path queues its writes
(ivr/storage/write_behind.py) and keeps talking; the rows arrive, in order,
when the database is back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from ivr.app import make_app
from ivr.dialog.payloads import BotReply, DialogTurn, Handoff
from ivr.runtime import Runtime
from ivr.session.conversation import Conversation
from ivr.session.prompts import STORAGE_UNAVAILABLE
from ivr.storage import CallRecord, open_storage
from ivr.storage.write_behind import WriteBehind

ACME = "+442071234567"


class ScriptedDialog:
    """Stands in for Rasa: this test is about storage, so the dialog's answers are given, one per turn."""

    def __init__(self, replies: list[BotReply]):
        self.replies = list(replies)

    async def turn(self, sender: str, text: str, slots: dict[str, Any] | None = None,
                   metadata: dict[str, Any] | None = None, tenant: str = "") -> DialogTurn:  # fmt: skip
        return DialogTurn(reply=self.replies.pop(0), intent="start_call" if text == "/start_call" else "request_human")

    async def end(self, sender: str) -> None:
        return None


class HeldLock:
    """Another process's write transaction on the SQLite file, held until released."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _call(call_id: str) -> CallRecord:
    return CallRecord(call_id=call_id, tenant=ACME, company="Acme Supplies Ltd", language="en", channel="text",
                      dialled=ACME, caller="+447700900123", started_at=1.0)  # fmt: skip


async def test_a_whole_call_runs_while_the_database_is_locked_and_is_stored_afterwards(tmp_path: Path):
    storage = open_storage(f"sqlite:///{tmp_path / 'ivr.db'}")
    writes = WriteBehind(storage)
    dialog = ScriptedDialog(
        [BotReply("Welcome to Acme."), BotReply("Putting you through.", handoff=Handoff("caller_request"))]
    )
    conversation = Conversation(_call("locked-1"), _tenant(), dialog, writes, max_no_input=2)  # type: ignore[arg-type]
    lock = HeldLock(tmp_path / "ivr.db")
    try:
        greeting = await conversation.start()
        await conversation.bot_said(greeting.reply, 1.0, 2.0)
        turn = await conversation.caller_said("i want a person", 3.0, 4.0, 0.9)
        handoff_id = await conversation.hand_off(turn)
        await conversation.end("handoff")
        assert writes.pending > 0  # nothing could be written, and nobody waited for it
        assert (await writes.get_handoff(handoff_id)).package["transcript"][-1]["text"] == "i want a person"
    finally:
        lock.release()
    assert await writes.drain(60)
    stored = await storage.transcript("locked-1")
    assert [(u.speaker, u.text) for u in stored] == [("bot", "Welcome to Acme."), ("caller", "i want a person")]
    assert [e.event for e in await storage.events(call_id="locked-1")] == ["CALL_START", "INTENT", "HANDOFF", "HANGUP"]
    assert (await storage.get_call("locked-1")).ended_at is not None
    assert (await storage.get_handoff(handoff_id)).package["reason"] == "caller_request"
    assert writes.health()["dropped"] == 0
    await writes.close()
    await storage.close()


async def test_when_nothing_more_can_be_kept_a_new_caller_hears_why(tmp_path: Path):
    storage = open_storage(f"sqlite:///{tmp_path / 'ivr.db'}")
    writes = WriteBehind(storage, max_pending=100)
    lock = HeldLock(tmp_path / "ivr.db")
    try:
        for i in range(100):
            await writes.start_call(_call(f"earlier-{i}"))
        assert writes.saturated
        dialog = ScriptedDialog([BotReply("Welcome to Acme.")])
        turn = await Conversation(_call("refused"), _tenant(), dialog, writes, 2).start()  # type: ignore[arg-type]
        assert turn.reply.text == STORAGE_UNAVAILABLE["en"] and turn.reply.hangup
        assert dialog.replies  # the dialog was not even asked
    finally:
        lock.release()
    assert await writes.drain(60)
    assert await storage.get_call("earlier-99") is not None and await storage.get_call("refused") is None
    await writes.close()
    await storage.close()


async def test_a_text_conversation_starts_while_the_database_is_locked(
    aiohttp_client, runtime: Runtime, tmp_path: Path
):
    """The probe itself: POST /api/conversations with the database locked (Rasa is down here, so the
    caller is offered a person; what matters is an answer instead of a 500 after the busy timeout)."""
    client = await aiohttp_client(make_app(runtime))
    lock = HeldLock(tmp_path / "ivr.db")
    try:
        resp = await asyncio.wait_for(client.post("/api/conversations", json={"to": ACME}), 60)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["replies"]
    finally:
        lock.release()
    assert await runtime.write_behind.drain(60)
    calls = sqlite3.connect(tmp_path / "ivr.db").execute("SELECT tenant, ended_at IS NOT NULL FROM calls").fetchall()
    assert calls == [(ACME, 1)]


def _tenant():
    from ivr.settings import load_settings
    from tests.conftest import TEST_SETTINGS

    return load_settings(TEST_SETTINGS, env={}).tenants[ACME]
