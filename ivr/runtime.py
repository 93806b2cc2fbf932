"""Process-wide engines and services shared by all calls.

Loaded once at start-up, before the first call is accepted: Vosk models and
Piper voices for every language and voice the tenants use (a missing model
fails start-up with the command that fixes it, not the first caller), the
storage backend and the dialog client. Inference runs in two bounded thread
pools so that ASR and TTS cannot starve each other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.audio.asr import Recognizer, VoskModels
from ivr.audio.codecs import ASR_RATE
from ivr.audio.playback import PacingStats
from ivr.audio.recognizer_pool import RecognizerPool, line_noise
from ivr.audio.tts import Synthesizer, load_voice, split_sentences
from ivr.dialog.fixed_prompts import fixed_sentences, response_variations
from ivr.dialog.rasa_client import RasaClient
from ivr.models.catalogue import locate
from ivr.queue.acd import Acd
from ivr.queue.announcements import fixed_announcements
from ivr.queue.hold_music import hold_audio
from ivr.session.admission import Admission, AdmissionLimits
from ivr.settings import Settings
from ivr.storage import Storage, open_storage
from ivr.storage.write_behind import WriteBehind

log = logging.getLogger("ivr.runtime")


WORKER_NICENESS = 5
# Warm recognizers and prerendered prompts are made on spare CPU only: at niceness 15 a build gets a tenth of
# what a call's decoding gets of a busy core, so a replacement built while a call starts does not slow that
# call's first turn.
WARM_UP_NICENESS = 15
# What a new recognizer decodes before its first call, in the model's language: speech reaches the graph
# states a caller's first turn needs, where noise warms little more than the silence loop (docs/performance.md).
WARM_UP_SENTENCES = {
    "de": "Guten Tag, ich möchte wissen, wo meine Bestellung ist und wann sie geliefert wird.",
    "en": "Hello, I would like to know where my order is and when it will be delivered.",
}


def _lower_priority(niceness: int = WORKER_NICENESS) -> None:
    """Model inference yields the CPU to the event loop, which paces every call's audio in 20 ms frames.

    On Linux a thread's niceness is its own (setpriority on the thread id);
    elsewhere this is a no-op. Raising niceness needs no privileges.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass


