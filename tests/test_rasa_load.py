"""`rasa run` as the IVR starts it loads the trained model without Rasa's throw-away training step
(ivr/dialog/rasa_main.py); the model must predict exactly what Rasa's own loader makes it predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_all(model: Path, loaders: list[str]) -> list[dict]:
    """Each loader's parses, the loaders side by side (one process each: the fast loader patches Rasa process-wide)."""
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "rasa_parse.py"), str(model), loader], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for loader in loaders]  # fmt: skip
    results = []
    for loader, proc in zip(loaders, procs, strict=True):
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{loader}: {err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_fast_load_predicts_exactly_what_rasas_loader_predicts(rasa_model: Path):
    theirs, ours = parse_all(rasa_model, ["rasa", "ivr"])
    assert len(theirs) > 600 and set(ours) == set(theirs)
    assert any(r["entities"] for r in theirs.values()) and any(r["faq"][0] for r in theirs.values())
    differing = [text for text in theirs if ours[text] != theirs[text]]
    assert not differing, (
        f"{len(differing)} utterances parse differently, e.g. {differing[0]!r}: "
        f"{theirs[differing[0]]} vs {ours[differing[0]]}"
    )
