from typing import get_args

import numpy as np
import pytest

from ivr.audio.codecs import frame_bytes
from ivr.audio.vad import Endpointer, SpeechAudio, SpeechDiscarded, SpeechEnded, SpeechStarted
from ivr.dialog.payloads import EXPECT
from ivr.settings import VadSettings
from ivr.settings.sections import Expect
from tests.speech import silence, speech

FRAME = frame_bytes(16000)


def run(endpointer: Endpointer, pcm: bytes) -> list:
    events = []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        events += endpointer.process(pcm[i : i + FRAME])
    return events


def test_turn_starts_with_preroll_and_ends_after_hangover():
    settings = VadSettings(hangover_ms=300, pre_roll_ms=200, start_ms=60)
    utterance = speech("Where is my order?")
    events = run(Endpointer(settings), silence(1.0) + utterance + silence(1.0))
    kinds = [type(e) for e in events]
    assert kinds.count(SpeechStarted) == 1 and kinds.count(SpeechEnded) == 1
    start = next(e for e in events if isinstance(e, SpeechStarted))
    assert len(start.audio) >= 200 * 32  # pre-roll of 200 ms at 16 kHz
    assert 800 <= start.stream_ms <= 1200  # onset near the end of the leading second of silence
    end = next(e for e in events if isinstance(e, SpeechEnded))
    utterance_ms = len(utterance) // 32
    assert end.reason == "silence"
    assert utterance_ms * 0.6 <= end.speech_ms <= utterance_ms + 300
    turn_audio = sum(len(e.audio) for e in events if isinstance(e, SpeechAudio)) // 32
    assert turn_audio >= end.speech_ms  # everything from onset to endpoint went to the recognizer


def test_longer_hangover_ends_later():
    # No comma, and hangovers longer than a pause between words: Piper's timing varies from run to
    # run, and a 200 ms hangover could end the turn inside the sentence.
    pcm = silence(0.5) + speech("Hello I need help") + silence(2.0)
    ends = []
    for hangover in (400, 1000):
        events = run(Endpointer(VadSettings(hangover_ms=hangover)), pcm)
        ends.append(next(e for e in events if isinstance(e, SpeechEnded)).stream_ms)
    assert 500 <= ends[1] - ends[0] <= 700