def _worker_pool(threads: int, name: str, niceness: int = WORKER_NICENESS) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=_lower_priority, initargs=(niceness,))


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    dialog: RasaClient
    asr_pool: ThreadPoolExecutor = field(default_factory=lambda: _worker_pool(4, "asr"))
    tts_pool: ThreadPoolExecutor = field(default_factory=lambda: _worker_pool(2, "tts"))
    warm_up_pool: ThreadPoolExecutor = field(default_factory=lambda: _worker_pool(1, "warm-up", WARM_UP_NICENESS))
    vosk: VoskModels = field(default_factory=VoskModels)
    synthesizers: dict[Path, Synthesizer] = field(default_factory=dict)
    recognizer_pools: dict[Path, RecognizerPool] = field(default_factory=dict)  # warm recognizers per Vosk model
    pacing: PacingStats = field(default_factory=PacingStats)
    acd: Acd = field(init=False)  # the agent queue, built from the settings
    sip_health: Callable[[], dict[str, Any]] | None = None  # set when the SIP endpoint runs
    dialog_health: Callable[[], dict[str, Any]] | None = None  # set when `ivr serve` supervises Rasa
    sessions: set[Any] = field(default_factory=set)  # the CallSessions on the line, for shutdown and the ASR backlog
    _located: dict[tuple[str, str], Path] = field(default_factory=dict)
    _prerendering: Future[int] | None = None  # set by `prerender`
    _prerender_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Calls write through this; other readers and writers (agents, reports) use `storage` directly.
        self.write_behind = WriteBehind(self.storage, self.settings.storage.max_pending_writes)
        self.acd = Acd(self.settings.queue, self.write_behind.log_event)
        admission = self.settings.admission
        limits = AdmissionLimits(admission.call_limit(os.cpu_count()), admission.max_loop_lag_ms,
                                 admission.max_asr_backlog_s, admission.starts_per_s, admission.start_burst,
                                 admission.retry_after_s, admission.max_overflow_calls)  # fmt: skip
        # Every transport asks it before taking a call; it is the one count of calls on this machine.
        self.admission = Admission(limits, self._asr_backlog_s)

    @property
    def active_calls(self) -> int:
        """Calls admitted and not yet over (SIP from before its 180, media streams from the upgrade)."""
        return self.admission.active

    def _asr_backlog_s(self) -> float:
        return sum(session.line.asr_backlog_s for session in self.sessions)

    @classmethod
    def create(cls, settings: Settings, dialog_url: str, dialog_token: str | None = None) -> Runtime:
        """`dialog_token`: the token of the `rasa run` that `ivr serve` started (none for an external Rasa)."""
        dialog = RasaClient(dialog_url, settings.dialog.timeout_s, token=dialog_token,
                            turns_per_tenant=settings.dialog.turns_per_tenant)  # fmt: skip
        return cls(settings, open_storage(settings.storage.url), dialog)

    def _locate(self, kind: str, spec: str) -> Path:
        """Model lookups check files on disk: do it once per model, not once per call."""
        if (kind, spec) not in self._located:
            self._located[(kind, spec)] = locate(kind, spec, self.settings.cache_dir)
        return self._located[(kind, spec)]

    def recognizer(self, language: str) -> Recognizer:
        """A call's recognizer; its free-form recognizer comes warm from the model's pool (asr.warm_recognizers)."""
        pool = self.recognizer_pool(language)
        return Recognizer(pool.model, self.asr_pool, pool=pool)

    def recognizer_pool(self, language: str) -> RecognizerPool:
        """The warm recognizers of `language`'s Vosk model (loads it); made and first filled on first use."""
        path = self._locate("vosk", self.settings.models.asr[language])
        if path not in self.recognizer_pools:
            asr = self.settings.asr
            pool = RecognizerPool(self.vosk.get(path), self.warm_up_pool, asr.warm_recognizers,
                                  asr.recognizer_calls, ASR_RATE, lambda: self._warm_up_audio(language))  # fmt: skip
            self.recognizer_pools[path] = pool
            pool.fill()  # in its low-priority thread; the first calls may still find it empty
        return self.recognizer_pools[path]

    def _warm_up_audio(self, language: str) -> bytes:
        """In an ASR thread: a sentence in `language` by a tenant's voice if loaded (preload does), else line noise."""
        voices = [self.settings.voice_for(t) for t in self.settings.tenants.values() if t.language == language]
        paths = [self._located.get(("piper", voice)) for voice in voices]
        synthesizer = next((self.synthesizers[p] for p in paths if p in self.synthesizers), None)
        if synthesizer is None or language not in WARM_UP_SENTENCES:
            return line_noise()
        return synthesizer.synthesize_sentence(WARM_UP_SENTENCES[language], ASR_RATE)

    def synthesizer(self, voice: str) -> Synthesizer:
        return self.synthesizer_at(self._locate("piper", voice))

    def synthesizer_at(self, path: Path) -> Synthesizer:
        if path not in self.synthesizers:
            model = load_voice(path, self.settings.models.onnx_threads)
            self.synthesizers[path] = Synthesizer(
                model, self.tts_pool, self.settings.models.tts_cache_entries, path.name
            )
        return self.synthesizers[path]

    def preload(self) -> None:
        """Load every model the tenants need (raises ModelMissing naming the fix) and the hold music."""
        if self.settings.queue.hold_music:
            hold_audio(self.settings.queue.hold_music, 16000)  # a bad file stops start-up, not the first waiting caller
        for tenant in self.settings.tenants.values():  # speech models first: a missing one is named before a voice
            self.vosk.get(self._locate("vosk", self.settings.models.asr[tenant.language]))
        for tenant in self.settings.tenants.values():
            self.synthesizer(self.settings.voice_for(tenant))  # before the recognizers: the voices speak their warm-up
        for number, tenant in self.settings.tenants.items():
            self.recognizer_pool(tenant.language)
            log.info("tenant.ready", extra={"tenant": number, "language": tenant.language})

    def prerender(self, domain: Path) -> Future[int]:
        """Synthesize every tenant's fixed prompts and queue announcements in the background (after the warm-ups).

        Returns what resolves to the number of sentences rendered. A sentence a caller needs before its turn
        here is synthesized for that caller as before; the prerendered copy then serves the next ones.
        """
        result: Future[int] = Future()
        if not self.settings.models.prerender_prompts:
            result.set_result(0)
            return result
        responses = response_variations(domain)
        work: dict[Path, list[str]] = {}
        for tenant in self.settings.tenants.values():
            path = self._locate("piper", self.settings.voice_for(tenant))
            work.setdefault(path, []).extend(fixed_sentences(responses, tenant, split_sentences))
            work[path].extend(s for text in fixed_announcements(tenant.language) for s in split_sentences(text))
        queue = deque(
            (self.synthesizer_at(path), s) for path, sentences in work.items() for s in dict.fromkeys(sentences)
        )
        self._prerendering = result
        self.warm_up_pool.submit(self._prerender_next, queue, 0, time.monotonic())
        return result

    def _prerender_next(self, queue: deque[tuple[Synthesizer, str]], rendered: int, started: float) -> None:
        """One sentence per task, then the next is queued: a recognizer warm-up asked for meanwhile goes first."""
        if queue:
            synthesizer, sentence = queue.popleft()
            try:
                rendered += synthesizer.prerender(sentence)
            except Exception:  # a text Piper cannot say: its callers get it synthesized (and the same error) later
                log.exception("prompts.prerender_failed", extra={"voice": synthesizer.name})
            try:
                self.warm_up_pool.submit(self._prerender_next, queue, rendered, started)
                return
            except RuntimeError:  # the pool is shut down (the server stops): what is rendered stays
                queue.clear()
        log.info("prompts.prerendered", extra={"sentences": rendered, "seconds": round(time.monotonic() - started, 1),
                                               "kbytes": self.prerendered_bytes // 1024})  # fmt: skip
        self._end_prerender(rendered)

    @property
    def prerendered(self) -> int:
        return sum(s.prerendered for s in self.synthesizers.values())

    @property
    def prerendered_bytes(self) -> int:
        return sum(s.prerendered_bytes for s in self.synthesizers.values())

    def prompt_health(self) -> dict[str, Any]:
        """/healthz: whether the fixed prompts are ready, and how often Piper ran (prerendering included: what
        `synthesized` grows by once prerendering is done is what callers waited for)."""
        voices = self.synthesizers.values()
        return {
            "prerender": "off" if self._prerendering is None else "done" if self._prerendering.done() else "running",
            "prerendered": self.prerendered,
            "prerendered_kbytes": self.prerendered_bytes // 1024,
            "synthesized": sum(s.synthesized for s in voices),
            "cache_hits": sum(s.cache_hits for s in voices),
            "prerendered_hits": sum(s.prerendered_hits for s in voices),
        }

    async def shut_down_calls(self, timeout_s: float) -> None:
        """Stopping: every call ends properly (waiting callers get a callback) within `timeout_s`, else hard."""
        self.admission.shutting_down = True  # from now on every new call is refused (shutting_down)
        sessions = list(self.sessions)
        if not sessions:
            return
        log.info("calls.shutting_down", extra={"calls": len(sessions)})
        done, pending = await asyncio.wait([asyncio.ensure_future(s.shut_down()) for s in sessions], timeout=timeout_s)
        for task in pending:
            task.cancel()
        for session in list(self.sessions):  # what did not finish in time: closed without a goodbye
            await session.close("server_shutdown")

    async def close(self) -> None:
        await self.admission.lag.stop()
        await self.write_behind.close()
        await self.dialog.close()
        await self.storage.close()
        self.asr_pool.shutdown(wait=False, cancel_futures=True)
        self.tts_pool.shutdown(wait=False, cancel_futures=True)
        self.stop_warming_up()

    def stop_warming_up(self) -> None:
        """No more warm recognizers (the idle ones are freed now) or prerendered prompts; prerendering ends with
        what it has made."""
        self.warm_up_pool.shutdown(wait=False, cancel_futures=True)  # the queued next sentence is cancelled
        for pool in self.recognizer_pools.values():
            pool.close()
        self._end_prerender(self.prerendered)

    def _end_prerender(self, rendered: int) -> None:
        """Resolve `prerender`'s future once, from the warm-up thread or from `stop_warming_up`."""
        with self._prerender_lock:
            if self._prerendering is not None and not self._prerendering.done():
                self._prerendering.set_result(rendered)
