"""Endpointing with webrtcvad: decides when a caller's turn starts and ends.

Pre-roll keeps the audio just before onset (webrtcvad reacts a few frames
late, and Vosk needs the first phoneme); the hangover is the silence that ends a
turn; bursts shorter than `min_speech_ms` are noise; `max_utterance_ms` cuts a
caller who never pauses so the dialog still gets a turn.

The end of speech is not webrtcvad's last voiced frame: on a noisy line
webrtcvad keeps flagging frames for 100-200 ms after the last word (its own
hangover). The last word ends at the last voiced frame that is also
`end_energy_db` above the line's noise floor (ivr/audio/level.py); from there
`SpeechEnded.silence_ms` counts, so the line's end of speech is right.
Whether the hangover counts from there too depends on what the prompt expects
(`Endpointer.set_hangover`, by the line per reply): after a complete short
answer (a yes or no, a menu word) it does, and webrtcvad's tail no longer
delays the reply; in an open answer webrtcvad's tail is what bridges the
pauses between words, and trimming it ended turns inside sentences at commas
(bench/endpointing.py, docs/performance.md), so there it counts from
webrtcvad's last voiced frame, as before.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import webrtcvad

from ivr.audio.codecs import FRAME_MS, frame_bytes
from ivr.audio.level import NoiseFloor, level_db
from ivr.settings import VadSettings

# Voiced-but-quiet frames after the last word that still count as webrtcvad's own tail; more are quiet
# speech, and the last word follows them (so a soft-spoken caller is not cut off by the level refinement).
TAIL_LIMIT_MS = 300


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
    """End of turn. `speech_ms`: onset to the last word; `silence_ms`: from the last word to this decision.

    `silence_ms` is the silence actually waited: the hangover, plus webrtcvad's
    tail when the hangover counted from webrtcvad's last voiced frame (less when
    the turn was cut at max length), so that the decision time minus it is the
    caller's end of speech (ivr/session/leg.py's `Timing`).
    """

    speech_ms: int
    stream_ms: int
    reason: str  # silence | max_length
    silence_ms: int = 0


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
        self._max_frames = settings.max_utterance_ms // FRAME_MS
        self._tail_frames = TAIL_LIMIT_MS // FRAME_MS
        self.set_hangover(settings.hangover_ms, after_last_word=False)
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(settings.pre_roll_ms // FRAME_MS, self._start_frames)
        )
        self._floor = NoiseFloor()
        self._frames_seen = 0
        self.reset()

    @property
    def hangover_ms(self) -> int:
        """The silence that ends a turn; the line sets it per expected answer (`set_hangover`)."""
        return self._hangover_frames * FRAME_MS

    @property
    def after_last_word(self) -> bool:
        """The hangover counts from the last word (True) or from webrtcvad's last voiced frame."""
        return self._after_last_word

    def set_hangover(self, ms: int, after_last_word: bool) -> None:
        """From the next frame on, a turn ends `ms` after the last word, or after webrtcvad's last voiced frame."""
        self._hangover_frames = max(1, ms // FRAME_MS)
        self._after_last_word = after_last_word

    def reset(self) -> None:
        """Forget any turn in progress (used when a prompt must not be barged into)."""
        self.in_speech = False
        self._voiced_run = 0
        self._turn_frames = 0
        self._offset = 0  # turn frames up to and including the last word (energy-refined)
        self._voiced_at = 0  # turn frames up to and including webrtcvad's last voiced frame
        self._quiet_voiced = 0  # voiced frames since the last word that were not above the noise floor + margin
        self._preroll.clear()

    def is_speech(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame, self.sample_rate)

    def process(self, frame: bytes) -> list[VadEvent]:
        if len(frame) != self.frame_size:
            raise ValueError(f"endpointer needs {self.frame_size}-byte frames, got {len(frame)}")
        self._frames_seen += 1
        voiced = self.is_speech(frame)
        level = level_db(frame)
        if not self.in_speech:
            self._floor.update(level, rising=True)
            self._preroll.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= self._start_frames:
                self.in_speech = True
                self._turn_frames = self._offset = self._voiced_at = self._voiced_run
                self._quiet_voiced = 0
                audio = b"".join(self._preroll)
                self._preroll.clear()
                return [SpeechStarted(audio, self.stream_ms - self._voiced_run * FRAME_MS)]
            return []
        self._floor.update(level, rising=False)  # in a turn the floor only falls (pauses between words)
        self._turn_frames += 1
        if voiced:
            self._voiced_at = self._turn_frames
        self._track_offset(voiced, level)
        events: list[VadEvent] = [SpeechAudio(frame)]
        # After the last word, the turn ends only where webrtcvad hears nothing: what it hears may be quiet speech.
        waited = self._turn_frames - (self._offset if self._after_last_word and not voiced else self._voiced_at)
        if waited >= self._hangover_frames:
            events.append(self._end("silence"))
        elif self._turn_frames >= self._max_frames:
            events.append(self._end("max_length"))
        return events

    def _track_offset(self, voiced: bool, level: float) -> None:
        """Move the last word to this frame if it is speech: voiced and loud, or voiced beyond any tail.

        Voiced frames after the last word that are not loud are webrtcvad's
        tail, up to TAIL_LIMIT_MS of them; more are speech too quiet for the
        margin (a caller far from the phone), and the last word follows them.
        """
        margin = self.settings.end_energy_db
        if voiced and (margin <= 0 or level >= self._floor.db + margin):
            self._offset = self._turn_frames
            self._quiet_voiced = 0
        elif voiced:
            self._quiet_voiced += 1
            if self._quiet_voiced > self._tail_frames:
                self._offset = self._turn_frames

    @property
    def stream_ms(self) -> int:
        return self._frames_seen * FRAME_MS

    def _end(self, reason: str) -> VadEvent:
        """The turn's event; too short is judged on webrtcvad's voicing, as before the energy refinement."""
        voiced_ms, speech_ms = self._voiced_at * FRAME_MS, self._offset * FRAME_MS
        silence_ms = (self._turn_frames - self._offset) * FRAME_MS
        self.reset()
        if voiced_ms < self.settings.min_speech_ms:
            return SpeechDiscarded(voiced_ms)
        return SpeechEnded(speech_ms, self.stream_ms, reason, silence_ms)
