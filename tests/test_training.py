"""Training is reproducible: the same data and config give the same model, on any run.

Two trainings of a small model (the project's own pipeline from config.yml,
each neural component cut to one epoch, on the English NLU data) must
produce byte-identical weights and vocabularies. (On part of that data, two
trainings without the fixed hash seed happened to agree; on all of it their
vocabularies, and so every weight, differ.) Identical weights mean
identical predictions on any held-out set; comparing bytes also catches a
difference too small to flip a prediction today that would flip one on
another run.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from ivr.dialog.project import training_env

ROOT = Path(__file__).resolve().parent.parent
SMALL_EPOCHS = 1


def small_config(tmp: Path) -> Path:
    """config.yml with every trained component cut to SMALL_EPOCHS (the rest exactly as the product trains)."""
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    for component in config["pipeline"]:
        if "epochs" in component:
            component["epochs"] = SMALL_EPOCHS
    config["policies"] = []
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def train_nlu(config: Path, data: Path, out: Path, env: dict[str, str]) -> Path:
    cmd = [sys.executable, "-m", "rasa", "train", "nlu", "--config", str(config), "--nlu", str(data),
           "--out", str(out), "--fixed-model-name", "small"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env={**env, "RASA_MAX_CACHE_SIZE": "0"}, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out / "small.tar.gz"


def learned_files(model: Path) -> dict[str, str]:
    """Digest of every file a training learns (weights, vocabularies, label maps); not metadata with dates."""
    digests = {}
    with tarfile.open(model) as tar:
        for member in tar.getmembers():
            name = member.name.lstrip("/")
            if member.isfile() and name.startswith("components/") and not name.endswith(".index"):
                digests[name] = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
    return digests


def test_two_trainings_of_the_same_data_give_the_same_model(tmp_path: Path):
    config, data = small_config(tmp_path), ROOT / "nlu" / "en"
    first = learned_files(train_nlu(config, data, tmp_path / "a", training_env()))
    second = learned_files(train_nlu(config, data, tmp_path / "b", training_env()))
    weights = [name for name in first if ".tf_model.data" in name]
    assert len(weights) >= 2, f"expected DIET and ResponseSelector weights, got {sorted(first)}"
    differing = sorted(name for name in first if first[name] != second.get(name))
    assert not differing, f"these differ between two trainings of the same data and config: {differing}"
