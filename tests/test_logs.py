"""No personal data in logs (review issue 17, finding 10): exceptions are logged without their messages.

The probe: a database error during a request. SQLAlchemy's message repeats the
statement's parameters, here a caller's number; aiohttp's own error logging
printed it. The app is the real `make_app` on a real SQLite storage.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest
import sqlalchemy as sa

from ivr.app import make_app
from ivr.logs import JsonFormatter
from ivr.runtime import Runtime
from tests.agents import basic

PHONE = "+4915112345678"
DIGITS = PHONE[1:]


async def test_a_storage_error_in_a_handler_is_logged_without_its_data(aiohttp_client, runtime: Runtime, caplog,
                                                                        monkeypatch):  # fmt: skip
    storage = runtime.storage

    async def failing_get_handoff(handoff_id: str):
        """A real driver error from the storage thread, with the caller's number among the parameters."""
        statement = sa.text("SELECT * FROM no_such_table WHERE caller = :caller")
        return await storage._read(lambda conn: conn.execute(statement, {"caller": PHONE}))

    with pytest.raises(sa.exc.OperationalError) as probe:
        await failing_get_handoff("h1")
    assert DIGITS in str(probe.value)  # what used to reach the log
    monkeypatch.setattr(storage, "get_handoff", failing_get_handoff)
    client = await aiohttp_client(make_app(runtime))
    caplog.set_level(logging.DEBUG)

    resp = await client.get("/api/handoffs/h1", auth=basic("root"))
    assert resp.status == 500
    assert DIGITS not in caplog.text  # pytest's rendering of every record, tracebacks included
    body = await resp.json()
    request_id = body["request_id"]
    assert resp.headers["X-Request-Id"] == request_id and DIGITS not in json.dumps(body)

    [record] = [r for r in caplog.records if r.getMessage() == "http.unhandled_error"]
    assert record.request_id == request_id and record.levelno == logging.ERROR
    assert (record.error, record.causes) == ("sqlalchemy.exc.OperationalError", ["sqlite3.OperationalError"])
    assert record.handler.endswith("handoff_detail") and record.route == "/api/handoffs/{handoff_id}"
    assert any(f.startswith("ivr/agents/api.py:") and f.endswith("in handoff_detail") for f in record.frames)
    assert record.exc_info is None

    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)  # what `ivr serve` writes
    assert DIGITS not in formatted and request_id in formatted


def test_the_json_formatter_writes_exceptions_without_their_messages():
    try:
        try:
            {}[PHONE]
        except KeyError as exc:
            raise RuntimeError(f"no customer for {PHONE}") from exc
    except RuntimeError:
        record = logging.getLogger("ivr.test").makeRecord(
            "ivr.test", logging.ERROR, __file__, 1, "queue.event_not_logged", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert DIGITS not in json.dumps(entry)
    exception = entry["exception"]
    assert exception.index("KeyError") < exception.index("RuntimeError")  # the cause first, as Python prints it
    assert "test_logs.py:" in exception and "test_the_json_formatter_writes_exceptions" in exception
