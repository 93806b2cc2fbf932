"""Key-to-agent benchmark: a caller presses 0 during the greeting; how soon does a free agent's phone ring?

    python bench/key_to_agent.py [--calls 5] [--key-after-s 1.0] [--out FILE]

Issue 18: a caller who pressed 0 during the greeting waited 27 s for an agent
to be offered the call (the greeting and the menu were one uninterruptible
prompt, then the queue announcement). Now the AI disclosure plays to its end,
the key acts the moment it does, and the caller is in the queue while the
handoff sentence plays.

Against a real `ivr serve` + `rasa run` + action server (tests/data/ivr.test.yml,
German tenant, open around the clock), one agent (`anna`, tests/agents.py) is
logged in on /agent/ws and available. Each of --calls callers dials over the
Media Streams WebSocket (ivr.caller.Caller: real-time μ-law, marks echoed as
played) and sends DTMF 0 --key-after-s after the greeting's first audio frame.
The agent declines each offer (it stays available for the next call) and the
caller hangs up. Measured per call, all on this machine's wall clock:

* key -> ring: the key sent -> the `offer` message at the agent's socket;
* disclosure end -> ring: the end of the first bot line as stored in the
  transcript (its first frame's wall time + its frames x 20 ms) -> the offer.

Goal (issue 18): key -> ring <= 3 s with an agent free; the floor is the rest
of the disclosure after the key, which cannot be cut.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from bench.agent_client import AgentClient  # noqa: E402
from bench.latency import machine_facts, rasa_model, start_dialog, start_ivr, stop  # noqa: E402
from ivr.caller import Caller  # noqa: E402
from tests.agents import DE, PASSWORDS, basic  # noqa: E402

TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"
AGENT = "anna"  # works the German tenant's default queue


def write_settings(work: Path) -> Path:
    """The test settings with timers that never end a bench call on their own."""
    data = yaml.safe_load(TEST_SETTINGS.read_text(encoding="utf-8"))
    data.setdefault("queue", {}).update(ring_timeout_s=60, max_wait_s=600, wrap_up_s=0)
    data["timeouts"]["no_input_s"] = 60
    path = work / "ivr.bench.yml"
    path.write_text(
        f"# derived from {TEST_SETTINGS.relative_to(ROOT)} by bench/key_to_agent.py\n" + yaml.safe_dump(data)
    )
    return path


class Agent(AgentClient):
    """One desktop on /agent/ws: available, notes when each offer arrives, declines it."""

    def __init__(self, url: str) -> None:
        super().__init__(url, AGENT, PASSWORDS[AGENT])
        self.offers: asyncio.Queue[tuple[str, float]] = asyncio.Queue()  # (call id, wall time)

    async def on_message(self, data: dict[str, Any], now: float) -> None:
        if data.get("type") == "offer":
            self.offers.put_nowait((str(data["call_id"]), time.time()))
            await self.send({"type": "decline", "call_id": data["call_id"]})


class KeyCaller(Caller):
    """Presses the key `key_after_s` into the greeting, then hangs up once the agent's phone rang."""

    def __init__(self, ws_url: str, key_after_s: float, rang: asyncio.Event) -> None:
        super().__init__(f"{ws_url}/media", DE, "+4917012345678", io.StringIO(), 0.8, 90.0, auth=basic())
        self.key_after_s = key_after_s
        self.rang = rang
        self.key_at: float | None = None  # wall clock

    async def _script(self, ws: aiohttp.ClientWebSocketResponse, steps: Any, barge_in_after_s: Any) -> None:
        while self.state.bot_media_frames == 0:  # noqa: ASYNC110  (no event tells the first frame)
            await asyncio.sleep(0.005)
        await asyncio.sleep(self.key_after_s)
        self.key_at = time.time()
        digit = {"track": "inbound_track", "digit": "0"}
        await ws.send_json({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": digit})
        await asyncio.wait_for(self.rang.wait(), 60)
        await asyncio.sleep(0.3)


async def one_call(ws_url: str, agent: Agent, key_after_s: float) -> dict[str, Any]:
    rang = asyncio.Event()
    caller = KeyCaller(ws_url, key_after_s, rang)
    call = asyncio.create_task(caller.run([], None))
    offer_call_id, offered_at = await asyncio.wait_for(agent.offers.get(), 90)
    rang.set()
    result = await call
    await agent.until_state("available")  # after the decline
    bot = [line for line in result["transcript"] if line["speaker"] == "bot"]
    disclosure_end = bot[0]["end"] if bot else None
    assert caller.key_at is not None
    return {
        "call_id": result["call_id"],
        "offered_call_id": offer_call_id,
        "key_to_ring_ms": round((offered_at - caller.key_at) * 1000),
        "disclosure_end_to_ring_ms": round((offered_at - disclosure_end) * 1000) if disclosure_end else None,
        "disclosure": bot[0]["text"] if bot else None,
        "bot_lines": [(line["text"], bool(line["meta"].get("interrupted"))) for line in bot],
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values)), "max": round(max(values)), "min": round(min(values))}


async def run(url: str, calls: int, key_after_s: float) -> list[dict[str, Any]]:
    agent = Agent(url)
    await agent.login()
    ws_url = url.replace("http://", "ws://")
    results = []
    try:
        for i in range(calls):
            result = await one_call(ws_url, agent, key_after_s)
            print(f"   call {i + 1}: key -> ring {result['key_to_ring_ms']} ms, "
                  f"disclosure end -> ring {result['disclosure_end_to_ring_ms']} ms", flush=True)  # fmt: skip
            results.append(result)
    finally:
        await agent.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--key-after-s", type=float, default=1.0, help="the key, this long into the greeting")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ivr-bench-keys-"))
    settings = write_settings(work)
    dialog, ivr = [], None
    try:
        print("starting the action server and rasa ...", flush=True)
        dialog, rasa_url = start_dialog(rasa_model(), work, settings)
        ivr, url, _ = start_ivr(rasa_url, settings, work, "keys")
        results = asyncio.run(run(url, args.calls, args.key_after_s))
    finally:
        stop(ivr)
        for proc in reversed(dialog):
            stop(proc)
    report = {
        "machine": machine_facts(),
        "calls": args.calls,
        "key_after_s": args.key_after_s,
        "key_to_ring_ms": summary([r["key_to_ring_ms"] for r in results]),
        "disclosure_end_to_ring_ms": summary(
            [r["disclosure_end_to_ring_ms"] for r in results if r["disclosure_end_to_ring_ms"] is not None]
        ),
        "results": results,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    print(f"first call's bot lines (text, interrupted): {results[0]['bot_lines']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
