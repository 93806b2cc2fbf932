"""What a waiting caller hears: waits said the way people say them, the callback request understood."""

from __future__ import annotations

import pytest

from ivr.audio.tts import split_sentences
from ivr.errors import ConfigError
from ivr.queue import announcements as say
from ivr.queue.hold_music import hold_audio, load_wav, tone_loop


@pytest.mark.parametrize(
    "seconds, de, en",
    [
        (0, "weniger als eine Minute", "less than a minute"),
        (59, "weniger als eine Minute", "less than a minute"),
        (60, "etwa eine Minute", "about one minute"),
        (61, "etwa 2 Minuten", "about 2 minutes"),
        (600, "etwa 10 Minuten", "about 10 minutes"),
        (601, "etwa 15 Minuten", "about 15 minutes"),  # above ten minutes in steps of five
        (1500, "etwa 25 Minuten", "about 25 minutes"),
    ],
)
def test_wait_is_rounded_up_and_said_naturally(seconds, de, en):
    assert say.wait_phrase(seconds, "de") == de
    assert say.wait_phrase(seconds, "en") == en


def test_position_and_wait():
    assert say.position_and_wait(1, 0, "en") == "You are next in line. The expected waiting time is less than a minute."
    assert say.position_and_wait(3, 400, "de") == (
        "Sie sind an Position 3 in der Warteschlange. Die voraussichtliche Wartezeit beträgt etwa 7 Minuten."
    )
    assert say.position_and_wait(2, None, "en") == "You are number 2 in the queue."


@pytest.mark.parametrize(
    "text, wanted",
    [
        ("rückruf", True),
        ("bitte rufen sie mich zurück", True),  # the German verb splits
        ("ich gehe zurück", False),
        ("ich möchte einen rückruf", True),
        ("können sie mich zurückrufen", True),
        ("call me back please", True),
        ("a callback would be great", True),
        ("i will hold", False),
        ("hallo", False),
    ],
)
def test_callback_request_is_understood(text, wanted):
    assert say.wants_callback(text) is wanted


def test_callback_confirmation_reads_the_number_in_groups():
    assert "4 9 1, 7 0 1, 2 3 4, 5 6" in say.callback_taken("+49170123456", "de")


def test_hold_music_is_a_soft_seamless_loop():
    import numpy as np

    pcm = np.frombuffer(tone_loop(8000), dtype=np.int16)
    assert len(pcm) == 3 * 8000  # four notes of 0.75 s
    assert 0 < np.abs(pcm).max() < 0.2 * 32767  # never louder than speech
    assert abs(int(pcm[0])) < 200 and abs(int(pcm[-1])) < 200  # fades at the seam: no click


def test_hold_music_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "music.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(ConfigError, match="music.wav: cannot read hold music"):
        load_wav(bad, 8000)
    with pytest.raises(ConfigError, match="missing.wav"):
        hold_audio(str(tmp_path / "missing.wav"), 8000)


def test_hold_music_file_is_resampled_to_the_line(tmp_path):
    import wave

    path = tmp_path / "music.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\x10\x00\x10\x00" * 16000)  # 1 s stereo
    pcm = load_wav(path, 8000)
    assert abs(len(pcm) - 2 * 8000) <= 4  # 1 s mono at 8 kHz


@pytest.mark.parametrize("language", ["de", "en"])
def test_what_waiting_callers_hear_is_prerendered_but_their_numbers(language):
    fixed = {s for text in say.fixed_announcements(language) for s in split_sentences(text)}
    for text, naming_a_number in [(say.position_and_wait(3, 200, language), 0), (say.position_and_wait(1, 20, language), 0),
                                  (say.nobody_available(language), 0), (say.welcome(language), 0),
                                  (say.callback_taken("+4930123456", language), 1),
                                  (say.ticket_taken("123456", language), 2)]:  # fmt: skip
        assert len([s for s in split_sentences(text) if s not in fixed]) == naming_a_number, text
    assert split_sentences(say.position_and_wait(6, None, language))[0] not in fixed  # position 6: made when said
