"""Every conversation script in tests/conversations/ against the real stack.

Rasa (trained from this repository), the action server and `ivr serve` run as
real processes (see conftest.py); each script is one call over the text
endpoint, and what it stored is checked in the database afterwards. The same
scripts are what `ivr test` runs for a business.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.conversation_tests import load_script, run_script
from ivr.errors import ConfigError

SCRIPTS = sorted((Path(__file__).parent / "conversations").glob("*.yml"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_conversation(path: Path, ivr_server, dialog_db: str):
    from ivr.storage import open_storage

    storage = open_storage(dialog_db)
    try:
        problems, _ = asyncio.run(run_script(ivr_server.url, load_script(path), storage))
    finally:
        asyncio.run(storage.close())
    assert not problems, "\n".join(problems)


def test_scripts_cover_every_flow_in_both_languages():
    """A flow tested in one language only is a flow that breaks in the other unnoticed."""
    names = {p.stem for p in SCRIPTS}
    for flow in ("order_with_correction", "faq", "order_status", "ticket|complaint", "escalat"):
        for language in ("de", "en"):
            assert any(n.startswith(language) and any(f in n for f in flow.split("|")) for n in names), (flow, language)


def test_a_broken_script_is_reported_with_file_and_turn(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text('to: "+4930123456"\nturns:\n  - expect: {reply: x}\n  - say: hi\n    dtmf: "1"\n  - shout: hi\n')
    with pytest.raises(ConfigError) as err:
        load_script(bad)
    text = str(err.value)
    assert f"{bad}: turns[2]: exactly one of say, dtmf, no_input" in text
    assert f"{bad}: turns[3]: keys must be among" in text
