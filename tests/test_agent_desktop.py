"""The agent desktop end to end: a caller handed off by the bot reaches an agent in headless Chromium.

The caller is a Python client on /phone/ws speaking the browser softphone's
protocol (16 kHz PCM16 in 20 ms frames, paced in real time, marks echoed when
the audio has "played"); it presses 0 after the greeting to ask for a person.
The agents log in to /agent in Chromium, whose fake microphone plays speech
synthesized with the Piper voice. Checked: the call pop (caller, company,
reason, bot transcript), audio both ways, hang-up, the wrap-up in the database
with the queue events of the call, ring-timeout to the next agent, and a lost
agent putting the caller back in the queue.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests import chromium
from tests.agents import PASSWORDS

pytestmark = chromium.REQUIRED

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

DE = "+4930123456"
COMPANY = "Muster Versand GmbH"
CALLER_NUMBER = "+4915112345678"
RATE = 16000
FRAME = 640  # 20 ms of 16 kHz PCM16
AGENT_SAYS = "Hello, this is Anna from Muster Versand. How can I help you today?"


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def max_window_rms(pcm: bytes, window: int = 3200) -> float:
    """The loudest 200 ms of `pcm` (speech has pauses: an average would hide it)."""
    return max(
        (rms(pcm[i : i + 2 * window]) for i in range(0, max(len(pcm) - 2 * window, 0) + 1, 2 * window)), default=0.0
    )


def tone(seconds: float, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


# ---- the caller ------------------------------------------------------------------------


class PhoneCaller:
    """A caller on /phone/ws in a thread of its own, so it keeps streaming while Selenium blocks the test."""

    def __init__(self, ws_url: str, to: str = DE, caller: str = CALLER_NUMBER):
        self.url = f"{ws_url}/phone/ws"
        self.to, self.caller = to, caller
        self.events: list[dict[str, Any]] = []
        self.audio: list[tuple[float, bytes]] = []  # (monotonic time, frame) of everything the caller heard
        self.marks_acked = 0
        self.agent_connected_at: float | None = None
        self.hangup: str | None = None
        self.closed = threading.Event()
        self._outgoing: deque[bytes] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task] = []

    def __enter__(self) -> PhoneCaller:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._call(self._stop(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _call(self, coro, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        await self._ws.send_json({"event": "start", "to": self.to, "from": self.caller, "sampleRate": RATE})
        self._playout_end = 0.0
        self._tasks = [asyncio.create_task(self._send_frames()), asyncio.create_task(self._receive())]

    async def _stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json({"event": "stop"})
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await self._session.close()

    async def _send_frames(self) -> None:
        """20 ms frames on an absolute clock, silence when there is nothing to say (a phone line never pauses)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._ws.closed:
            frame = self._outgoing.popleft() if self._outgoing else b"\0" * FRAME
            try:
                await self._ws.send_bytes(frame)
            except ConnectionResetError:
                return
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for msg in self._ws:
                now = loop.time()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.audio.append((time.monotonic(), msg.data))
                    self._playout_end = max(self._playout_end, now) + len(msg.data) / 2 / RATE
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    self.events.append(event)
                    if event.get("event") == "mark":  # acknowledged when the audio before it has played
                        loop.call_at(max(now, self._playout_end), self._ack, event.get("name"))
                    elif event.get("event") == "agent" and event.get("state") == "connected":
                        self.agent_connected_at = time.monotonic()
                    elif event.get("event") == "hangup":
                        self.hangup = str(event.get("reason"))
        finally:
            self.closed.set()

    def _ack(self, name: Any) -> None:
        if self._ws is not None and not self._ws.closed:
            self.marks_acked += 1
            self._tasks.append(asyncio.ensure_future(self._ws.send_json({"event": "mark", "name": name})))

    # ---- what the test does --------------------------------------------------------

    def dtmf(self, digit: str) -> None:
        self._call(self._ws.send_json({"event": "dtmf", "digit": digit}))

    def say(self, pcm: bytes) -> None:
        frames = [pcm[i : i + FRAME].ljust(FRAME, b"\0") for i in range(0, len(pcm), FRAME)]
        self._loop.call_soon_threadsafe(self._outgoing.extend, frames)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"caller: {what} not within {timeout}s; events: {self.events[-12:]}")
            time.sleep(0.05)

    def heard_since(self, t: float) -> bytes:
        return b"".join(frame for at, frame in list(self.audio) if at >= t)

    def bot_lines(self) -> list[str]:
        return [e.get("text", "") for e in self.events if e.get("event") == "transcript" and e.get("speaker") == "bot"]


def ask_for_a_person(caller: PhoneCaller) -> None:
    """Key 0 once the greeting has played (its mark acknowledged)."""
    caller.wait(lambda: caller.marks_acked >= 1, 30, "the greeting")
    time.sleep(0.3)
    caller.dtmf("0")


