"""Agent audio benchmark: the live audio path between callers and agents through a real `ivr serve`.

    python bench/agent_audio.py [--levels 1,5,10] [--seconds 20] [--out FILE]

For each level N a fresh `ivr serve` is started with `IVR_DIALOG_URL` pointing
at a port where nothing listens, so every call's first dialog turn fails and the
call goes straight to the agent queue (reason `dialog_unavailable`), without
Rasa. N agents (`bench01` …) log in on /agent/ws and go available, N callers
dial the German tenant on /phone/ws (the browser softphone protocol: 16 kHz
PCM16, marks echoed when played), the agents accept their offers, and once all
N calls are bridged both sides stream real-time 20 ms frames for --seconds:
low noise with a 100 ms tone burst every --burst-every-ms. Measured per
direction: send time of a burst's first frame -> arrival of the first frame
whose RMS crosses the threshold at the far end; bursts never detected; plus
/healthz pacing counters, the server's dropped desktop audio, CPU and load.
See bench/README.md for the definitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.agent_client import AgentClient  # noqa: E402
from bench.latency import (  # noqa: E402  (process handling, /proc sampling and machine facts are shared)
    MODEL_ENV,
    ProcSampler,
    healthz,
    machine_facts,
    package_versions,
    start_ivr,
    stop,
    wait_idle,
)
from ivr.agents.passwords import hash_password  # noqa: E402

TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"
TENANT = "+4930123456"
NO_DIALOG = "http://127.0.0.1:9"  # the discard port: nothing listens, the first dialog turn fails at once
RATE = 16000
FRAME_SAMPLES = 320  # 20 ms
FRAME = 2 * FRAME_SAMPLES
FRAME_S = 0.02
# Burst k is a tone of TONES_HZ[k % 8] (1 kHz and up, 250 Hz apart): the receiver tells
# the bursts apart by frequency, so a burst arriving more than one period late is not
# taken for the next one (attribution is unambiguous up to 8 periods).
TONES_HZ = (1000, 1250, 1500, 1750, 2000, 2250, 2500, 2750)
BURST_FRAMES = 5  # 100 ms
BURST_AMPLITUDE = 10000  # RMS ~7070
NOISE_RMS = 30.0
THRESHOLD_RMS = 1000.0
PASSWORD = "bench-agent-pw"  # for the generated bench agents only


# ---- settings ------------------------------------------------------------------


def agent_name(i: int) -> str:
    return f"bench{i + 1:02d}"


def write_settings(work: Path, agents: int) -> Path:
    """tests/data/ivr.test.yml with `agents` generated logins and timers that never end a bench call."""
    data = yaml.safe_load(TEST_SETTINGS.read_text(encoding="utf-8"))
    digest = hash_password(PASSWORD)  # one hash for all: each login still runs scrypt on the server
    data["agents"] = [
        {
            "username": agent_name(i),
            "name": f"Bench Agent {i + 1}",
            "role": "agent",
            "tenants": [TENANT],
            "password_hash": digest,
        }
        for i in range(agents)
    ]
    queue = data.setdefault("queue", {})
    queue.update(ring_timeout_s=600, max_wait_s=1800, announce_every_s=20, callback_offer_after_s=1800, wrap_up_s=0)
    data["timeouts"]["max_call_s"] = 1800
    data["timeouts"]["no_input_s"] = 600
    path = work / "ivr.bench.yml"
    path.write_text(
        f"# derived from {TEST_SETTINGS.relative_to(ROOT)} by bench/agent_audio.py\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path


# ---- signal ----------------------------------------------------------------------


def burst_frames(tone: int) -> list[bytes]:
    t = np.arange(BURST_FRAMES * FRAME_SAMPLES) / RATE
    pcm = (BURST_AMPLITUDE * np.sin(2 * np.pi * TONES_HZ[tone] * t)).astype("<i2").tobytes()
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


BURSTS = [burst_frames(i) for i in range(len(TONES_HZ))]
_FFT_HZ = np.fft.rfftfreq(FRAME_SAMPLES, 1 / RATE)


def tone_of(samples: np.ndarray) -> int:
    """Index into TONES_HZ of the frame's strongest frequency, or -1 when it is none of them."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = float(_FFT_HZ[int(np.argmax(spectrum))])
    nearest = min(range(len(TONES_HZ)), key=lambda i: abs(TONES_HZ[i] - peak))
    return nearest if abs(TONES_HZ[nearest] - peak) <= 100 else -1


