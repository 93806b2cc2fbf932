"""The storage interface the sessions write through.

It is deliberately small (append-only utterances, call start/end) so that a
backend can write each line as it happens: a crash mid-call loses nothing
already said.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    tenant: str
    company: str
    language: str
    channel: str  # media_stream, browser, text
    dialled: Optional[str] = None
    caller: Optional[str] = None
    started_at: float = 0.0
    ended_at: Optional[float] = None
    end_reason: Optional[str] = None


@dataclass(frozen=True)
class Utterance:
    """One line of a transcript: who said what, when, and how sure we were."""

    call_id: str
    speaker: str  # caller | bot | system
    text: str
    start: float
    end: float
    asr_confidence: Optional[float] = None
    intent: Optional[str] = None
    intent_confidence: Optional[float] = None
    meta: dict[str, Any] = field(default_factory=dict)


class Storage(abc.ABC):
    """What sessions need from storage; every method is safe to call from the event loop."""

    @abc.abstractmethod
    async def start_call(self, call: CallRecord) -> None: ...

    @abc.abstractmethod
    async def add_utterance(self, utterance: Utterance) -> None: ...

    @abc.abstractmethod
    async def end_call(self, call_id: str, ended_at: float, reason: str) -> None: ...

    @abc.abstractmethod
    async def get_call(self, call_id: str) -> Optional[CallRecord]: ...

    @abc.abstractmethod
    async def transcript(self, call_id: str) -> list[Utterance]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
