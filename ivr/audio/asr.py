"""Streaming speech recognition with Vosk.

One `vosk.Model` per model path is shared by all calls (it is read-only and
hundreds of MB); each call owns one `KaldiRecognizer`, reused across turns.
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


@dataclass
class Recognizer:
    """One call's recognizer. Calls are serialized by the owning session.

    Building a Kaldi recognizer takes tens of milliseconds (more with a
    grammar), so it never happens on the event loop, where it would stall
    every call's 20 ms audio clock: the constructor, `set_grammar` and `reset`
    only record what is wanted, and the worker thread that next feeds audio
    builds or resets the recognizer first.
    """

    model: vosk.Model
    executor: Executor | None = None
    sample_rate: int = ASR_RATE
    _rec: vosk.KaldiRecognizer | None = field(init=False, default=None)
    _grammar: tuple[str, ...] | None = field(init=False, default=None)  # what _rec was built with
    _wanted: tuple[str, ...] | None = field(init=False, default=None)
    _reset: bool = field(init=False, default=False)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _ready(self) -> vosk.KaldiRecognizer:
        """In the worker thread: the recognizer for the wanted grammar, reset if asked."""
        wanted = self._wanted
        if self._rec is None or wanted != self._grammar:
            if wanted is None:
                self._rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
            else:
                self._rec = vosk.KaldiRecognizer(self.model, self.sample_rate, json.dumps([*wanted, "[unk]"]))
            self._rec.SetWords(True)
            self._grammar = wanted
            self._reset = False
        elif self._reset:
            self._rec.Reset()
            self._reset = False
        return self._rec

    async def accept(self, pcm: bytes) -> str:
        """Feed audio; returns the current partial hypothesis."""
        return await self._run(self._accept_sync, pcm)

    def _accept_sync(self, pcm: bytes) -> str:
        rec = self._ready()
        rec.AcceptWaveform(pcm)
        return json.loads(rec.PartialResult()).get("partial", "")

    async def finish(self) -> AsrResult:
        """End of turn: the final result; the recognizer is ready for the next turn."""
        return AsrResult.from_vosk(await self._run(lambda: self._ready().FinalResult()))

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