class Source:
    """What one side sends: low noise, and tone bursts at scheduled times once armed."""

    def __init__(self, rng: np.random.Generator):
        self.noise = np.clip(rng.normal(0, NOISE_RMS, RATE * 7), -32768, 32767).astype("<i2").tobytes()
        self.pos = int(rng.integers(0, RATE * 7 // FRAME_SAMPLES)) * FRAME
        self.window: tuple[float, float] | None = None
        self.next_burst = 0.0
        self.k = 0
        self.queued: list[bytes] = []
        self.sent: list[dict[str, Any]] = []  # per burst: k, tone, due, sent (monotonic)
        self.frames = 0
        self.lateness_ms: list[float] = []  # every frame sent in the window: actual - scheduled

    def arm(self, first_burst: float, end: float, period: float) -> None:
        self.window = (first_burst, end)
        self.next_burst = first_burst
        self.period = period

    def frame(self, due: float) -> tuple[bytes, dict[str, Any] | None]:
        """The frame scheduled at `due`, and the burst record when a burst starts with it."""
        burst = None
        if not self.queued and self.window is not None and self.next_burst <= due < self.window[1]:
            tone = self.k % len(TONES_HZ)
            self.queued = list(BURSTS[tone])
            burst = {"k": self.k, "tone": tone, "due": self.next_burst}
            self.k += 1
            self.next_burst += self.period
        if self.queued:
            return self.queued.pop(0), burst
        if self.pos + FRAME > len(self.noise):
            self.pos = 0
        frame = self.noise[self.pos : self.pos + FRAME]
        self.pos += FRAME
        return frame, None

    def in_window(self, t: float) -> bool:
        return self.window is not None and self.window[0] - 0.1 <= t < self.window[1]


async def stream(ws: aiohttp.ClientWebSocketResponse, source: Source, halt: asyncio.Event) -> None:
    """20 ms frames on an absolute schedule until `halt` (catching up, as a phone would, when late)."""
    next_at = time.monotonic()
    while not halt.is_set() and not ws.closed:
        frame, burst = source.frame(next_at)
        now = time.monotonic()
        if source.in_window(next_at):
            source.lateness_ms.append((now - next_at) * 1000)
        if burst is not None:
            burst["sent"] = now
            source.sent.append(burst)
        try:
            await ws.send_bytes(frame)
        except (ConnectionResetError, RuntimeError):
            return
        source.frames += 1
        next_at += FRAME_S
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Detector:
    """Finds burst onsets in received audio: the first 20 ms frame over the threshold after quiet ones."""

    def __init__(self) -> None:
        self.armed_at: float | None = None
        self.frames = 0
        self.loud = False
        self.onsets: list[tuple[float, int]] = []  # (arrival, tone index)
        self.quiet_rms_max = 0.0  # loudest frame below the threshold in the window (noise floor check)

    def feed(self, pcm: bytes, at: float) -> None:
        self.frames += len(pcm) // FRAME
        if self.armed_at is None or at < self.armed_at:
            return
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
        for i in range(0, len(samples), FRAME_SAMPLES):
            chunk = samples[i : i + FRAME_SAMPLES]
            if not len(chunk):
                continue
            level = float(np.sqrt(np.mean(chunk**2)))
            if level >= THRESHOLD_RMS:
                if not self.loud:
                    self.onsets.append((at, tone_of(chunk)))
                self.loud = True
            else:
                self.loud = False
                self.quiet_rms_max = max(self.quiet_rms_max, level)


def match(sent: list[dict[str, Any]], onsets: list[tuple[float, int]]) -> dict[str, Any]:
    """Each onset belongs to the latest burst of its tone sent before it arrived."""
    delays: dict[int, float] = {}
    duplicates = unmatched = 0
    for arrived, tone in onsets:
        candidates = [b for b in sent if b["tone"] == tone and b["sent"] <= arrived]
        if not candidates:
            unmatched += 1
            continue
        burst = max(candidates, key=lambda b: b["sent"])
        if burst["k"] in delays:
            duplicates += 1
            continue
        delays[burst["k"]] = (arrived - burst["sent"]) * 1000
    return {
        "sent": len(sent),
        "detected": len(delays),
        "lost": len(sent) - len(delays),
        "duplicates": duplicates,
        "unmatched": unmatched,
        "delays_ms": [round(delays[k], 2) for k in sorted(delays)],
    }


# ---- the two ends of a call ---------------------------------------------------------


class PhoneCaller:
    """A caller on /phone/ws (browser softphone protocol) that streams all the time and echoes marks."""

    def __init__(self, ws_url: str, index: int, rng: np.random.Generator):
        self.url = f"{ws_url}/phone/ws"
        self.number = f"+491701234{index:04d}"
        self.index = index
        self.source = Source(rng)
        self.detector = Detector()
        self.call_id: str | None = None
        self.connected = asyncio.Event()
        self.connected_at: float | None = None
        self.closed = asyncio.Event()
        self.hangup: str | None = None
        self.marks_acked = 0
        self.frames_before_connect = 0
        self.events: list[str] = []
        self.error: str | None = None
        self.halt = asyncio.Event()
        self._playout_end = 0.0
        self._tasks: list[asyncio.Task] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        try:
            self.ws = await session.ws_connect(self.url, heartbeat=None)
            await self.ws.send_json({"event": "start", "to": TENANT, "from": self.number, "sampleRate": RATE})
        except Exception as exc:
            self.error = f"connect: {type(exc).__name__}: {exc}"
            self.closed.set()
            return
        self._tasks = [
            asyncio.create_task(stream(self.ws, self.source, self.halt)),
            asyncio.create_task(self._receive()),
        ]

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for msg in self.ws:
                now = time.monotonic()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._playout_end = max(self._playout_end, now) + len(msg.data) / 2 / RATE
                    if self.connected.is_set():
                        self.detector.feed(msg.data, now)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    kind = event.get("event")
                    self.events.append(str(kind))
                    if kind == "call":
                        self.call_id = event.get("call_id")
                    elif kind == "mark":  # acknowledged when the audio before it has played
                        loop.call_at(loop.time() + max(0.0, self._playout_end - now), self._ack, event.get("name"))
                    elif kind == "clear":
                        self._playout_end = now
                    elif kind == "agent" and event.get("state") == "connected":
                        self.connected_at = now
                        self.frames_before_connect = self.source.frames
                        self.connected.set()
                    elif kind == "hangup":
                        self.hangup = str(event.get("reason"))
        finally:
            self.closed.set()

    def _ack(self, name: Any) -> None:
        if not self.ws.closed:
            self.marks_acked += 1
            self._tasks.append(asyncio.ensure_future(self.ws.send_json({"event": "mark", "name": name})))

    async def close(self) -> None:
        self.halt.set()
        ws = getattr(self, "ws", None)
        if ws is not None and not ws.closed:
            try:
                await ws.send_json({"event": "stop"})
            except (ConnectionResetError, RuntimeError):
                pass
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class AgentDesk(AgentClient):
    """An agent on /agent/ws: logs in, goes available, accepts the first offer, streams while connected."""

    def __init__(self, url: str, username: str, rng: np.random.Generator):
        super().__init__(url, username, PASSWORD)
        self.source = Source(rng)
        self.detector = Detector()
        self.dispositions: list[str] = []
        self.call_id: str | None = None
        self.offered_at: float | None = None
        self.connected = asyncio.Event()
        self.connected_at: float | None = None
        self.ended = asyncio.Event()
        self.wrapped = asyncio.Event()
        self.transcripts = {"partial": 0, "final": 0}
        self.errors: list[str] = []
        self.halt = asyncio.Event()

    def on_audio(self, pcm: bytes, now: float) -> None:
        if self.connected.is_set():
            self.detector.feed(pcm, now)

    async def on_message(self, data: dict[str, Any], now: float) -> None:
        kind = data.get("type")
        if kind == "hello":
            self.dispositions = list(data.get("dispositions") or [])
        elif kind == "offer" and self.call_id is None:
            self.call_id = data["call_id"]
            self.offered_at = now
            await self.send({"type": "accept", "call_id": self.call_id})
        elif kind == "connected":
            self.connected_at = now
            self.connected.set()
            assert self.ws is not None
            self.tasks.append(asyncio.create_task(stream(self.ws, self.source, self.halt)))
        elif kind == "transcript":
            self.transcripts["final" if data.get("final") else "partial"] += 1
        elif kind == "ended":
            self.ended.set()
        elif kind == "wrapup_saved":
            self.wrapped.set()
        elif kind == "error":
            self.errors.append(f"{data.get('request')}: {data.get('message')}")

    async def finish(self) -> None:
        """Hang up, store the wrap-up, log out."""
        self.halt.set()
        try:
            if self.connected.is_set() and self.ws is not None and not self.ws.closed:
                await self.send({"type": "hangup"})
                await asyncio.wait_for(self.ended.wait(), 15)
                await self.send({"type": "wrapup", "disposition": (self.dispositions or ["resolved"])[0],
                                 "notes": "bench/agent_audio.py"})  # fmt: skip
                await asyncio.wait_for(self.wrapped.wait(), 15)
        except asyncio.TimeoutError:
            self.errors.append("hangup/wrapup not confirmed within 15 s")
        finally:
            await self.close()

    async def close(self) -> None:
        self.halt.set()
        await super().close()


class LoopLag:
    """Delay of a 5 ms ticker on the benchmark's own event loop: its timestamps are late by that much."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            self.samples.append((time.perf_counter() - start - 0.005) * 1000)


# ---- one level ---------------------------------------------------------------------


async def run_calls(url: str, n: int, seconds: float, period: float, settle: float, drain: float,
                    rng: random.Random, on_window: Any = None) -> dict[str, Any]:  # fmt: skip
    """N agents, N callers; all bridged; both directions measured for `seconds`; hang-up and wrap-up."""
    ws_url = url.replace("http://", "ws://")
    nrng = np.random.default_rng(rng.randrange(2**32))
    agents = [AgentDesk(url, agent_name(i), nrng) for i in range(n)]
    callers: list[PhoneCaller] = []
    session = aiohttp.ClientSession()
    lag = LoopLag()
    lag_task: asyncio.Task | None = None
    window: dict[str, Any] = {}
    try:
        await asyncio.gather(*(a.login() for a in agents))
        t_calls = time.monotonic()
        for i in range(n):
            caller = PhoneCaller(ws_url, i, nrng)
            callers.append(caller)
            await caller.start(session)
            await asyncio.sleep(rng.uniform(0.1, 0.2))
        try:
            await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in callers), *(a.connected.wait() for a in agents)),
                                   60 + 3 * n)  # fmt: skip
        except asyncio.TimeoutError:
            pass
        bridged = [c for c in callers if c.connected.is_set()]
        connect_s = [round(c.connected_at - t_calls, 2) for c in bridged]
        # Everybody talks from here: bursts spread over the period, the agents' half a period after their caller's.
        t0 = time.monotonic() + settle
        end = t0 + seconds
        for i, c in enumerate(callers):
            c.detector.armed_at = t0
            c.source.arm(t0 + i * period / n, end, period)
        for i, a in enumerate(agents):
            a.detector.armed_at = t0
            a.source.arm(t0 + i * period / n + period / 2, end, period)
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        lag_task = asyncio.create_task(lag.run())
        window["start"] = on_window("start") if on_window else None
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        window["end"] = await asyncio.get_running_loop().run_in_executor(None, on_window, "end") if on_window else None
        await asyncio.sleep(drain)
        lag_task.cancel()
        for side in (*callers, *agents):
            side.halt.set()
        await asyncio.sleep(0.3)
        caller_frames = {c.call_id: (c.source.frames - c.frames_before_connect, c.detector.frames) for c in callers}
        agent_frames = {a.call_id: (a.source.frames, a.detector.frames) for a in agents}
        await asyncio.gather(*(a.finish() for a in agents))
        await asyncio.gather(*(asyncio.wait_for(c.closed.wait(), 15) for c in callers), return_exceptions=True)
    finally:
        if lag_task is not None:
            lag_task.cancel()
        await asyncio.gather(*(c.close() for c in callers), return_exceptions=True)
        await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
        await session.close()

    by_call = {a.call_id: a for a in agents if a.call_id}
    calls = []
    for c in callers:
        a = by_call.get(c.call_id)
        row: dict[str, Any] = {"index": c.index, "call_id": c.call_id, "agent": a.username if a else None,
                               "connected": c.connected.is_set(), "hangup": c.hangup, "error": c.error,
                               "marks_acked": c.marks_acked}  # fmt: skip
        if a is not None and c.connected.is_set():
            row["caller_to_agent"] = match(c.source.sent, a.detector.onsets)
            row["agent_to_caller"] = match(a.source.sent, c.detector.onsets)
            # 20 ms frames each side sent and received after it saw the connect (a frame or two in flight
            # at the connect count on one side only)
            row["frames"] = {"caller_sent": caller_frames[c.call_id][0], "agent_received": agent_frames[c.call_id][1],
                             "agent_sent": agent_frames[c.call_id][0], "caller_received": caller_frames[c.call_id][1]}  # fmt: skip
            row["quiet_rms_max"] = {
                "at_agent": round(a.detector.quiet_rms_max),
                "at_caller": round(c.detector.quiet_rms_max),
            }
            row["transcripts_at_agent"] = a.transcripts
            row["agent_errors"] = a.errors
            row["ring_ms"] = (
                round((a.connected_at - a.offered_at) * 1000, 1) if a.connected_at and a.offered_at else None
            )
        calls.append(row)
    send_late = [v for s in (*callers, *agents) for v in s.source.lateness_ms]
    return {
        "calls": calls,
        "bridged": sum(1 for c in calls if "caller_to_agent" in c),
        "connect_s_after_first_dial": connect_s,
        "window": window,
        "client": {
            "loop_lag_p99_ms": round(float(np.percentile(lag.samples, 99)), 1) if lag.samples else None,
            "loop_lag_max_ms": round(max(lag.samples), 1) if lag.samples else None,
            "send_frames": len(send_late),
            "send_late_frames": sum(1 for v in send_late if v > 20),
            "send_lateness_max_ms": round(max(send_late), 1) if send_late else None,
        },
    }


def dropped_audio(log: Path, offset: int) -> int:
    """Caller frames the server dropped for slow agent sockets (logged when a desktop disconnects)."""
    total = 0
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "desktop.disconnected":
                total += int(entry.get("dropped_audio") or 0)
    return total


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {"n": len(values), "p50": round(float(np.percentile(arr, 50)), 1), "p95": round(float(np.percentile(arr, 95)), 1),
            "max": round(float(arr.max()), 1)}  # fmt: skip


def direction(calls: list[dict[str, Any]], key: str) -> dict[str, Any]:
    rows = [c[key] for c in calls if key in c]
    return {
        **stats([d for r in rows for d in r["delays_ms"]]),
        "sent": sum(r["sent"] for r in rows),
        "detected": sum(r["detected"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "duplicates": sum(r["duplicates"] for r in rows),
        "unmatched": sum(r["unmatched"] for r in rows),
    }


def run_level(n: int, args: argparse.Namespace, settings: Path, work: Path, rng: random.Random) -> dict[str, Any]:
    print(f"\n== N={n}: starting ivr serve ...", flush=True)
    proc, url, log = start_ivr(NO_DIALOG, settings, work, f"n{n}")
    try:
        # Warm-up: loads the ASR model and the voice, runs one call through the queue (not counted).
        warm = asyncio.run(run_calls(url, 1, 2.0, args.burst_every_ms / 1000, 0.5, 0.5, rng))
        print(
            f"   warm-up call: bridged={warm['bridged']}, connected after {warm['connect_s_after_first_dial']} s",
            flush=True,
        )
        idle_before = wait_idle(args.idle_pct, args.idle_wait)
        before = healthz(url)
        load_before = os.getloadavg()
        offset = log.stat().st_size
        sampler = ProcSampler({"ivr_serve": proc.pid, "bench_client": os.getpid()})
        marks: dict[str, Any] = {}

        def on_window(what: str) -> Any:
            """Start of the window: CPU sampling starts; end: it stops (runs in a thread), load read."""
            if what == "start":
                sampler.start()
                marks["load_start"] = os.getloadavg()
                return None
            marks["resources"] = sampler.finish()
            marks["load_end"] = os.getloadavg()
            return None

        t_start = time.monotonic()
        result = asyncio.run(
            run_calls(url, n, args.seconds, args.burst_every_ms / 1000, args.settle_s, args.drain_s, rng, on_window)
        )
        wall = time.monotonic() - t_start
        after = healthz(url)
    finally:
        stop(proc)
    frames = after["frames_sent"] - before["frames_sent"]
    late = after["late_frames"] - before["late_frames"]
    calls = result["calls"]
    level = {
        "benchmark": "agent_audio",
        "calls": n,
        "bridged": result["bridged"],
        "seconds": args.seconds,
        "burst_every_ms": args.burst_every_ms,
        "wall_s": round(wall, 1),
        "caller_to_agent_ms": direction(calls, "caller_to_agent"),
        "agent_to_caller_ms": direction(calls, "agent_to_caller"),
        "server_dropped_audio_frames": dropped_audio(log, offset),
        # 20 ms frames after the connect, all calls: received should equal sent within a frame per call
        "frames": {
            k: sum(c["frames"][k] for c in calls if "frames" in c)
            for k in ("caller_sent", "agent_received", "agent_sent", "caller_received")
        },  # fmt: skip
        "pacing": {
            "frames_sent": frames,
            "late_frames": late,
            "underruns": after["underruns"] - before["underruns"],
            "max_lateness_ms": after["max_lateness_ms"],
            "max_lateness_ms_before": before["max_lateness_ms"],
            "active_calls_after": after["active_calls"],
        },
        "healthz_before": before,
        "healthz_after": after,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_window_start": [round(x, 2) for x in marks.get("load_start", ())],
        "loadavg_window_end": [round(x, 2) for x in marks.get("load_end", ())],
        "machine_cpu_before_pct": idle_before,
        "resources": marks.get("resources", {}),
        "client": result["client"],
        "connect_s_after_first_dial": result["connect_s_after_first_dial"],
        "transcripts_at_agents": {
            k: sum(c.get("transcripts_at_agent", {}).get(k, 0) for c in calls) for k in ("partial", "final")
        },
        "hangups": sorted({str(c["hangup"]) for c in calls}),
        "errors": [e for c in calls for e in ([c["error"]] if c["error"] else []) + c.get("agent_errors", [])],
    }
    return {**level, "per_call": calls, "warmup": {k: warm[k] for k in ("bridged", "connect_s_after_first_dial")}}


# ---- report --------------------------------------------------------------------------


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def print_report(levels: list[dict[str, Any]]) -> None:
    ns = [lvl["calls"] for lvl in levels]
    width = 24
    print(
        "\nBridged audio delay, ms: p50 / p95 / max (send of a burst's first frame -> first loud frame at the far end)"
    )
    head = f"{'':<24}" + "".join(f"{'N=' + str(n):>{width}}" for n in ns)
    print(head)
    print("-" * len(head))
    for label, key in (("caller -> agent", "caller_to_agent_ms"), ("agent -> caller", "agent_to_caller_ms")):
        print(
            f"{label:<24}"
            + "".join(
                f"{fmt(lv[key]['p50']) + ' / ' + fmt(lv[key]['p95']) + ' / ' + fmt(lv[key]['max']):>{width}}"
                for lv in levels
            )
        )
    for label, key in (("bursts c->a det/sent", "caller_to_agent_ms"), ("bursts a->c det/sent", "agent_to_caller_ms")):
        print(
            f"{label:<24}"
            + "".join(f"{str(lv[key]['detected']) + ' / ' + str(lv[key]['sent']):>{width}}" for lv in levels)
        )
    print(
        f"{'calls bridged':<24}" + "".join(f"{str(lv['bridged']) + ' / ' + str(lv['calls']):>{width}}" for lv in levels)
    )
    print(
        f"{'frames c->a rx/tx':<24}"
        + "".join(
            f"{str(lv['frames']['agent_received']) + ' / ' + str(lv['frames']['caller_sent']):>{width}}"
            for lv in levels
        )
    )
    print(
        f"{'frames a->c rx/tx':<24}"
        + "".join(
            f"{str(lv['frames']['caller_received']) + ' / ' + str(lv['frames']['agent_sent']):>{width}}"
            for lv in levels
        )
    )
    print(f"{'server dropped frames':<24}" + "".join(f"{lv['server_dropped_audio_frames']:>{width}}" for lv in levels))
    rows = [
        (
            "CPU ivr serve mean/p95",
            lambda lv: (
                f"{lv['resources'].get('ivr_serve', {}).get('cpu_mean_pct', '-')} / {lv['resources'].get('ivr_serve', {}).get('cpu_p95_pct', '-')}%"
            ),
        ),
        (
            "CPU bench client",
            lambda lv: (
                f"{lv['resources'].get('bench_client', {}).get('cpu_mean_pct', '-')} / {lv['resources'].get('bench_client', {}).get('cpu_p95_pct', '-')}%"
            ),
        ),
        (
            "CPU whole machine",
            lambda lv: (
                f"{lv['resources'].get('system', {}).get('cpu_mean_pct', '-')} / {lv['resources'].get('system', {}).get('cpu_p95_pct', '-')}%"
            ),
        ),
        ("CPU other processes", lambda lv: f"{fmt(lv['resources'].get('others_cpu_mean_pct'))}%"),
        (
            "load avg 1 min start/end",
            lambda lv: (
                f"{fmt((lv['loadavg_window_start'] or [None])[0])} / {fmt((lv['loadavg_window_end'] or [None])[0])}"
            ),
        ),
        ("healthz late/frames", lambda lv: f"{lv['pacing']['late_frames']} / {lv['pacing']['frames_sent']}"),
        ("healthz max lateness ms", lambda lv: fmt(lv["pacing"]["max_lateness_ms"])),
        (
            "client loop lag p99/max",
            lambda lv: f"{fmt(lv['client']['loop_lag_p99_ms'])} / {fmt(lv['client']['loop_lag_max_ms'])}",
        ),
        ("client late sends", lambda lv: f"{lv['client']['send_late_frames']} / {lv['client']['send_frames']}"),
    ]
    print(
        f"\nDuring the window (CPU: 100% = one core, {os.cpu_count()} cores; healthz: whole level, server-paced prompts only)"
    )
    for label, cell in rows:
        print(f"{label:<24}" + "".join(f"{cell(lv):>{width}}" for lv in levels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,5,10", help="simultaneous bridged calls, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per level (both sides streaming)")
    parser.add_argument("--burst-every-ms", type=float, default=500.0, help="burst period per direction and call")
    parser.add_argument(
        "--settle-s", type=float, default=1.0, help="wait after the last call is bridged before measuring"
    )
    parser.add_argument("--drain-s", type=float, default=2.0, help="keep listening after the window for late bursts")
    parser.add_argument("--idle-pct", type=float, default=30.0,
                        help="before each level wait until the whole machine uses at most this much CPU (100 = one core)")  # fmt: skip
    parser.add_argument(
        "--idle-wait", type=float, default=300.0, help="longest wait for --idle-pct (s); then measure anyway"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write everything (per call too) as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server logs, SQLite databases)")
    args = parser.parse_args(argv)
    levels_n = [int(x) for x in args.levels.split(",") if x.strip()]
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="ivr-agent-audio-"))
    print(f"work dir: {work}", flush=True)
    settings = write_settings(work, max(levels_n))
    results: dict[str, Any] = {
        "benchmark": "agent_audio",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine_facts(),
        "packages": package_versions(),
        "env": {**MODEL_ENV, "IVR_DIALOG_URL": NO_DIALOG},
        "signal": {
            "tones_hz": TONES_HZ,
            "burst_ms": BURST_FRAMES * 20,
            "burst_amplitude": BURST_AMPLITUDE,
            "noise_rms": NOISE_RMS,
            "threshold_rms": THRESHOLD_RMS,
        },  # fmt: skip
        "levels": [],
    }
    try:
        for n in levels_n:
            level = run_level(n, args, settings, work, rng)
            results["levels"].append(level)
            print(
                json.dumps(
                    {
                        k: v
                        for k, v in level.items()
                        if k not in ("per_call", "warmup", "healthz_before", "healthz_after")
                    }
                ),
                flush=True,
            )
    finally:
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print_report(results["levels"])
    if args.out is not None:
        print(f"\nresults: {args.out}")
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