# ---- the agents' browsers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's fake microphone: a spoken sentence with short pauses (Chromium loops the file)."""
    from tests.speech import silence, speech

    path = tmp_path_factory.mktemp("agent-mic") / "agent.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(silence(0.2) + speech(AGENT_SAYS) + silence(0.3))
    return path


@pytest.fixture
def browsers(agent_mic: Path, tmp_path: Path):
    """`open(username)`: a Chromium logged in to the desktop as that user; all are closed at the end."""
    drivers: list[Any] = []

    def open_desktop(username: str, url: str):
        driver = chromium.start(agent_mic, tmp_path / f"profile-{username}", window="1300,1000")
        drivers.append(driver)
        driver.get(f"{url}/agent")
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "username").is_displayed())
        driver.find_element(By.ID, "username").send_keys(username)
        driver.find_element(By.ID, "password").send_keys(PASSWORDS[username])
        driver.find_element(By.ID, "login").click()
        until_state(driver, "offline", 15)
        return driver

    yield open_desktop
    for driver in drivers:
        chromium.stop(driver)


def body(driver, name: str) -> str | None:
    return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")


def until_state(driver, state: str, timeout: float) -> None:
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: body(d, "state") == state)
    except Exception as exc:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(f"desktop state {body(driver, 'state')!r}, wanted {state!r}; error={error!r}") from exc


def set_status(driver, state: str) -> None:
    Select(driver.find_element(By.ID, "status")).select_by_value(state)
    until_state(driver, state, 10)


def stats(driver) -> dict[str, float]:
    return driver.execute_script("return Object.assign({}, window.ivrStats);")


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wrap_up(driver, disposition: str, notes: str) -> None:
    until_state(driver, "wrap_up", 10)
    Select(driver.find_element(By.ID, "disposition")).select_by_value(disposition)
    driver.find_element(By.ID, "notes").send_keys(notes)
    driver.find_element(By.ID, "wrapup-submit").click()
    until_state(driver, "available", 10)
    assert body(driver, "call") is None


