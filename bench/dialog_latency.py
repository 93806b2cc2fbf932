"""Rasa in-process vs. a supervised `rasa run`: turn latency and event-loop stalls.

For the architecture decision in docs/architecture.md. Both variants run the
same trained model on the same caller messages:

* in-process: `Agent.handle_message` awaited on the event loop that would also
  pace call audio; a 5 ms ticker on that loop measures how long it is blocked.
* out-of-process: `rasa run` with the IVR channel, one HTTP POST per turn via
  `RasaClient`, the same ticker measuring the IVR loop.

Usage: python bench/dialog_latency.py [--turns 60] [--out bench/results/dialog.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.dialog.project import latest_model  # noqa: E402
from ivr.dialog.rasa_client import RasaClient  # noqa: E402
from ivr.dialog.supervisor import actions_command, actions_env, rasa_command  # noqa: E402
from ivr.localhost import wait_http  # noqa: E402

MESSAGES = [
    "wann haben sie geöffnet",
    "what are your opening hours",
    "wie teuer ist der versand",
    "can i pay by invoice",
    "ich möchte mit einem mitarbeiter sprechen",
    "bist du ein roboter",
    "thank you",
    "ähm ja also ich wollte fragen wie lange die lieferung dauert",
]


SLOTS = {"language": "de", "company": "Muster Versand GmbH", "tenant": "+4930123456"}
ACTIONS_PORT = 5898


def start_actions() -> subprocess.Popen:
    """The action server on the test tenants; FAQ answers and forms need it in both variants."""
    work = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    env = dict(os.environ, **actions_env(ROOT / "tests" / "data" / "ivr.test.yml", f"sqlite:///{work / 'ivr.db'}"))
    with (work / "actions.log").open("w") as log:
        proc = subprocess.Popen(actions_command(ACTIONS_PORT), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{ACTIONS_PORT}/health", proc, 120, work / "actions.log")
    return proc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class LoopLag:
    """Largest delay of a 5 ms ticker: how long the loop could not run anything else."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = (time.perf_counter() - start - 0.005) * 1000
            self.samples.append(lag)
            self.worst_ms = max(self.worst_ms, lag)

    def __enter__(self) -> LoopLag:
        self.samples.append(0.0)
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()


def summary(latencies: list[float], lag: LoopLag) -> dict:
    return {
        "turns": len(latencies),
        "p50_ms": round(pct(latencies, 0.5), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
        "loop_lag_p99_ms": round(pct(lag.samples, 0.99), 1),
        "loop_lag_max_ms": round(lag.worst_ms, 1),
    }


async def in_process(model: Path, turns: int, actions_url: str) -> dict:
    from rasa.core.agent import Agent
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
    from rasa.shared.core.events import SlotSet
    from rasa.utils.endpoints import EndpointConfig

    agent = Agent.load(str(model), action_endpoint=EndpointConfig(f"{actions_url}/webhook"))
    latencies = []
    with LoopLag() as lag:
        for i in range(turns):
            sender = f"bench-{i // len(MESSAGES)}"
            if i % len(MESSAGES) == 0:
                tracker = await agent.processor.fetch_tracker_and_update_session(sender)
                for name, value in SLOTS.items():
                    tracker.update(SlotSet(name, value))
                await agent.processor.save_tracker(tracker)
            start = time.perf_counter()
            await agent.handle_message(UserMessage(MESSAGES[i % len(MESSAGES)], CollectingOutputChannel(), sender))
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.05)  # callers pause between turns; the ticker gets to run
    return summary(latencies[3:], lag)  # the first turns warm TensorFlow up


async def out_of_process(model: Path, turns: int, actions_url: str, port: int = 5897) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-rasa-"))
    cmd = rasa_command(model, port, work, actions_url)
    # Popen only forks; the benchmark then talks to the server over HTTP, asynchronously.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    client = RasaClient(f"http://127.0.0.1:{port}", timeout_s=30)
    try:
        for _ in range(600):
            if await client.ready():
                break
            await asyncio.sleep(0.5)
        latencies = []
        with LoopLag() as lag:
            for i in range(turns):
                sender = f"bench-{i // len(MESSAGES)}"
                slots = SLOTS if i % len(MESSAGES) == 0 else None
                start = time.perf_counter()
                await client.turn(sender, MESSAGES[i % len(MESSAGES)], slots=slots)
                latencies.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.05)
        return summary(latencies[3:], lag)
    finally:
        await client.close()
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dialog.json")
    args = parser.parse_args()
    model = latest_model(ROOT / "models" / "rasa")
    if model is None:
        raise SystemExit("no trained model in models/rasa: run `ivr train`")
    actions = start_actions()
    actions_url = f"http://127.0.0.1:{ACTIONS_PORT}"
    try:
        results = {
            "model": model.name,
            "command": " ".join(sys.argv),
            "out_of_process": asyncio.run(out_of_process(model, args.turns, actions_url)),
            "in_process": asyncio.run(in_process(model, args.turns, actions_url)),
        }
    finally:
        actions.terminate()
        actions.wait(30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"{'variant':<16}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'loop lag p99':>14}{'loop lag max':>14}")
    for name in ("in_process", "out_of_process"):
        r = results[name]
        print(
            f"{name:<16}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['max_ms']:>9}{r['loop_lag_p99_ms']:>14}{r['loop_lag_max_ms']:>14}"
        )


if __name__ == "__main__":
    main()
