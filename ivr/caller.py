"""`ivr call`: a command-line caller that behaves like a telephony provider.

It connects to the Media Streams endpoint, streams μ-law audio continuously in
real time (silence between turns, as a phone line does), plays WAV files as the
caller's turns once the bot has finished speaking (or barges in on request),
sends DTMF, echoes marks when the bot audio they follow has "played", and
records the bot's audio. It prints JSON lines with timings: for each caller
turn, end of caller speech → first bot audio. The transcript is fetched from
the call API afterwards, which needs an agent login (`--user`; the password
comes from IVR_PASSWORD or a prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import os
import sys
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import numpy as np

from ivr.audio.codecs import Codec, frame_bytes, resample

LINE_RATE = 8000
FRAME_S = 0.02
MULAW = Codec("mulaw", LINE_RATE)
SILENCE = b"\x00" * frame_bytes(LINE_RATE)


def read_wav(path: Path, rate: int = LINE_RATE) -> bytes:
    """A WAV file as mono PCM16 at `rate`; errors name the file and the problem."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise SystemExit(f"{path}: need 16-bit PCM WAV, got {wav.getsampwidth() * 8}-bit")
            pcm = wav.readframes(wav.getnframes())
            channels, src_rate = wav.getnchannels(), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise SystemExit(f"{path}: not a readable WAV file ({exc})") from exc
    except OSError as exc:
        raise SystemExit(f"{path}: {exc.strerror}") from exc
    if channels > 1:
        samples = np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels).mean(axis=1).astype(np.int16)
        pcm = samples.tobytes()
    return resample(pcm, src_rate, rate)


