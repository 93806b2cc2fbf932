"""Warm free-form Kaldi recognizers, ready before a call needs one (issue 18: no cold start).

A new `KaldiRecognizer` of a lookahead model (HCLr.fst + Gr.fst, as the Vosk
models are) expands the decoding graph lazily and caches the expanded states
in the recognizer itself: its first utterance costs about 1-2 s of CPU more
than later ones, which a caller heard as a first answer 1.4-2.3 s late
(docs/performance.md, "First turn of a call"). So recognizers are built and
fed some audio ahead of time in a worker thread, never on the event loop,
and a call takes one when it starts. After the call it comes back (its states
stay expanded: the warmest recognizer there is) until it has served
`max_calls` calls; then it is dropped, because the expanded states only ever
grow. The pool refills in the background on its executor, which the runtime
runs at a low priority (ivr/runtime.py, WARM_UP_NICENESS): a build competing
with the calls' decoding made their first turns slower than no pool at all
(bench/asr_first_turn.py). Every method is thread-safe and none blocks.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import vosk

from ivr.audio.codecs import ASR_RATE

log = logging.getLogger("ivr.asr")

CHUNK_S = 0.1  # warm-up audio is fed as a call feeds it: in small chunks, with partial results


def line_noise(seconds: float = 1.0, rate: int = ASR_RATE, level: int = 300, seed: int = 18) -> bytes:
    """Low-level white noise (PCM16, about -40 dBFS): the warm-up audio when no speech is at hand."""
    draw = random.Random(seed)
    return struct.pack(f"<{int(seconds * rate)}h", *(int(draw.gauss(0, level)) for _ in range(int(seconds * rate))))


@dataclass
class Pooled:
    """A free-form recognizer and the number of calls it has served."""

    rec: vosk.KaldiRecognizer
    calls: int = 0


def new_recognizer(model: vosk.Model, sample_rate: int = ASR_RATE) -> vosk.KaldiRecognizer:
    """A free-form recognizer as every call uses it (words with confidences)."""
    rec = vosk.KaldiRecognizer(model, sample_rate)
    rec.SetWords(True)
    return rec


def warm_up(rec: vosk.KaldiRecognizer, pcm: bytes, sample_rate: int = ASR_RATE) -> None:
    """Decode `pcm` and forget it: the graph states it reached stay expanded, the words do not stay."""
    step = int(CHUNK_S * sample_rate) * 2
    for i in range(0, len(pcm), step):
        rec.AcceptWaveform(pcm[i : i + step])
        rec.PartialResult()
    rec.FinalResult()
    rec.Reset()


class RecognizerPool:
    """`size` warm free-form recognizers of one Vosk model, ready for the next calls.

    `warm_audio` is called once, in a worker thread, for the audio every new
    recognizer decodes before it is handed out (default: 1 s of line noise;
    the runtime passes a sentence in the model's language, which warms the
    states that speech reaches). `size` 0 disables the pool: `take` returns
    None and the caller builds a cold recognizer as before.
    """

    def __init__(
        self,
        model: vosk.Model,
        executor: Executor,
        size: int,
        max_calls: int = 8,
        sample_rate: int = ASR_RATE,
        warm_audio: Callable[[], bytes] = line_noise,
    ) -> None:
        self.model = model
        self.executor = executor
        self.size = size
        self.max_calls = max_calls
        self.sample_rate = sample_rate
        self._warm_audio = warm_audio
        self._audio: bytes | None = None
        self._idle: deque[Pooled] = deque()
        self._building = 0
        self._lock = threading.Lock()
        self.stats = {"built": 0, "taken": 0, "missed": 0, "returned": 0, "retired": 0, "failed": 0}

    @property
    def idle(self) -> int:
        """Warm recognizers waiting for a call."""
        return len(self._idle)

    def fill(self) -> None:
        """Start building recognizers (in the executor) until `size` are idle or on their way."""
        with self._lock:
            wanted = self.size - len(self._idle) - self._building
            self._building += max(0, wanted)
        for _ in range(wanted):
            try:
                self.executor.submit(self._build)
            except RuntimeError:  # the executor is shut down: the process is stopping
                with self._lock:
                    self._building -= 1

    def take(self) -> Pooled | None:
        """A warm recognizer, or None when none is ready (never waits); a replacement is started."""
        if self.size == 0:
            return None
        with self._lock:
            pooled = self._idle.popleft() if self._idle else None
            self.stats["taken" if pooled else "missed"] += 1
        self.fill()
        return pooled

    def give_back(self, pooled: Pooled) -> None:
        """A call is over with `pooled` (finalized and reset by the caller): keep it unless it has served enough.

        Up to twice `size` are kept idle, and the returned ones are handed out
        first: they are the warmest, and while `size` or more are idle nothing
        is built, so calls that come and go reuse recognizers instead of
        costing a build each.
        """
        pooled.calls += 1
        with self._lock:
            keep = self.size > 0 and pooled.calls < self.max_calls and len(self._idle) < 2 * self.size
            if keep:
                self._idle.appendleft(pooled)
                self.stats["returned"] += 1
            else:
                self.stats["retired"] += 1
        if not keep:
            self.fill()

    def close(self) -> None:
        """The runtime stops: free the idle recognizers now and build or keep no more.

        Kaldi's memory is invisible to Python's garbage collector, which frees a
        runtime's reference cycles only on a full collection; waiting for that,
        every closed runtime kept its recognizers (tests start dozens).
        """
        with self._lock:
            self.size = 0
            self._idle.clear()
            self._audio = None
            self._warm_audio = line_noise  # the runtime's callback: no reference back to it

    def _build(self) -> None:
        """In a worker thread: build one recognizer, warm it up, make it available."""
        try:
            if self._audio is None:
                self._audio = self._warm_audio()
            rec = new_recognizer(self.model, self.sample_rate)
            warm_up(rec, self._audio, self.sample_rate)
        except Exception:  # a failed build leaves the pool one short; the next take() tries again
            log.exception("asr.warm_failed")
            with self._lock:
                self._building -= 1
                self.stats["failed"] += 1
            return
        with self._lock:
            self._building -= 1
            self.stats["built"] += 1
            if self.size > 0:  # not closed meanwhile
                self._idle.append(Pooled(rec))
