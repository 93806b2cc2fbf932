"""The `ivr` command as a business and an operator use it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ivr(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip


def test_check_accepts_the_shipped_project():
    result = ivr("check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "valid" in result.stdout


def test_check_names_file_line_and_field(tmp_path):
    bad = tmp_path / "ivr.yml"
    bad.write_text('tenants:\n  "+4930111":\n    company: ""\n    language: de\n')
    result = ivr("--settings", str(bad), "check")
    assert result.returncode == 1
    assert f"{bad}:3: tenants.+4930111.company:" in result.stderr


def test_serve_refuses_to_start_without_its_models(tmp_path):
    env = {"IVR_ASR_MODEL": str(tmp_path / "no-such-model"), "IVR_DIALOG_URL": "http://127.0.0.1:9",
           "IVR_DATABASE_URL": f"sqlite:///{tmp_path}/ivr.db"}  # fmt: skip
    result = ivr("serve", "--port", "0", env=env, timeout=120)
    assert result.returncode == 1
    assert "no-such-model" in result.stderr and "does not exist" in result.stderr


def test_models_list_reports_catalogue_entries(tmp_path):
    result = ivr("models", "list", env={"IVR_MODEL_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert '"name": "vosk-model-small-de-0.15"' in result.stdout and '"installed": false' in result.stdout


def test_call_refuses_a_broken_wav_before_dialling(tmp_path):
    broken = tmp_path / "turn.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    result = ivr("call", "--url", "ws://127.0.0.1:9/media", str(broken))
    assert result.returncode != 0 and f"{broken}: not a readable WAV file" in result.stderr
