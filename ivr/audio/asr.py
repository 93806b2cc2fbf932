"""Streaming speech recognition with Vosk.

One `vosk.Model` per model path is shared by all calls (it is read-only and
hundreds of MB); each call owns a free-form `KaldiRecognizer`, reused across
turns (taken warm from a RecognizerPool and given back after the call), and
one for the grammar of a yes/no or digits turn.
Recognizer work runs in a thread pool: Vosk's C calls release the GIL, so the
event loop keeps its 20 ms pacing while Kaldi decodes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import vosk

from ivr.audio.codecs import ASR_RATE
from ivr.audio.recognizer_pool import Pooled, RecognizerPool, new_recognizer
from ivr.errors import ModelMissing

T = TypeVar("T")

vosk.SetLogLevel(-1)


@dataclass(frozen=True)
class Word:
    word: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True)
class AsrResult:
    """A final result: text, per-word confidences and their mean."""

    text: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0

    @classmethod
    def from_vosk(cls, raw: str) -> AsrResult:
        data = json.loads(raw)
        words = tuple(
            Word(w["word"], float(w.get("conf", 1.0)), float(w.get("start", 0)), float(w.get("end", 0)))
            for w in data.get("result", [])
        )
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        return cls(data.get("text", "").strip(), words, round(confidence, 3))


class VoskModels:
    """Loads each Vosk model once per process; thread-safe."""

    def __init__(self) -> None:
        self._models: dict[Path, vosk.Model] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> vosk.Model:
        path = Path(path).resolve()
        with self._lock:
            if path not in self._models:
                if not (path / "am").is_dir() or not (path / "conf").is_dir():
                    raise ModelMissing(f"{path} is not a Vosk model directory (needs am/ and conf/)")
                self._models[path] = vosk.Model(str(path))
            return self._models[path]


def grammar_json(phrases: Sequence[str]) -> str:
    """The grammar as Vosk takes it: UTF-8 JSON with `[unk]`.

    Not \\u-escaped: Vosk matches the phrases' words against the model's word
    list byte by byte, so an escaped "f\\u00fcnf" is no word of a German model
    and the phrase could never be recognized.
    """
    return json.dumps([*phrases, "[unk]"], ensure_ascii=False)


@dataclass
class Recognizer:
    """One call's recognizer. Calls are serialized by the owning session.

    Building a Kaldi recognizer takes tens of milliseconds (more with a
    grammar), so it never happens on the event loop, where it would stall
    every call's 20 ms audio clock: the constructor, `set_grammar` and `reset`
    only record what is wanted, and the worker thread that next feeds audio
    builds or resets the recognizer first. The free-form recognizer comes warm
    from `pool` when there is one (a new one decodes its first utterance
    slowly, see ivr/audio/recognizer_pool.py) and goes back to it on
    `release`; a grammar turn uses a second recognizer, so it does not throw
    the warm one away.
    """

    model: vosk.Model
    executor: Executor | None = None
    sample_rate: int = ASR_RATE
    pool: RecognizerPool | None = None
    _free: Pooled | None = field(init=False, default=None)
    _with_grammar: vosk.KaldiRecognizer | None = field(init=False, default=None)
    _grammar: tuple[str, ...] | None = field(init=False, default=None)  # what _with_grammar was built with
    _current: vosk.KaldiRecognizer | None = field(init=False, default=None)  # the one fed last
    _wanted: tuple[str, ...] | None = field(init=False, default=None)
    _reset: bool = field(init=False, default=False)
    _released: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)  # a released call's job may still run

    def __post_init__(self) -> None:
        # Taken at call start, not at the first words: the replacement is then built while the greeting plays.
        self._free = self.pool.take() if self.pool else None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _ready(self) -> vosk.KaldiRecognizer:
        """In the worker thread: the recognizer for the wanted grammar, reset if asked or just switched to."""
        wanted = self._wanted
        fresh = False
        rec: vosk.KaldiRecognizer
        if wanted is None:
            if self._free is None:  # the pool was empty (or there is none): a cold one
                self._free = Pooled(new_recognizer(self.model, self.sample_rate))
            rec = self._free.rec
        else:
            if self._with_grammar is None or wanted != self._grammar:
                self._with_grammar = vosk.KaldiRecognizer(self.model, self.sample_rate, grammar_json(wanted))
                self._with_grammar.SetWords(True)
                self._grammar = wanted
                fresh = True
            rec = self._with_grammar
        switched = rec is not self._current  # the other one may hold audio of a turn that was switched away from
        if (switched or self._reset) and not fresh:
            rec.Reset()
        self._current, self._reset = rec, False
        return rec

    async def accept(self, pcm: bytes) -> str:
        """Feed audio; returns the current partial hypothesis."""
        return await self._run(self._accept_sync, pcm)

    def _accept_sync(self, pcm: bytes) -> str:
        with self._lock:
            if self._released:
                return ""
            rec = self._ready()
            rec.AcceptWaveform(pcm)
            return str(json.loads(rec.PartialResult()).get("partial", ""))

    async def finish(self) -> AsrResult:
        """End of turn: the final result; the recognizer is ready for the next turn."""
        return AsrResult.from_vosk(await self._run(self._finish_sync))

    def _finish_sync(self) -> str:
        with self._lock:
            return "{}" if self._released else str(self._ready().FinalResult())

    def reset(self) -> None:
        """Forget what was heard (done before the next audio, in the worker thread)."""
        self._reset = True

    def set_grammar(self, phrases: Sequence[str] | None) -> None:
        """Restrict recognition to `phrases` (Vosk grammar mode); None lifts it.

        `[unk]` is always allowed so out-of-grammar speech is reported as such
        instead of being forced onto the nearest phrase. Takes effect from the
        next audio on.
        """
        self._wanted = tuple(phrases) if phrases else None

    def release(self) -> None:
        """The call is over: the free-form recognizer goes back to the pool, cleared of the call's audio.

        Never waits: the clearing is queued on the executor behind whatever job
        of this call still runs there, and later jobs of the call do nothing.
        """
        if self.pool is None or self._released:
            self._released = True
            return
        self._released = True
        try:
            (self.executor or self.pool.executor).submit(self._release_sync)
        except RuntimeError:  # the executor is shut down: the process is stopping
            pass

    def _release_sync(self) -> None:
        with self._lock:
            free, self._free, self._with_grammar, self._current = self._free, None, None, None
        if free is not None and self.pool is not None:
            free.rec.FinalResult()
            free.rec.Reset()
            self.pool.give_back(free)
