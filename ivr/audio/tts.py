"""Speech synthesis with Piper, streamed sentence by sentence.

Piper's ONNX session is limited to `onnx_threads` threads so that two cores
serve many calls instead of one call grabbing both. Sentences are synthesized
one at a time in a thread pool: the first sentence plays while the next is
being made. Repeating prompts (greetings, reprompts) hit an LRU cache; the
fixed prompts of every tenant are rendered once at start-up (`prerender`) and
kept apart from it, so dynamic replies never push them out.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig

from ivr.audio.codecs import resample
from ivr.errors import ModelMissing

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
# Prerendered prompts are kept at 16 kHz: telephony (8 kHz) and the browser (16 kHz) are made from it by
# resampling (about a millisecond per sentence), at a third of the memory of Piper's 22.05 kHz.
PRERENDER_RATE = 16000


def split_sentences(text: str) -> list[str]:
    """Sentences to synthesize one by one (Piper also splits, but we need the text of each)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def load_voice(model_path: Path, onnx_threads: int = 1) -> PiperVoice:
    """A Piper voice whose ONNX session uses a bounded number of threads."""
    model_path = Path(model_path)
    config_path = Path(f"{model_path}.json")
    if not model_path.is_file() or not config_path.is_file():
        raise ModelMissing(f"Piper voice {model_path} (and {config_path.name}) not found")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = onnx_threads
    options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


@dataclass(frozen=True)
class SpeechChunk:
    """One synthesized sentence at the requested rate."""

    text: str
    pcm: bytes
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class Synthesizer:
    """Text → PCM16 at any rate, one sentence at a time, with a prompt cache."""

    def __init__(self, voice: PiperVoice, executor: Executor | None = None, cache_entries: int = 256, name: str = ""):
        self.voice = voice
        self.name = name  # the voice's file name, for logs
        self.executor = executor
        self.cache_entries = cache_entries
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cache_lock = threading.Lock()  # the cache is shared by the pool's threads
        self._prerendered: dict[str, bytes] = {}  # sentence → PCM16 at PRERENDER_RATE; written by `prerender`
        self.cache_hits = 0
        self.prerendered_hits = 0
        self.synthesized = 0  # sentences Piper made: for `prerender`, or while a caller waited

    @property
    def native_rate(self) -> int:
        return self.voice.config.sample_rate

    def synthesize_sentence(self, sentence: str, rate: int) -> bytes:
        """Blocking: one sentence to PCM16 at `rate` (cached)."""
        key = (sentence, rate)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return cached
        prerendered = self._prerendered.get(sentence)
        if prerendered is not None:
            self.prerendered_hits += 1
            pcm = resample(prerendered, PRERENDER_RATE, rate)
        else:
            pcm = resample(self._synthesize(sentence), self.native_rate, rate)
        if self.cache_entries:
            with self._cache_lock:
                self._cache[key] = pcm
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        return pcm

    def _synthesize(self, sentence: str) -> bytes:
        """Blocking: Piper, at the voice's own rate. ONNX Runtime sessions may run from several threads at once."""
        self.synthesized += 1
        parts = [chunk.audio_int16_array for chunk in self.voice.synthesize(sentence)]
        return np.concatenate(parts).astype(np.int16).tobytes() if parts else b""

    def prerender(self, sentence: str) -> bool:
        """Blocking: render one sentence (as `split_sentences` cuts them) for later; False if it already was."""
        if sentence in self._prerendered:
            return False
        self._prerendered[sentence] = resample(self._synthesize(sentence), self.native_rate, PRERENDER_RATE)
        return True

    @property
    def prerendered(self) -> int:
        """Sentences rendered ahead of their first use."""
        return len(self._prerendered)

    @property
    def prerendered_bytes(self) -> int:
        return sum(map(len, self._prerendered.values()))

    async def stream(self, text: str, rate: int) -> AsyncIterator[SpeechChunk]:
        """Yield sentences as soon as each is synthesized (off the event loop)."""
        loop = asyncio.get_running_loop()
        for sentence in split_sentences(text):
            pcm = await loop.run_in_executor(self.executor, self.synthesize_sentence, sentence, rate)
            yield SpeechChunk(sentence, pcm, rate)
