"""Where the Rasa project's files are, and how to train it.

The layout is a normal Rasa project with named folders (`config.yml`,
`dialogs/` for domain, stories, rules; `nlu/` for NLU data), so Rasa's own
tools work on it: `rasa train --domain dialogs/domain.yml --data dialogs/rules.yml
dialogs/stories.yml nlu`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Rasa seeds its models (`random_seed` in config.yml), but a seed alone does not pin everything a training
# depends on: Python's per-process hash seed can change the order of sets and dicts built from them, and
# TensorFlow's CPU kernels may add up in the order their threads finish. These pin both, and a fixed thread
# count makes a 2-core laptop and a 64-core server split the work (and so round) alike.
# tests/test_training.py checks that two trainings give the same bytes.
REPRODUCIBLE_TRAINING_ENV = {
    "PYTHONHASHSEED": "0",
    "TF_DETERMINISTIC_OPS": "1",
    "TF_INTRA_OP_PARALLELISM_THREADS": "2",
    "TF_INTER_OP_PARALLELISM_THREADS": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def training_env() -> dict[str, str]:
    """The environment every `rasa train` of this project runs in (ivr train, ivr serve, the tests, the benchmarks)."""
    return {**os.environ, **REPRODUCIBLE_TRAINING_ENV}


@dataclass(frozen=True)
class RasaProject:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def domain(self) -> Path:
        single = self.root / "dialogs" / "domain.yml"
        return single if single.exists() else self.root / "dialogs" / "domain"

    @property
    def data(self) -> list[Path]:
        """Stories, rules and NLU files (the domain is passed separately, not read twice)."""
        domain = self.domain
        dialogs = sorted(p for p in (self.root / "dialogs").rglob("*.yml") if p != domain and domain not in p.parents)
        return [*dialogs, self.root / "nlu"]

    def common_args(self) -> list[str]:
        return ["--config", str(self.config), "--domain", str(self.domain), "--data", *map(str, self.data)]

    def train(self, out_dir: Path, force: bool = False, keep: int = 3) -> int:
        """Run `rasa train`; Rasa itself skips training when nothing changed.

        Models get Rasa's unique time-stamped names (a server loading the
        previous model never sees a half-written file); only the newest
        `keep` are kept.
        """
        code = subprocess.call(self.train_command(out_dir, force), cwd=self.root, env=training_env())
        prune_models(out_dir, keep)
        return code

    def train_command(self, out_dir: Path, force: bool = False) -> list[str]:
        """`rasa train` of this project into out_dir; run it in `training_env()` for a reproducible model."""
        return [sys.executable, "-m", "rasa", "train", *self.common_args(), "--out", str(out_dir),
                *(["--force"] if force else [])]  # fmt: skip

    def validate(self) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "rasa", "data", "validate", *self.common_args()]
        return subprocess.run(cmd, cwd=self.root, capture_output=True, text=True)


def prune_models(out_dir: Path, keep: int = 3) -> None:
    """Only the newest `keep` models stay."""
    for old in sorted(Path(out_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)[:-keep]:
        old.unlink(missing_ok=True)


def latest_model(out_dir: Path) -> Path | None:
    models = sorted(Path(out_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None
