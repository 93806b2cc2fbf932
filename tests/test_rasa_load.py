"""`rasa run` as the IVR starts it loads the trained model without Rasa's throw-away training step
(ivr/dialog/rasa_main.py); the model must predict exactly what Rasa's own loader makes it predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_all(model: Path, loader: str) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "rasa_parse.py"), str(model), loader], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fast_load_predicts_exactly_what_rasas_loader_predicts(rasa_model: Path):
    theirs, ours = parse_all(rasa_model, "rasa"), parse_all(rasa_model, "ivr")
    assert len(theirs) > 600 and set(ours) == set(theirs)
    assert any(r["entities"] for r in theirs.values()) and any(r["faq"][0] for r in theirs.values())
    differing = [text for text in theirs if ours[text] != theirs[text]]
    assert not differing, f"{len(differing)} utterances parse differently, e.g. {differing[0]!r}: " \
                          f"{theirs[differing[0]]} vs {ours[differing[0]]}"
