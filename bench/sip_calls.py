"""Concurrent SIP calls: how many calls one `ivr serve` carries while keeping 20 ms RTP pacing.

    python bench/sip_calls.py [--levels 1,10,25,50] [--seconds 30] [--out FILE]

For each level N a fresh `ivr serve --sip-port` is started with
`IVR_DIALOG_URL` pointing where nothing listens: every call's first dialog
turn fails, the caller hears the apology and then the queue's announcements
and hold music, continuously, without Rasa (the dialog's own latency is what
bench/latency.py and bench/dialog_latency.py measure). N scripted SIP phones
(ivr.transports.sip.caller) keep N calls up for --seconds: a call that ends is
re-dialled at once. Each phone speaks a 2.5 s sentence every 10 s (Piper,
joe voice; the server runs VAD and Vosk on it) and silence otherwise.

Measured:
- at the server (/healthz `sip`): RTP ticks that woke more than one frame
  (20 ms) late, the worst lateness, resyncs;
- at the phones: for every received audio packet, its arrival against the
  schedule its RTP timestamp implies (anchored at the call's earliest packet):
  packets more than 20 ms behind, and lost packets (sequence gaps);
- the phones' own event-loop lag, because phones and server share this
  machine's two cores: a late packet counted at a lagging phone may be the
  phone's, not the server's;
- RTCP, both ways: the phones' RFC 3550 interarrival jitter of the server's
  stream, and, from the MEDIA_QUALITY events the server logged, its jitter
  and loss figures for the phones' streams and the round trips it measured
  from the receiver reports the phones send every 5 s, as real phones do;
- CPU of the server process tree and of this client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.latency import MODEL_ENV, ProcSampler, healthz, machine_facts, package_versions, stop, wait_idle  # noqa: E402
from ivr.localhost import free_port, wait_http  # noqa: E402
from ivr.transports.sip.caller import SipCaller  # noqa: E402

TEST_SETTINGS = ROOT / "tests" / "data" / "ivr.test.yml"
TENANT = "+4930123456"
NO_DIALOG = "http://127.0.0.1:9"
LATE_MS = 20.0


def speech_8k() -> bytes:
    from tests.speech import speech

    return speech("Hello, I am calling about my order, could you tell me where it is?", rate=8000)


def start_server(work: Path) -> tuple[Any, str, int]:
    import os
    import subprocess

    port, sip_port = free_port(), free_port()
    log = work / "ivr.log"
    env = dict(os.environ, **MODEL_ENV, IVR_DATABASE_URL=f"sqlite:///{work / 'ivr.db'}", IVR_DIALOG_URL=NO_DIALOG)
    settings = work / "ivr.bench.yml"
    import yaml

    # Long waits in the queue: calls stay up until the bench ends them (a real queue would too).
    data = yaml.safe_load(TEST_SETTINGS.read_text())
    data["sip"] = {"rtp_ports": None, "max_calls": 500}
    # Admission control would refuse the higher levels: the bench measures the machine beyond it.
    data["admission"] = {**data.get("admission", {}), "max_calls": 500, "starts_per_s": 500, "start_burst": 500,
                         "max_loop_lag_ms": 60_000, "max_asr_backlog_s": 3600}  # fmt: skip
    settings.write_text(yaml.safe_dump(data, sort_keys=False))
    cmd = [
        sys.executable,
        "-m",
        "ivr.cli",
        "--settings",
        str(settings),
        "serve",
        "--port",
        str(port),
        "--sip-port",
        str(sip_port),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc, 180, log)
    return proc, url, sip_port


class Slot:
    """One line kept busy: a call, and a new one when it ends."""

    def __init__(self, sip_port: int, speech: bytes, offset_s: float):
        self.sip_port = sip_port
        self.speech = speech
        self.offset_s = offset_s
        self.finished: list[SipCaller] = []
        self.failed = 0
        self.current: SipCaller | None = None

    async def run(self, until: float) -> None:
        await asyncio.sleep(self.offset_s)
        while time.monotonic() < until:
            caller = SipCaller(("127.0.0.1", self.sip_port))
            self.current = caller
            try:
                final = await caller.call(TENANT, timeout=20)
            except TimeoutError:
                self.failed += 1
                caller.close()
                continue
            if final.code != 200:
                self.failed += 1
                caller.close()
                await asyncio.sleep(0.5)
                continue
            next_speech = time.monotonic() + 3.0
            next_report = time.monotonic() + 5.0
            while time.monotonic() < until and not caller.bye_received.is_set():
                if time.monotonic() >= next_speech:
                    caller.play(self.speech)
                    next_speech += 10.0
                if time.monotonic() >= next_report:
                    caller.send_receiver_report()
                    next_report += 5.0
                await asyncio.sleep(0.1)
            if not caller.bye_received.is_set():
                try:
                    await caller.hang_up()
                except TimeoutError:
                    caller.close()
            else:
                caller.close()
            self.finished.append(caller)


def packet_metrics(callers: list[SipCaller]) -> dict[str, Any]:
    lateness: list[float] = []
    late = lost = packets = 0
    for caller in callers:
        audio = [(t, p) for t, p in caller.received.packets if p.payload_type == caller.payload_type]
        if len(audio) < 2:
            continue
        # Unwrap timestamps, anchor at the earliest packet (the least delayed), measure everyone's delay against it.
        base_ts = audio[0][1].timestamp  # signed distance: a packet may carry an earlier timestamp than the first
        ideal = np.array([(((p.timestamp - base_ts + 2**31) % 2**32) - 2**31) / 8000 for _, p in audio])
        arrival = np.array([t for t, _ in audio])
        delay = arrival - ideal
        delay_ms = (delay - delay.min()) * 1000
        lateness.extend(delay_ms.tolist())
        late += int((delay_ms > LATE_MS).sum())
        packets += len(audio)
        sequences = sorted({p.sequence for _, p in audio})
        span = (sequences[-1] - sequences[0]) % 65536 + 1 if sequences[-1] - sequences[0] < 60000 else len(sequences)
        lost += max(0, span - len(sequences))
    values = np.array(lateness) if lateness else np.zeros(1)
    return {
        "packets": packets,
        "late_packets": late,
        "late_pct": round(100 * late / max(packets, 1), 3),
        "lost_packets": lost,
        "delay_p50_ms": round(float(np.percentile(values, 50)), 1),
        "delay_p99_ms": round(float(np.percentile(values, 99)), 1),
        "delay_max_ms": round(float(values.max()), 1),
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    array = np.array(values)
    return {"p50": round(float(np.percentile(array, 50)), 1), "p99": round(float(np.percentile(array, 99)), 1),
            "max": round(float(array.max()), 1)}  # fmt: skip


def rtcp_metrics(callers: list[SipCaller], db: Path) -> dict[str, Any]:
    """The RTCP figures: jitter of the server's stream at the phones, and what the server logged per call."""
    with sqlite3.connect(db) as conn:
        rows = [json.loads(r[0]) for r in conn.execute("select data from call_events where event = 'MEDIA_QUALITY'")]
    phone_jitter = [c.rtcp.reception.jitter / 8 for c in callers if c.rtcp.reception.received]
    return {
        "phones_jitter_of_server_ms": percentiles(phone_jitter),
        "server_jitter_of_phones_ms": percentiles([r["jitter_ms"] for r in rows if r["jitter_ms"] is not None]),
        "server_rtt_ms": percentiles([r["rtt_ms"] for r in rows if r["rtt_ms"] is not None]),
        "server_loss_pct_max": max((r["loss_pct"] or 0 for r in rows), default=None),
        "media_quality_events": len(rows),
    }


