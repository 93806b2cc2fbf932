"""Call-event names are one enum: a misspelt name fails where it is written, not in a KPI that counts nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ivr.storage import CallEvent, EventName, SqlStorage

ROOT = Path(__file__).resolve().parent.parent


def test_an_unknown_event_name_is_refused_when_the_event_is_made() -> None:
    with pytest.raises(ValueError, match="ORDER_UNAVAILABEL"):
        CallEvent("c", "t", 1.0, "ORDER_UNAVAILABEL")  # type: ignore[arg-type]


async def test_events_read_back_from_storage_are_enum_members(tmp_path: Path) -> None:
    storage = SqlStorage(f"sqlite:///{tmp_path / 'ivr.db'}")
    await storage.log_event(CallEvent("c", "t", 1.0, EventName.FAQ, {"topic": "returns"}))
    (event,) = await storage.events(call_id="c")
    assert event.event is EventName.FAQ and event.data == {"topic": "returns"}
    await storage.close()


def test_no_writer_names_an_event_by_a_string_literal() -> None:
    """log_event/event/_event/leave calls and CallEvent(...) take EventName members, never a bare string."""
    names = {member.value for member in EventName}
    offenders = []
    for path in [*ROOT.glob("ivr/**/*.py"), *ROOT.glob("dialogs/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names and path.name != "events.py":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, "event names written as strings:\n" + "\n".join(offenders)
