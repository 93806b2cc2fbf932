from ivr.audio.codecs import frame_bytes
from ivr.audio.vad import Endpointer, SpeechAudio, SpeechDiscarded, SpeechEnded, SpeechStarted
from ivr.settings import VadSettings
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
