import pytest

from ivr.audio.codecs import rms
from ivr.audio.tts import load_voice, split_sentences
from ivr.errors import ModelMissing
from tests.speech import synthesizer


def test_sentences_are_split_for_streaming():
    assert split_sentences("Welcome to Acme. How can I help?  Say agent!") == [
        "Welcome to Acme.",
        "How can I help?",
        "Say agent!",
    ]


async def test_stream_yields_each_sentence_at_line_rate():
    synth = synthesizer()
    chunks = [
        c async for c in synth.stream("Welcome to Acme Supplies. You are speaking with an automated assistant.", 8000)
    ]
    assert [c.text for c in chunks] == ["Welcome to Acme Supplies.", "You are speaking with an automated assistant."]
    for chunk in chunks:
        assert chunk.sample_rate == 8000
        assert 0.5 < chunk.duration_s < 5
        assert rms(chunk.pcm) > 500  # real speech, not silence
    assert chunks[1].duration_s > chunks[0].duration_s


def test_repeated_prompts_come_from_the_cache():
    synth = synthesizer()
    first = synth.synthesize_sentence("Please hold the line.", 16000)
    hits = synth.cache_hits
    assert synth.synthesize_sentence("Please hold the line.", 16000) == first
    assert synth.cache_hits == hits + 1
    assert synth.synthesize_sentence("Please hold the line.", 8000) != first  # rate is part of the key


def test_missing_voice_is_reported(tmp_path):
    with pytest.raises(ModelMissing, match="not found"):
        load_voice(tmp_path / "de_DE-nobody.onnx")
