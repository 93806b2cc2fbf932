"""Scale-out: two `ivr serve` processes behind Kamailio's dispatcher, with the configuration from docs/kamailio/.

Calls placed at the proxy are spread round-robin over both IVRs; in-dialog
requests (ACK, BYE) follow the Record-Route through the proxy; when one IVR
dies, new calls fail over to the other and the proxy marks the dead one
inactive (its OPTIONS probes go unanswered).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ivr.audio.codecs import rms
from ivr.localhost import free_port
from ivr.transports.sip.caller import SipCaller
from tests.conftest import TEST_SETTINGS, start_ivr

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "docs" / "kamailio" / "kamailio.cfg"
MUSTER = "+4930123456"

KAMAILIO = shutil.which("kamailio") or next(
    (p for p in ("/usr/sbin/kamailio",) if Path(p).exists()), None
)  # sbin may be off PATH
pytestmark = pytest.mark.skipif(
    KAMAILIO is None, reason="kamailio not installed (apt-get install kamailio; .ci/run does)"
)


def options_answer(port: int) -> str | None:
    """The status line of the proxy's answer to OPTIONS, or None (not listening yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(0.5)
        me = probe.getsockname()[1]
        message = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                   f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: {uuid.uuid4().hex}\r\n"
                   "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
        try:
            probe.sendto(message.encode(), ("127.0.0.1", port))
            return probe.recvfrom(65535)[0].split(b"\r\n", 1)[0].decode()
        except OSError:
            return None


class Kamailio:
    def __init__(self, work: Path, backends: list[int]):
        self.port = free_port()
        (work / "dispatcher.list").write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in backends))
        self.log = work / "kamailio.log"
        self.proc = subprocess.Popen(
            [str(KAMAILIO), "-DD", "-E", "-f", str(CONFIG), "-Y", str(work), "-P", str(work / "kamailio.pid"), "-m", "64", "-M", "8",
             "-A", f"LISTEN_PORT={self.port}", "-A", f'DS_LIST="{work}/dispatcher.list"',
             "-A", f'CTL_SOCK="unix:{work}/ctl"', "-A", "DS_PING_INTERVAL=2"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while options_answer(self.port) != "SIP/2.0 200 OK":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def calls_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from calls where channel = 'sip'").fetchone()[0]


async def place_calls(proxy_port: int, count: int) -> list[tuple[int, float, int]]:
    """(final status, loudest bot audio, BYE status) per call, placed one after another through the proxy."""
    results = []
    for _ in range(count):
        caller = SipCaller(("127.0.0.1", proxy_port))
        final = await caller.call(MUSTER, timeout=20)
        if final.code != 200:
            results.append((final.code, 0.0, 0))
            caller.close()
            continue
        deadline = time.monotonic() + 15
        while rms(caller.received.pcm(caller.payload_type)) < 300 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        level = rms(caller.received.pcm(caller.payload_type))
        bye = await caller.hang_up()  # through the proxy, by the Record-Route
        results.append((final.code, level, bye.code))
    return results


def test_two_ivrs_behind_kamailio_share_calls_and_survive_one_dying(rasa_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("kamailio")
    ports = [free_port(), free_port()]
    ivrs = []
    for i, port in enumerate(ports):  # each with its own database, to see which one took a call
        (work / f"ivr{i}").mkdir()
        ivrs.append(start_ivr(rasa_url, work / f"ivr{i}", settings=TEST_SETTINGS, args=["--sip-port", str(port)]))
    proxy = Kamailio(work, ports)
    try:
        first = asyncio.run(place_calls(proxy.port, 4))
        assert [(code, bye) for code, _, bye in first] == [(200, 200)] * 4
        assert all(level > 300 for _, level, _ in first)  # every caller heard the greeting
        assert [calls_in(ivr.db) for ivr in ivrs] == [2, 2]  # round-robin

        ivrs[1].proc.send_signal(signal.SIGKILL)  # one IVR vanishes without a goodbye
        ivrs[1].proc.wait()
        second = asyncio.run(place_calls(proxy.port, 4))
        assert [(code, bye) for code, _, bye in second] == [(200, 200)] * 4  # the first after the kill fails over
        assert [calls_in(ivr.db) for ivr in ivrs] == [6, 2]
        assert f"destination DOWN: sip:127.0.0.1:{ports[1]}" in proxy.log.read_text()
    finally:
        proxy.stop()
        for ivr in ivrs:
            if ivr.proc.poll() is None:
                ivr.proc.terminate()
                ivr.proc.wait(30)