def db_rows(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def events_of(db: Path, call_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db_rows(db, "SELECT event, data FROM call_events WHERE call_id = ? ORDER BY ts, id", call_id)
    return [(r["event"], json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]) for r in rows]


# ---- the tests ----------------------------------------------------------------------------


def until_played(caller: PhoneCaller, what: str) -> None:
    """Wait for a bot line containing `what`, and for every prompt so far to have played (marks echoed)."""
    caller.wait(lambda: any(what in t for t in caller.bot_lines()), 30, f"a bot line with {what!r}")
    caller.wait(lambda: caller.marks_acked >= len(caller.bot_lines()), 30, "the prompts to play")


def test_a_handed_off_caller_talks_to_an_agent_in_the_browser(ivr_server, browsers) -> None:
    anna = browsers("anna", ivr_server.url)
    set_status(anna, "available")
    with PhoneCaller(ivr_server.ws_url) as caller:
        # First the bot does something (an order status by keypad), so the agent gets collected data.
        until_played(caller, COMPANY)
        caller.dtmf("2")
        until_played(caller, "Bestellnummer")
        for key in "271828#":
            caller.dtmf(key)
        until_played(caller, "unterwegs")
        caller.dtmf("0")
        until_state(anna, "ringing", 30)
        call_id = body(anna, "call")
        assert call_id and call_id.startswith("web-")
        # The call pop: who, for whom, why, and what the bot already heard.
        WebDriverWait(anna, 5).until(lambda d: text(d, "caller"))
        assert text(anna, "caller") == CALLER_NUMBER
        assert text(anna, "company") == COMPANY
        assert "dtmf_agent" in text(anna, "reason")
        assert text(anna, "summary").startswith("Pressed 0 for a person")
        transcript = text(anna, "transcript")
        assert COMPANY in transcript and "[DTMF 271828#]" in transcript and "[DTMF 0]" in transcript, transcript
        assert "271828" in text(anna, "slots")  # what the bot collected
        assert "request_human" in text(anna, "intents")
        assert text(anna, "countdown").endswith("s")
        anna.save_screenshot("/tmp/agent-offer.png")

        anna.find_element(By.ID, "accept").click()
        until_state(anna, "on_call", 10)
        caller.wait(lambda: caller.agent_connected_at is not None, 10, "the agent")

        # Caller → agent: the caller's tone makes the page's received level rise.
        before = stats(anna)
        assert before["rxRms"] < 500, before  # the caller was silent so far
        caller.say(tone(2.0))
        WebDriverWait(anna, 10, poll_frequency=0.2).until(lambda d: stats(d)["rxRms"] > 3000)
        assert stats(anna)["rxFrames"] > before["rxFrames"]

        # Agent → caller: once the page streams its microphone, the caller hears the agent's speech
        # (hold music and announcements stopped at the connect, long before).
        WebDriverWait(anna, 10, poll_frequency=0.2).until(lambda d: stats(d)["txFrames"] > 50)
        since = time.monotonic()
        caller.wait(lambda: max_window_rms(caller.heard_since(since)) > 500, 15, "the agent's voice")
        assert caller.agent_connected_at < since - 1.0
        anna.save_screenshot("/tmp/agent-call.png")

        anna.find_element(By.ID, "hangup").click()
        caller.wait(lambda: caller.closed.is_set(), 10, "the end of the call")
        wrap_up(anna, "resolved", "Caller tested the line.")

    [row] = db_rows(ivr_server.db, "SELECT * FROM wrapups WHERE call_id = ?", call_id)
    assert (row["tenant"], row["agent"], row["disposition"], row["notes"]) == (
        DE,
        "anna",
        "resolved",
        "Caller tested the line.",
    )
    assert row["handoff_id"]
    events = events_of(ivr_server.db, call_id)
    verbs = [e for e, _ in events]
    for verb in ("HANDOFF", "ENTERQUEUE", "CONNECT", "COMPLETEAGENT", "WRAPUP"):
        assert verb in verbs, verbs
    assert verbs.index("ENTERQUEUE") < verbs.index("CONNECT") < verbs.index("COMPLETEAGENT") < verbs.index("WRAPUP")
    assert dict(events)["CONNECT"]["agent"] == "anna"
    assert dict(events)["WRAPUP"] == {"agent": "anna", "disposition": "resolved"}  # never the notes
    [call] = db_rows(ivr_server.db, "SELECT end_reason FROM calls WHERE call_id = ?", call_id)
    assert call["end_reason"] == "agent_hangup"
    # The caller's line was told why it ended before it closed.
    assert caller.hangup == "agent_hangup", caller.events[-5:]


def test_an_unanswered_offer_moves_on_and_a_lost_agent_puts_the_caller_back(ivr_server, browsers) -> None:
    anna = browsers("anna", ivr_server.url)
    set_status(anna, "available")  # idle longest: offered first
    ben = browsers("ben", ivr_server.url)
    set_status(ben, "available")
    with PhoneCaller(ivr_server.ws_url) as caller:
        ask_for_a_person(caller)
        until_state(anna, "ringing", 30)
        call_id = body(anna, "call")
        rang_at = time.monotonic()
        assert body(ben, "state") == "available"

        # Anna does not answer: after the ring timeout (6 s in the test settings) Ben's phone rings.
        until_state(ben, "ringing", 12)
        assert time.monotonic() - rang_at > 5.0
        assert body(ben, "call") == call_id
        until_state(anna, "not_responding", 5)
        assert body(anna, "call") is None
        ben.find_element(By.ID, "accept").click()
        until_state(ben, "on_call", 10)
        caller.wait(lambda: caller.agent_connected_at is not None, 10, "Ben")

        # Ben's browser goes away mid-call: the caller waits again, first in line, and is told so.
        lines_before = len(caller.bot_lines())
        ben.quit()
        caller.wait(
            lambda: any("unterbrochen" in t for t in caller.bot_lines()[lines_before:]), 15, "the reconnect notice"
        )
        assert not caller.closed.is_set()

        # Anna is back: the caller rings her again at once (so "available" may never be seen).
        Select(anna.find_element(By.ID, "status")).select_by_value("available")
        until_state(anna, "ringing", 10)
        assert body(anna, "call") == call_id
        anna.find_element(By.ID, "accept").click()
        until_state(anna, "on_call", 10)
        anna.find_element(By.ID, "hangup").click()
        caller.wait(lambda: caller.closed.is_set(), 10, "the end of the call")
        wrap_up(anna, "follow_up", "Call dropped once on the agent side.")

    events = events_of(ivr_server.db, call_id)
    queue = [
        (e, d.get("agent"))
        for e, d in events
        if e in ("ENTERQUEUE", "RINGNOANSWER", "CONNECT", "AGENTDUMP", "COMPLETEAGENT")
    ]
    assert queue == [
        ("ENTERQUEUE", None),
        ("RINGNOANSWER", "anna"),
        ("CONNECT", "ben"),
        ("AGENTDUMP", "ben"),
        ("CONNECT", "anna"),
        ("COMPLETEAGENT", "anna"),
    ], queue
    [row] = db_rows(ivr_server.db, "SELECT agent, disposition FROM wrapups WHERE call_id = ?", call_id)
    assert tuple(row) == ("anna", "follow_up")