def test_short_burst_is_discarded():
    burst = speech("Hi")[: 16000 * 2 * 120 // 1000]  # 120 ms of voice
    events = run(Endpointer(VadSettings(min_speech_ms=300)), silence(0.5) + burst + silence(1.0))
    assert not any(isinstance(e, SpeechEnded) for e in events)
    assert any(isinstance(e, SpeechDiscarded) for e in events)


def test_max_utterance_cuts_a_caller_who_never_pauses():
    long_speech = b"".join(speech("Please read me every single order I ever placed with you.") for _ in range(3))
    events = run(Endpointer(VadSettings(max_utterance_ms=2000, hangover_ms=1000)), long_speech)
    end = next(e for e in events if isinstance(e, SpeechEnded))
    assert end.reason == "max_length"


def test_silence_and_noise_floor_start_nothing():
    assert run(Endpointer(VadSettings(aggressiveness=3)), silence(2.0)) == []


# ---- the end of speech refined by level; the hangover per expected answer ----------------------------------------
# Synthetic frames with webrtcvad's verdict scripted (as tests/test_wire_limits.py does): the tail of voiced flags
# after the last word is what webrtcvad does on a noisy line, and here it is exactly 6 frames here.


def tone(frames: int, amplitude: float = 8000.0) -> list[bytes]:
    t = np.arange(frames * 320) / 16000
    return [f.tobytes() for f in np.split((amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16), frames)]


def noise(frames: int, amplitude: float = 100.0, seed: int = 0) -> list[bytes]:
    samples = np.random.default_rng(seed).normal(0, amplitude, frames * 320).astype(np.int16)
    return [f.tobytes() for f in np.split(samples, frames)]


def scripted(settings: VadSettings, frames: list[bytes], voiced: list[bool]) -> list[tuple[int, object]]:
    """(frame number, event) for `frames`, webrtcvad saying `voiced` for each."""
    endpointer = Endpointer(settings)
    return feed(endpointer, frames, voiced)


def feed(endpointer: Endpointer, frames: list[bytes], voiced: list[bool]) -> list[tuple[int, object]]:
    verdicts = iter(voiced)
    endpointer.is_speech = lambda frame: next(verdicts)  # type: ignore[method-assign]
    return [(i + 1, e) for i, frame in enumerate(frames) for e in endpointer.process(frame)]


# 1 s of line noise (the floor), 1 s of voice, then noise that webrtcvad still calls speech for 6 frames.
BURST = noise(50) + tone(50) + noise(100, seed=1)
BURST_VOICED = [False] * 50 + [True] * 50 + [True] * 6 + [False] * 94
LAST_WORD = 100  # frame number of the last loud frame


def ended(events: list[tuple[int, object]]) -> list[tuple[int, SpeechEnded]]:
    return [(n, e) for n, e in events if isinstance(e, SpeechEnded)]


def test_hangover_after_the_last_word_ignores_webrtcvads_tail():
    endpointer = Endpointer(VadSettings(hangover_ms=200))
    endpointer.set_hangover(200, after_last_word=True)
    [(frame, end)] = ended(feed(endpointer, BURST, BURST_VOICED))
    assert frame == LAST_WORD + 10  # 200 ms after the tone, not after the 6 voiced noise frames
    assert end.silence_ms == 200 and end.speech_ms == 1000 and end.reason == "silence"


def test_open_hangover_counts_from_webrtcvad_but_reports_the_silence_after_the_last_word():
    [(frame, end)] = ended(scripted(VadSettings(hangover_ms=200), BURST, BURST_VOICED))
    assert frame == LAST_WORD + 6 + 10  # webrtcvad's tail, then the hangover
    assert end.silence_ms == 320  # the line's end of speech (Timing.speech_end) is the tone's end
    assert end.speech_ms == 1000


def test_without_a_level_margin_the_end_is_webrtcvads_last_voiced_frame():
    endpointer = Endpointer(VadSettings(hangover_ms=200, end_energy_db=0))
    endpointer.set_hangover(200, after_last_word=True)
    [(frame, end)] = ended(feed(endpointer, BURST, BURST_VOICED))
    assert frame == LAST_WORD + 16 and end.silence_ms == 200 and end.speech_ms == 1120


def test_a_pause_between_words_shorter_than_the_hangover_does_not_end_the_turn():
    frames = noise(50) + tone(30) + noise(12, seed=1) + tone(30) + noise(60, seed=2)
    voiced = [False] * 50 + [True] * 30 + [True] * 4 + [False] * 8 + [True] * 30 + [True] * 10 + [False] * 50
    endpointer = Endpointer(VadSettings())
    endpointer.set_hangover(300, after_last_word=True)  # the 240 ms pause is shorter
    [(frame, end)] = ended(feed(endpointer, frames, voiced))
    assert frame == 50 + 30 + 12 + 30 + 15
    assert end.speech_ms == (30 + 12 + 30) * 20


def test_quiet_speech_that_webrtcvad_hears_is_not_cut_as_a_tail():
    # A caller far from the microphone: voiced frames barely above the floor for longer than any tail.
    frames = noise(50) + noise(60, amplitude=120, seed=1) + noise(40, seed=2)
    voiced = [False] * 50 + [True] * 60 + [False] * 40
    endpointer = Endpointer(VadSettings())
    endpointer.set_hangover(200, after_last_word=True)
    [(frame, end)] = ended(feed(endpointer, frames, voiced))
    assert frame == 110 + 10 and end.speech_ms == 1200


async def test_the_line_sets_the_hangover_for_what_the_prompt_expects():
    from types import SimpleNamespace

    from ivr.session.line import Line
    from ivr.settings import Settings, Tenant

    async def nothing(*args: object) -> None:
        return None

    vad = VadSettings(hangover_ms=400, hangover_by_expect={"yes_no": 160, "menu": 200})
    settings = Settings(tenants={"+4930111": Tenant(company="A")}, vad=vad)
    sink = SimpleNamespace(sample_rate=8000, send_event=nothing, send_audio=nothing)
    recognizer = SimpleNamespace(set_grammar=lambda phrases: None, release=lambda: None)
    line = Line("c1", sink, 8000, recognizer, None, settings, None, "en", nothing)  # type: ignore[arg-type]
    try:
        assert (line.endpointer.hangover_ms, line.endpointer.after_last_word) == (400, False)
        line.set_grammar("yes_no")
        assert (line.endpointer.hangover_ms, line.endpointer.after_last_word) == (160, True)
        line.set_grammar("digits")  # not listed: the open answer's
        assert (line.endpointer.hangover_ms, line.endpointer.after_last_word) == (400, False)
        line.set_grammar("menu")
        line.set_grammar(None)
        assert (line.endpointer.hangover_ms, line.endpointer.after_last_word) == (400, False)
    finally:
        await line.close()


def test_hangover_per_expectation_is_validated(tmp_path):
    from ivr.errors import ConfigError
    from ivr.settings import load_settings

    path = tmp_path / "ivr.yml"
    path.write_text(
        "vad:\n"
        "  hangover_by_expect:\n"
        "    yes_no: 210\n"
        "    menu: 20\n"
        "    maybe: 200\n"
        "  end_energy_db: 50\n"
        'tenants:\n  "+4930111": {company: A}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value)
    assert f"{path}:3: vad.hangover_by_expect.yes_no: 210 is not a multiple of 20" in text
    assert f"{path}:4: vad.hangover_by_expect.menu: 20 is less than the minimum of 60" in text
    assert f"{path}:2: vad.hangover_by_expect: 'maybe' is not one of ['yes_no', 'digits', 'menu']" in text
    assert f"{path}:6: vad.end_energy_db: 50 is greater than the maximum of 40" in text


def test_hangover_for_an_expectation():
    vad = VadSettings(hangover_ms=300, hangover_by_expect={"yes_no": 200})
    assert [vad.hangover_for(e) for e in (None, "yes_no", "menu", "digits")] == [300, 200, 300, 300]
    assert VadSettings().hangover_by_expect == {"yes_no": 200}  # a menu is an open question
    assert get_args(Expect) == EXPECT  # every kind of answer a reply can expect, and only those
