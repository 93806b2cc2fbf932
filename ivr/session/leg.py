"""What a call does with its line: the `Leg` protocol, and the values that pass between line and leg.

The line (ivr/session/line.py) owns the audio: endpointing, recognition,
playback, barge-in mechanics. What the call *does* with what the caller says
is the leg's: the bot leg runs dialog turns, the queue leg announces and
waits, the agent leg connects the caller to a person. The line tells its leg
what happened (speech started, a partial, a final with its timing, a key, a
prompt played out, the end), and the leg answers through the `LineControl` it
was given: say, play, stop, barge in, hang up, hand back, swap the leg.
Switching the call's mode is swapping the leg; a fake line makes each leg
testable without speech models, Rasa or sockets (tests/test_legs.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ivr.audio.playback import Prompt
from ivr.audio.tts import SpeechChunk
from ivr.dialog.payloads import BotReply
from ivr.session.events import HandBack, OutboundEvent

if TYPE_CHECKING:
    from ivr.runtime import Runtime
    from ivr.session.conversation import Conversation
    from ivr.settings import Settings, Tenant


@dataclass(frozen=True)
class Timing:
    """When an utterance ended: monotonic clock of the endpoint decision and of the final ASR result."""

    endpointed_at: float
    hangover_s: float  # silence from the end of speech to the decision (the hangover; less when cut at max length)
    asr_done: float

    @property
    def speech_end(self) -> float:
        return self.endpointed_at - self.hangover_s


@dataclass(frozen=True)
class Heard:
    """One recognized caller utterance (text cut to `limits.max_text_chars`), ready for a leg."""

    text: str
    confidence: float | None
    started: float  # wall clock: when the caller started speaking
    ended: float  # wall clock: when the final result was there
    timing: Timing
    meta: dict[str, Any] = field(default_factory=dict)  # speech_ms, end_reason, words, barge_in, cut_from_chars


@dataclass(frozen=True)
class Latency:
    """A reply's latency marks, from the caller's last word to the reply's first audio."""

    endpoint_ms: int
    asr_ms: int
    dialog_ms: int
    speech_end: float  # monotonic: the caller's last voiced frame

    @classmethod
    def of(cls, timing: Timing, dialog_done: float) -> Latency:
        return cls(
            endpoint_ms=round(timing.hangover_s * 1000),
            asr_ms=round((timing.asr_done - timing.endpointed_at) * 1000),
            dialog_ms=round((dialog_done - timing.asr_done) * 1000),
            speech_end=timing.speech_end,
        )

    def stored(self, first_frame_at: float) -> dict[str, int]:
        """What goes with the bot's line in the transcript, once its first audio frame left."""
        total_ms = round((first_frame_at - self.speech_end) * 1000)
        return {
            "endpoint_ms": self.endpoint_ms,
            "asr_ms": self.asr_ms,
            "dialog_ms": self.dialog_ms,
            "tts_first_audio_ms": round(
                (first_frame_at - self.speech_end) * 1000 - self.endpoint_ms - self.asr_ms - self.dialog_ms
            ),
            "total_ms": total_ms,
        }


@dataclass(frozen=True)
class PromptMeta:
    """What the session keeps with a prompt on the player (audio/playback.py's `Prompt.meta`)."""

    reply: BotReply | None = None  # the dialog reply this prompt speaks
    latency: Latency | None = None
    music: bool = False  # hold music: not a line of the transcript
    queue: bool = False  # an announcement of the agent queue


@dataclass
class CallContext:
    """What every leg of one call shares: who called whom, the transcript, the process's services."""

    call_id: str
    tenant_number: str
    tenant: Tenant
    caller: str | None
    settings: Settings
    conversation: Conversation
    runtime: Runtime  # acd, storage, write_behind (a leg uses nothing else of it)

    @property
    def language(self) -> str:
        return self.tenant.language


class Leg(Protocol):
    """The call's behaviour behind the line. Exactly one leg is attached to a line at a time."""

    def on_speech_started(self) -> bool:
        """The caller started speaking; False: let this utterance go unrecognized (a prompt that forbids barge-in)."""

    async def on_audio(self, pcm16k: bytes) -> None:
        """Every frame of caller audio at 16 kHz, speech or not (the agent hears the caller)."""

    async def on_partial(self, text: str) -> None:
        """The recognizer's hypothesis so far (runs in the ASR worker: return quickly)."""

    async def on_final(self, heard: Heard) -> None:
        """An utterance is recognized (runs in the ASR worker: queue slow work, never wait for the dialog)."""

    async def on_key(self, key: str) -> None:
        """A keypad key (RFC 4733, in-band, or a Media Streams `dtmf` message)."""

    async def on_prompt_done(self, prompt: Prompt) -> None:
        """A prompt played out to the end (cut prompts are not reported)."""

    async def on_close(self, reason: str) -> None:
        """The call ends; cancel timers, leave queues. The line then stops its audio."""


class LineControl(Protocol):
    """What a leg may do with the line: the Line, or tests/test_legs.py's FakeLine."""

    closed: bool
    sample_rate: int  # of the wire: what music and prompts are made for

    @property
    def speaking(self) -> bool: ...
    @property
    def barge_in_allowed(self) -> bool: ...
    @property
    def in_speech(self) -> bool:
        """The endpointer is inside an utterance."""

    @property
    def recognizing(self) -> int:
        """Utterances that ended and wait for their final result."""

    def attach(self, leg: Leg) -> None:
        """Swap the call's leg: from now on the line reports to `leg`."""

    def say(self, text: str, barge_in: bool = True, meta: PromptMeta | None = None) -> Prompt:
        """Synthesize and queue `text`; the bot's transcript line goes out with it."""

    def play(self, label: str, audio: AsyncIterator[SpeechChunk], barge_in: bool, meta: PromptMeta) -> Prompt: ...
    async def send_audio(self, pcm16k: bytes) -> None:
        """Live audio (an agent's voice) to the caller, resampled and framed for the wire."""

    async def stop(self) -> None:
        """Stop whatever plays (announcements, music giving way); not stored as cut, unlike a barge-in."""

    async def barge_in(self, partial: str) -> bool:
        """The caller interrupts: stop, store what was heard, tell the far end to drop its buffer; True if cut."""

    async def event(self, event: OutboundEvent) -> None: ...
    def set_grammar(self, expect: str | None) -> None:
        """The next answer is `expect`: recognize only yes/no or digits, end it after its hangover (None: open)."""

    def spawn(self, coro: Awaitable[Any]) -> Any:
        """A task of the call: cancelled when the call closes; a failure ends the call (internal_error)."""

    async def hang_up(self, reason: str) -> None: ...
    async def hand_back(self, handoff: HandBack) -> None:
        """The call goes back to the telephony side (next TwiML verb, SIP REFER) and ends here."""
