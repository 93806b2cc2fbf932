"""Where the Rasa project's files are, and how to train it.

The layout is a normal Rasa project with named folders (`config.yml`,
`dialogs/` for domain, stories, rules; `nlu/` for NLU data), so Rasa's own
tools work on it: `rasa train --domain dialogs/domain.yml --data dialogs/rules.yml
dialogs/stories.yml nlu`.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
        cmd = [sys.executable, "-m", "rasa", "train", *self.common_args(), "--out", str(out_dir)]
        if force:
            cmd.append("--force")
        code = subprocess.call(cmd, cwd=self.root)
        for old in sorted(Path(out_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)[:-keep]:
            old.unlink(missing_ok=True)
        return code

    def validate(self) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "rasa", "data", "validate", *self.common_args()]
        return subprocess.run(cmd, cwd=self.root, capture_output=True, text=True)


def latest_model(out_dir: Path) -> Optional[Path]:
    models = sorted(Path(out_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None
