"""Real SIP phones as test callers: baresip (ctrl_tcp) and linphonec (stdin), plus a transfer target.

Both phones run headless: no sound card, a WAV file as the microphone, what
they hear recorded to a WAV. They are Debian packages (`baresip`,
`linphone-cli`) installed by .ci/run; tests skip with the install command when
they are missing.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from ivr.localhost import free_port
from ivr.transports.sip.message import Request, parse, response

BARESIP_CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:0
net_interface\t\t127.0.0.1
call_local_timeout\t30
call_max_calls\t\t1
audio_source\t\taufile,{source}
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
audio_level\t\tno
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
statmode_default\toff
ringback_disabled\tyes
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\tsndfile.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}
snd_path\t\t{folder}
"""

LINPHONERC = """\
[sip]
sip_port=-1
sip_tcp_port=-1
sip_tls_port=-1
default_proxy=-1
contact=sip:tester@127.0.0.1
guess_hostname=0
use_rfc2833=1
use_info=0
use_ipv6=0
ipv6_migration_done=1
inc_timeout=30
in_call_timeout=0
register_only_when_network_is_up=0
[rtp]
bind_address=127.0.0.1
audio_rtp_port=21000-21999
nortp_timeout=30
audio_adaptive_jitt_comp_enabled=0
audio_jitt_comp=60
[sound]
echocancellation=0
echolimiter=0
agc=0
noisegate=0
[video]
display=0
capture=0
automatically_initiate=0
automatically_accept=0
[misc]
max_calls=1
""" + "".join(
    f"[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={ch}\nenabled={int(i < 2)}\n"
    for i, (mime, rate, ch) in enumerate([("PCMU", 8000, 1), ("PCMA", 8000, 1), ("opus", 48000, 2), ("speex", 16000, 1),
                                          ("speex", 8000, 1), ("G729", 8000, 1), ("G722", 8000, 1), ("GSM", 8000, 1)])
)  # fmt: skip


def missing(program: str, package: str) -> str | None:
    return None if shutil.which(program) else f"{program} not installed (apt-get install {package}; .ci/run does)"


class Baresip:
    """baresip 1.0 driven over ctrl_tcp (netstring JSON commands and events)."""

    def __init__(self, folder: Path, source_wav: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ctrl_port = free_port()
        (folder / "config").write_text(
            BARESIP_CONFIG.format(source=source_wav, ctrl_port=self.ctrl_port, folder=folder)
        )
        (folder / "accounts").write_text("<sip:tester@127.0.0.1>;regint=0;audio_codecs=pcmu,pcma\n")
        self.log = (folder / "baresip.log").open("wb")
        self.proc = subprocess.Popen(["baresip", "-f", str(folder)], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        self.events: list[dict] = []
        self._responses: dict[str, dict] = {}
        self._token = 0
        self._cond = threading.Condition()
        self._sock = self._connect()
        threading.Thread(target=self._read, daemon=True).start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited: {(self.folder / 'baresip.log').read_text()[-500:]}")
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _read(self) -> None:
        self._sock.settimeout(None)
        buffer = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self.events.append({"type": "CTRL_EOF"})
                    self._cond.notify_all()
                    return
                buffer += data
                while b":" in buffer:
                    size, _, rest = buffer.partition(b":")
                    if len(rest) < int(size) + 1:
                        break
                    message, buffer = json.loads(rest[: int(size)]), rest[int(size) + 1 :]
                    if message.get("response"):
                        self._responses[message.get("token")] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()

    def command(self, name: str, params: str | None = None, timeout: float = 5) -> str:
        with self._cond:
            self._token += 1
            token = str(self._token)
        raw = json.dumps(
            {"command": name, "token": token, **({"params": params} if params is not None else {})}
        ).encode()
        self._sock.sendall(b"%d:%s," % (len(raw), raw))
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise TimeoutError(f"baresip: no answer to {name}")
            answer = self._responses.pop(token)
        if not answer.get("ok"):
            raise RuntimeError(f"baresip {name}: {answer.get('data')}")
        return answer.get("data") or ""

    def wait_event(self, kind: str, timeout: float = 20) -> dict:
        with self._cond:
            if not self._cond.wait_for(lambda: any(e.get("type") in (kind, "CTRL_EOF") for e in self.events), timeout):
                raise TimeoutError(
                    f"baresip: no {kind} event within {timeout} s; events: {[e.get('type') for e in self.events]}"
                )
            return next(e for e in self.events if e.get("type") in (kind, "CTRL_EOF"))

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def keys(self, digits: str) -> None:
        self.command("sndcode", digits)  # RFC 4733, about 240 ms per key

    def hang_up(self) -> dict:
        self.command("hangup")
        return self.wait_event("CALL_CLOSED")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit", timeout=2)
            except (OSError, TimeoutError, RuntimeError):
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sock.close()
        self.log.close()

    @property
    def heard_wav(self) -> Path | None:
        """What the phone received, decoded (written by the sndfile module when the call ends)."""
        files = sorted(glob.glob(str(self.folder / "dump-*-dec.wav")))
        return Path(files[-1]) if files else None


class Linphone:
    """linphonec (linphone-cli 5.1) driven on stdin; file "soundcard" for microphone and recording."""

    def __init__(self, folder: Path, source_wav: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        rc = folder / "linphonerc"
        rc.write_text(LINPHONERC)  # linphonec rewrites it on exit: always a fresh copy
        self.heard_wav = folder / "heard.wav"
        self.proc = subprocess.Popen(["stdbuf", "-oL", "linphonec", "-c", str(rc)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env=dict(os.environ, HOME=str(folder)))  # fmt: skip
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._log = (folder / "linphonec.log").open("w")
        threading.Thread(target=self._read, daemon=True).start()
        self.send(f"ports sip {free_port()}")  # the rc's sip_port is ignored
        self.send("soundcard use files")
        self.send(f"play {source_wav}")
        self.send(f"record {self.heard_wav}")
        self.wait_for(r"Setting sip port to")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if regex.search(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"linphonec: no line matching {pattern!r} within {timeout} s; last: {self.lines[-5:]}"
                )
            try:
                if self._queue.get(timeout=min(left, 0.5)) is None:
                    raise EOFError(f"linphonec exited; last: {self.lines[-5:]}")
            except queue.Empty:
                pass

    def dial(self, uri: str) -> None:
        self.send(f"call {uri}")

    def keys(self, digits: str) -> None:
        self.send(digits)  # a line of 0-9*# is sent as RFC 4733 events, one per second

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")  # never just close stdin: linphonec then spins
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class TransferTarget:
    """The agent line a blind transfer rings: a SIP UAS in a thread that answers, records requests, ends on BYE."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[Request] = []
        self.unreadable: list[bytes] = []  # what arrived but did not parse, for the failure message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sdp = b"v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            try:
                message = parse(data)
            except ValueError:
                self.unreadable.append(data)
                continue
            if not isinstance(message, Request):
                continue
            self.requests.append(message)
            if message.method == "INVITE":
                self.sock.sendto(bytes(response(message, 180, to_tag="agent")), addr)
                answer = response(message, 200, to_tag="agent", body=sdp, content_type="application/sdp",
                                  headers=(("Contact", f"<sip:agent@127.0.0.1:{self.port}>"),))  # fmt: skip
                self.sock.sendto(bytes(answer), addr)
            elif message.method != "ACK":
                self.sock.sendto(bytes(response(message, 200, to_tag="agent")), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
