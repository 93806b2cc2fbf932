"""Endpointing with webrtcvad: decides when a caller's turn starts and ends.

Pre-roll keeps the audio just before onset (webrtcvad reacts a few frames
late, and Vosk needs the first phoneme); the hangover is the silence that ends a
turn; bursts shorter than `min_speech_ms` are noise; `max_utterance_ms` cuts a
caller who never pauses so the dialog still gets a turn.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import webrtcvad

from ivr.audio.codecs import FRAME_MS, frame_bytes
from ivr.settings import VadSettings


@dataclass(frozen=True)
class SpeechStarted:
    """Onset detected; `audio` is the pre-roll plus the voiced frames that triggered it."""

    audio: bytes
    stream_ms: int


@dataclass(frozen=True)
class SpeechAudio:
    """A frame inside a turn (voiced, or silence within the hangover)."""

    audio: bytes


@dataclass(frozen=True)
class SpeechEnded:
    """End of turn. `speech_ms` is onset to last voiced frame; `reason` is silence or max_length."""

    speech_ms: int
    stream_ms: int
    reason: str


@dataclass(frozen=True)
class SpeechDiscarded:
    """A burst that was too short to be a turn (a cough, a click)."""

    speech_ms: int


VadEvent = SpeechStarted | SpeechAudio | SpeechEnded | SpeechDiscarded


class Endpointer:
    """Feed it 20 ms PCM16 frames; it returns turn events."""

    def __init__(self, settings: VadSettings, sample_rate: int = 16000):
        self.settings = settings
        self.sample_rate = sample_rate
        self.frame_size = frame_bytes(sample_rate)
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        self._start_frames = settings.start_ms // FRAME_MS
        self._hangover_frames = settings.hangover_ms // FRAME_MS
        self._max_frames = settings.max_utterance_ms // FRAME_MS
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(settings.pre_roll_ms // FRAME_MS, self._start_frames)
        )
        self._frames_seen = 0
        self.reset()

    def reset(self) -> None:
        """Forget any turn in progress (used when a prompt must not be barged into)."""
        self.in_speech = False
        self._voiced_run = 0
        self._silence_run = 0
        self._turn_frames = 0
        self._preroll.clear()

    def is_speech(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame, self.sample_rate)

    def process(self, frame: bytes) -> list[VadEvent]:
        if len(frame) != self.frame_size:
            raise ValueError(f"endpointer needs {self.frame_size}-byte frames, got {len(frame)}")
        self._frames_seen += 1
        voiced = self.is_speech(frame)
        if not self.in_speech:
            self._preroll.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= self._start_frames:
                self.in_speech = True
                self._turn_frames = self._voiced_run
                self._silence_run = 0
                audio = b"".join(self._preroll)
                self._preroll.clear()
                return [SpeechStarted(audio, self.stream_ms - self._voiced_run * FRAME_MS)]
            return []
        self._turn_frames += 1
        self._silence_run = 0 if voiced else self._silence_run + 1
        events: list[VadEvent] = [SpeechAudio(frame)]
        speech_frames = self._turn_frames - self._silence_run
        if self._silence_run >= self._hangover_frames:
            events.append(self._end(speech_frames, "silence"))
        elif self._turn_frames >= self._max_frames:
            events.append(self._end(speech_frames, "max_length"))
        return events

    @property
    def stream_ms(self) -> int:
        return self._frames_seen * FRAME_MS

    def _end(self, speech_frames: int, reason: str) -> VadEvent:
        speech_ms = speech_frames * FRAME_MS
        self.reset()
        if speech_ms < self.settings.min_speech_ms:
            return SpeechDiscarded(speech_ms)
        return SpeechEnded(speech_ms, self.stream_ms, reason)