def voiced_end(pcm: bytes, rate: int = LINE_RATE, threshold: int = 500) -> float:
    """Seconds from the start of `pcm` to the end of its last frame louder than `threshold` RMS."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    step = int(rate * FRAME_S)
    last = 0
    for i in range(0, len(samples) - step + 1, step):
        if np.sqrt(np.mean(samples[i : i + step] ** 2)) > threshold:
            last = i + step
    return last / rate


def write_wav(path: Path, pcm: bytes, rate: int = LINE_RATE) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


@dataclass
class Step:
    kind: str  # wav | dtmf | wait
    value: Any


def parse_steps(items: list[str]) -> list[Step]:
    steps = []
    for item in items:
        if item.startswith("dtmf:"):
            digits = item[5:]
            if not digits or any(d not in "0123456789*#" for d in digits):
                raise SystemExit(f"{item}: dtmf: takes digits 0-9, * and #")
            steps.append(Step("dtmf", digits))
        elif item.startswith("wait:"):
            try:
                steps.append(Step("wait", float(item[5:])))
            except ValueError:
                raise SystemExit(f"{item}: wait: takes seconds, e.g. wait:2.5") from None
        else:
            steps.append(Step("wav", Path(item)))
    return steps


@dataclass
class CallerState:
    bot_pcm: bytearray = field(default_factory=bytearray)
    playout_end: float = 0.0  # when the far end would have finished playing what it got
    last_media_at: float = 0.0
    bot_media_frames: int = 0
    hung_up: str | None = None
    waiting_first_audio: dict[str, Any] | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)


class Caller:
    def __init__(
        self,
        url: str,
        to: str,
        caller_id: str,
        out: TextIO,
        settle_s: float,
        timeout_s: float,
        auth: aiohttp.BasicAuth | None = None,
    ):
        """`auth`: an agent login that sees the dialled tenant, for reading the transcript afterwards."""
        self.url = url
        self.auth = auth
        self.to = to
        self.caller_id = caller_id
        self.out = out
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.call_sid = f"CA{uuid.uuid4().hex}"
        self.call_id: str | None = None  # the server's id of the call, looked up after it
        self.stream_sid = f"MZ{uuid.uuid4().hex}"
        self.state = CallerState()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.t0 = time.monotonic()
        self.turns: list[dict[str, Any]] = []
        self._we_hung_up = False
        self._echoes: set[asyncio.Future[None]] = set()  # mark echoes in flight: the loop keeps only weak references

    def emit(self, event: str, **data: Any) -> None:
        record = {"event": event, "t": round(time.monotonic() - self.t0, 3), **data}
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    async def run(self, steps: list[Step], barge_in_after_s: float | None) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(self.url, max_msg_size=1 << 20) as ws:
                await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                start = {
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": LINE_RATE, "channels": 1},
                    "customParameters": {"to": self.to, "from": self.caller_id},
                }
                await ws.send_json(
                    {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": self.stream_sid}
                )
                self.emit("start", call_sid=self.call_sid, to=self.to)
                receiver = asyncio.create_task(self._receive(ws))
                sender = asyncio.create_task(self._send_media(ws))
                try:
                    await asyncio.wait_for(self._script(ws, steps, barge_in_after_s), self.timeout_s)
                except asyncio.TimeoutError:
                    self.emit("timeout", seconds=self.timeout_s)
                finally:
                    sender.cancel()
                    if not ws.closed and self.state.hung_up is None:
                        self._we_hung_up = True
                        await ws.send_json(
                            {"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}}
                        )
                        self.emit("stop")
                        await ws.close()
                    await asyncio.gather(receiver, return_exceptions=True)
            transcript = await self._fetch_transcript(http)
        return {
            "call_sid": self.call_sid,
            "call_id": self.call_id,
            "turns": self.turns,
            "hangup": self.state.hung_up,
            "transcript": transcript,
        }

    async def _fetch_transcript(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        if self.auth is None:
            return []  # the call API needs a login
        base = self.url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/", 1)[0]
        for _ in range(20):  # the server finishes storing right after the socket closes
            if self.call_id is None:  # the server names its calls itself; ours is found by the CallSid we sent
                async with http.get(
                    f"{base}/api/calls", params={"provider_call_id": self.call_sid}, auth=self.auth
                ) as resp:
                    if resp.status in (401, 403, 429):
                        self.emit("transcript_unavailable", status=resp.status)
                        return []
                    calls = (await resp.json())["calls"] if resp.status == 200 else []
                    # A provider id names one call; should it name more, ours is the latest to the number we rang.
                    ours = [c for c in calls if c["dialled"] == self.to] or calls
                    self.call_id = ours[-1]["call_id"] if ours else None
                if self.call_id is None:
                    await asyncio.sleep(0.25)
                    continue
            async with http.get(f"{base}/api/calls/{self.call_id}", auth=self.auth) as resp:
                if resp.status in (401, 403, 429):
                    self.emit("transcript_unavailable", status=resp.status)
                    return []
                if resp.status == 200:
                    data = await resp.json()
                    if data["call"]["ended_at"] is not None:
                        for line in data["transcript"]:
                            self.emit(
                                "transcript",
                                **{
                                    k: line[k]
                                    for k in (
                                        "speaker",
                                        "text",
                                        "start",
                                        "end",
                                        "asr_confidence",
                                        "intent",
                                        "intent_confidence",
                                    )
                                },
                            )
                        return data["transcript"]
            await asyncio.sleep(0.25)
        return []

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        state = self.state
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            now = time.monotonic()
            if data.get("event") == "media":
                pcm = MULAW.decode(base64.b64decode(data["media"]["payload"]))
                state.bot_pcm.extend(pcm)
                state.playout_end = max(state.playout_end, now) + len(pcm) / 2 / LINE_RATE
                state.last_media_at = now
                state.bot_media_frames += 1
                if state.waiting_first_audio is not None:
                    turn = state.waiting_first_audio
                    turn["first_bot_audio"] = round(now - self.t0, 3)
                    turn["latency_ms"] = round((now - turn["_speech_end"]) * 1000)
                    state.waiting_first_audio = None
            elif data.get("event") == "mark":
                when = state.playout_end if state.playout_end > now else now
                asyncio.get_running_loop().call_at(when, self._schedule_echo, ws, str(data["mark"]["name"]))
            elif data.get("event") == "clear":
                state.playout_end = now
                self.emit("clear")
        if not self._we_hung_up:
            state.hung_up = f"server closed ({ws.close_code})"
            self.emit("hangup", by="server", code=ws.close_code)

    def _schedule_echo(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        echo = asyncio.ensure_future(self._echo_mark(ws, name))
        self._echoes.add(echo)
        echo.add_done_callback(self._echoes.discard)

    async def _echo_mark(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        if not ws.closed:
            await ws.send_json({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _send_media(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """One frame every 20 ms on an absolute schedule, silence when there is nothing to say."""
        seq = 2
        next_at = time.monotonic()
        while not ws.closed:
            frame = self._outgoing.get_nowait() if not self._outgoing.empty() else SILENCE
            payload = base64.b64encode(MULAW.encode(frame)).decode("ascii")
            media = {
                "track": "inbound",
                "chunk": str(seq),
                "timestamp": str(int((next_at - self.t0) * 1000)),
                "payload": payload,
            }
            try:
                await ws.send_json(
                    {"event": "media", "sequenceNumber": str(seq), "media": media, "streamSid": self.stream_sid}
                )
            except ConnectionResetError:
                return
            seq += 1
            next_at += FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _bot_idle(self) -> bool:
        now = time.monotonic()
        s = self.state
        return s.bot_media_frames > 0 and now >= s.playout_end and now - s.last_media_at >= self.settle_s

    async def _wait_bot_done(self) -> None:
        # "Idle" means no bot audio for settle_s: a condition on elapsed time that no event signals.
        while not self._bot_idle() and self.state.hung_up is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _wait_bot_speaking(self, frames_before: int, after_s: float = 0.0, limit_s: float = 15.0) -> None:
        """Until bot audio newer than `frames_before` arrives (or `limit_s` passes), then `after_s` more."""
        deadline = time.monotonic() + limit_s
        while self.state.bot_media_frames == frames_before and self.state.hung_up is None:
            if time.monotonic() > deadline:
                self.emit("no_reply", seconds=limit_s)
                return
            await asyncio.sleep(0.01)
        await asyncio.sleep(after_s)

    async def _script(
        self, ws: aiohttp.ClientWebSocketResponse, steps: list[Step], barge_in_after_s: float | None
    ) -> None:
        await self._wait_bot_done()  # the greeting
        for index, step in enumerate(steps):
            if self.state.hung_up:
                return
            if step.kind == "wait":
                deadline = time.monotonic() + step.value
                # a pause in the script, cut short when the IVR hangs up
                while time.monotonic() < deadline and self.state.hung_up is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                continue
            frames_before = self.state.bot_media_frames
            if step.kind == "dtmf":
                for digit in step.value:
                    await ws.send_json(
                        {
                            "event": "dtmf",
                            "streamSid": self.stream_sid,
                            "dtmf": {"track": "inbound_track", "digit": digit},
                        }
                    )
                    self.emit("dtmf", digit=digit)
                    await asyncio.sleep(0.15)
            else:
                pcm = read_wav(step.value)
                pcm += b"\x00" * (-len(pcm) % len(SILENCE))
                started = time.monotonic() + self._outgoing.qsize() * FRAME_S
                for i in range(0, len(pcm), len(SILENCE)):
                    self._outgoing.put_nowait(pcm[i : i + len(SILENCE)])
                speech_end = started + voiced_end(pcm)
                turn = {"turn": index + 1, "file": str(step.value), "_speech_end": speech_end}
                self.turns.append(turn)
                self.state.waiting_first_audio = None
                await asyncio.sleep(max(0.0, speech_end - time.monotonic()))
                self.state.waiting_first_audio = turn
                turn["speech_end"] = round(speech_end - self.t0, 3)
            if barge_in_after_s is not None and index + 1 < len(steps):
                await self._wait_bot_speaking(frames_before, barge_in_after_s)
            else:
                await self._wait_bot_speaking(frames_before)
                await self._wait_bot_done()
            for turn in self.turns:
                if "_speech_end" in turn and turn.get("emitted") is None:
                    turn["emitted"] = True
                    self.emit(
                        "caller_turn", **{k: v for k, v in turn.items() if not k.startswith("_") and k != "emitted"}
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ivr call", description=__doc__.split("\n\n")[0])
    parser.add_argument("steps", nargs="*", help="WAV files (caller turns), dtmf:DIGITS, wait:SECONDS")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/media")
    parser.add_argument("--to", default="+4930123456", help="dialled number (selects the tenant)")
    parser.add_argument("--from", dest="caller_id", default="+4915100000000")
    parser.add_argument("--out", type=Path, help="save the bot's audio to this WAV (8 kHz)")
    parser.add_argument(
        "--barge-in", type=float, metavar="SECONDS", help="start each turn this long after the bot starts speaking"
    )
    parser.add_argument("--settle", type=float, default=0.8, help="bot silence (s) that means it finished speaking")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--user", help="agent login for reading the transcript (password: IVR_PASSWORD or a prompt)")
    args = parser.parse_args(argv)
    steps = parse_steps(args.steps)
    for step in steps:
        if step.kind == "wav":
            read_wav(step.value)  # fail before dialling
    auth = None
    if args.user:
        password = os.environ.get("IVR_PASSWORD") or getpass.getpass(f"password of {args.user}: ")
        auth = aiohttp.BasicAuth(args.user, password)
    caller = Caller(args.url, args.to, args.caller_id, sys.stdout, args.settle, args.timeout, auth=auth)
    try:
        result = asyncio.run(caller.run(steps, args.barge_in))
    except aiohttp.ClientError as exc:
        print(f"ivr call: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 1
    if args.out:
        write_wav(args.out, bytes(caller.state.bot_pcm))
    if auth is None:
        print("ivr call: no --user, so the transcript was not fetched", file=sys.stderr)
        return 0 if caller.state.bot_media_frames else 1
    return 0 if result["transcript"] else 1
