"""The player against an in-memory sink that records what a transport would send."""

import asyncio
import time

from ivr.audio.playback import Player
from ivr.audio.tts import SpeechChunk


class RecordingSink:
    sample_rate = 8000

    def __init__(self, supports_marks: bool = True):
        self.supports_marks = supports_marks
        self.sent: list[tuple[float, str, object]] = []

    async def send_audio(self, pcm):
        self.sent.append((time.monotonic(), "audio", pcm))

    async def send_mark(self, name):
        self.sent.append((time.monotonic(), "mark", name))

    async def clear(self):
        self.sent.append((time.monotonic(), "clear", None))

    async def send_event(self, event):
        pass

    async def hangup(self, reason):
        pass

    def kinds(self):
        return [kind for _, kind, _ in self.sent]


async def sentences(*items: tuple[str, float]):
    for text, seconds in items:
        await asyncio.sleep(0.01)  # synthesis takes a moment
        yield SpeechChunk(text, b"\x10\x00" * int(8000 * seconds), 8000)


async def test_frames_are_paced_in_real_time_and_followed_by_a_mark():
    sink = RecordingSink()
    finished = []

    async def on_finished(prompt):
        finished.append(prompt)

    player = Player(sink, on_finished)
    prompt = player.play("One. Two.", sentences(("One.", 0.5), ("Two.", 0.5)))
    while "mark" not in sink.kinds():
        await asyncio.sleep(0.02)
    audio = [(t, pcm) for t, kind, pcm in sink.sent if kind == "audio"]
    assert len(audio) == 50 and all(len(pcm) == 320 for _, pcm in audio)
    elapsed = audio[-1][0] - audio[0][0]
    assert 0.85 < elapsed < 1.2  # 50 frames of 20 ms, sent ahead by at most a few frames
    assert player.speaking and not finished  # waiting for the far end to play it
    await player.mark_acknowledged(sink.sent[-1][2])
    assert finished == [prompt] and not player.speaking
    assert player.stats.late_frames == 0
    await player.close()


async def test_barge_in_stops_playback_clears_and_reports_what_was_heard():
    sink = RecordingSink()
    player = Player(sink, lambda p: asyncio.sleep(0))
    text = "Our opening hours are Monday to Friday. On Saturday we open at nine. Sunday is closed."
    player.play(
        text,
        sentences(
            ("Our opening hours are Monday to Friday.", 1.0),
            ("On Saturday we open at nine.", 1.0),
            ("Sunday is closed.", 1.0),
        ),
    )
    queued = player.play("Anything else?", sentences(("Anything else?", 0.5)))
    await asyncio.sleep(1.5)
    cut = await player.stop()
    assert sink.kinds()[-1] == "clear"
    assert len(cut) == 1
    prompt, heard = cut[0]
    assert heard.startswith("Our opening hours are Monday to Friday.")
    assert "Sunday" not in heard
    frames_before = sink.kinds().count("audio")
    await asyncio.sleep(0.3)
    assert sink.kinds().count("audio") == frames_before  # nothing more is sent
    assert not player.speaking and queued.frames_sent == 0
    await player.close()


async def test_without_marks_a_prompt_ends_when_its_audio_would():
    sink = RecordingSink(supports_marks=False)
    done = asyncio.Event()

    async def on_finished(prompt):
        done.set()

    player = Player(sink, on_finished)
    started = time.monotonic()
    player.play("Short.", sentences(("Short.", 0.4)))
    await asyncio.wait_for(done.wait(), 3)
    assert time.monotonic() - started >= 0.38
    await player.close()


async def test_barge_in_follows_the_prompt_the_caller_hears_not_the_one_being_sent():
    """The disclosure's audio is still out there (its mark not back) while the menu is sent: no barge-in yet."""
    sink = RecordingSink()

    async def on_finished(prompt):
        pass

    player = Player(sink, on_finished)
    player.play("Disclosure.", sentences(("Disclosure.", 0.2)), barge_in=False)
    menu = player.play("Menu.", sentences(("Menu.", 1.0)), barge_in=True)
    while player.current is not menu or not menu.frames_sent:
        await asyncio.sleep(0.01)
    assert not player.barge_in_allowed  # the caller still hears the end of the disclosure
    first_mark = next(name for _, kind, name in sink.sent if kind == "mark")
    await player.mark_acknowledged(first_mark)
    assert player.barge_in_allowed  # now the menu
    await player.close()