async def loop_lag(until: float, out: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while time.monotonic() < until:
        start = loop.time()
        await asyncio.sleep(0.02)
        out.append((loop.time() - start - 0.02) * 1000)


async def run_level(sip_port: int, n: int, seconds: float, speech: bytes) -> tuple[list[SipCaller], dict[str, Any]]:
    until = time.monotonic() + seconds
    slots = [Slot(sip_port, speech, offset_s=i * 0.05) for i in range(n)]
    lags: list[float] = []
    await asyncio.gather(*(slot.run(until) for slot in slots), loop_lag(until, lags))
    callers = [c for slot in slots for c in slot.finished]
    return callers, {
        "calls_completed": len(callers),
        "calls_failed": sum(slot.failed for slot in slots),
        "calls_ended_by_ivr": sum(c.bye_received.is_set() for c in callers),
        **packet_metrics(callers),
        "client_loop_lag_p99_ms": round(float(np.percentile(lags, 99)), 1) if lags else None,
        "client_loop_lag_max_ms": round(max(lags), 1) if lags else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,10,25,50")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    speech = speech_8k()
    results = []
    for n in [int(x) for x in args.levels.split(",")]:
        idle = wait_idle(25.0, 120.0)
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, sip_port = start_server(Path(tmp))
            try:
                import os

                sampler = ProcSampler({"ivr_serve": proc.pid, "bench_client": os.getpid()})
                sampler.start()
                callers, level = asyncio.run(run_level(sip_port, n, args.seconds, speech))
                cpu = sampler.finish()
                server = healthz(url).get("sip", {})
            finally:
                stop(proc)
            level.update(rtcp_metrics(callers, Path(tmp) / "ivr.db"))
        result = {"calls": n, "seconds": args.seconds, "waited_for_idle_s": idle, **level,
                  "server_late_ticks": server.get("late_ticks"), "server_ticks": server.get("packets"),
                  "server_max_tick_lateness_ms": round(server.get("max_lateness_ms", 0.0), 1),
                  "server_resyncs": server.get("resyncs"), "cpu": cpu}  # fmt: skip
        print(json.dumps(result), flush=True)
        results.append(result)
    report = {"machine": machine_facts(), "packages": package_versions(), "levels": results}
    print(
        "\n| calls | late ticks (server) | worst tick ms | packets late >20 ms at phones | delay p99 ms | lost | phone loop lag p99 ms | server CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['calls']} | {r['server_late_ticks']} of {r['server_ticks']} | {r['server_max_tick_lateness_ms']} | "
              f"{r['late_packets']} of {r['packets']} ({r['late_pct']} %) | {r['delay_p99_ms']} | {r['lost_packets']} | "
              f"{r['client_loop_lag_p99_ms']} | {r['cpu'].get('ivr_serve', {}).get('cpu_mean_pct')} |")  # fmt: skip
    print(
        "\n| calls | RTCP jitter of the IVR's stream at the phones p50 / max ms | IVR's jitter of the phones p50 / max ms | round trip p50 / p99 ms | calls with MEDIA_QUALITY |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        a, b, c = r["phones_jitter_of_server_ms"], r["server_jitter_of_phones_ms"], r["server_rtt_ms"]
        print(
            f"| {r['calls']} | {a['p50']} / {a['max']} | {b['p50']} / {b['max']} | {c['p50']} / {c['p99']} | {r['media_quality_events']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
