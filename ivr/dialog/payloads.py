"""What the dialog returns per turn, as typed values.

Rasa responses may carry `custom: {ivr: {...}}` next to their text; those keys
tell the voice front end to hang up, hand off, restrict recognition to a
grammar, forbid barge-in or replay the last prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXPECT = ("yes_no", "digits", "menu")


@dataclass(frozen=True)
class Handoff:
    reason: str
    queue: str = "default"


@dataclass(frozen=True)
class ReplyPart:
    """One of Rasa's messages in a reply, spoken as a prompt of its own.

    Parts carry their own barge-in flag so that a greeting can keep the AI
    disclosure uninterruptible while the menu after it takes voice and keys at
    once (issue 18: a caller pressing 0 waited for the whole menu).
    """

    text: str
    barge_in: bool = True


@dataclass(frozen=True)
class BotReply:
    """One turn's worth of bot output, merged from Rasa's messages (`parts` keeps them apart for speaking)."""

    text: str = ""
    barge_in: bool = True
    hangup: bool = False
    handoff: Handoff | None = None
    expect: str | None = None  # yes_no | digits | menu: restricts ASR, tells how keys are read
    dtmf: dict[str, str] = field(default_factory=dict)  # menu key -> message for the dialog ("1" -> "/place_order")
    repeat_last: bool = False
    parts: tuple[ReplyPart, ...] = ()  # empty: the whole text is one part with `barge_in`

    @property
    def spoken_parts(self) -> tuple[ReplyPart, ...]:
        """What the line says, in order: Rasa's messages, or the whole text for replies the IVR made itself."""
        if not self.parts:
            return (ReplyPart(self.text, self.barge_in),) if self.text else ()
        return self.parts

    @property
    def is_silent(self) -> bool:
        """Nothing to say, nothing to do: on a phone line that is dead air."""
        return not self.text and not self.hangup and self.handoff is None and not self.repeat_last

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> BotReply:
        # Rasa's collecting channel sends a response's text and its `custom` as two messages in a
        # row: a part's flags are in the custom messages after its text, up to the next text.
        texts: list[str] = []
        part_flags: list[bool] = []
        flags: dict[str, Any] = {}
        for message in messages:
            if message.get("text"):
                texts.append(str(message["text"]).strip())
                part_flags.append(True)
            custom = message.get("custom")
            if isinstance(custom, dict) and isinstance(custom.get("ivr"), dict):
                flags.update(custom["ivr"])
                if "barge_in" in custom["ivr"] and part_flags:
                    part_flags[-1] = bool(custom["ivr"]["barge_in"])
        parts = tuple(ReplyPart(text, barge) for text, barge in zip(texts, part_flags, strict=True))
        handoff = flags.get("handoff")
        expect = flags.get("expect")
        return cls(
            text=" ".join(texts),
            barge_in=all(part_flags) and bool(flags.get("barge_in", True)),  # every part allows it
            hangup=bool(flags.get("hangup", False)),
            handoff=Handoff(str(handoff.get("reason", "unspecified")), str(handoff.get("queue") or "default"))
            if isinstance(handoff, dict)
            else None,
            expect=expect if expect in EXPECT else None,
            dtmf={str(k): str(v) for k, v in (flags.get("dtmf") or {}).items()}
            if isinstance(flags.get("dtmf"), dict)
            else {},
            repeat_last=bool(flags.get("repeat_last", False)),
            parts=parts,
        )


@dataclass(frozen=True)
class DialogTurn:
    """A bot reply plus what Rasa understood, for transcripts and the text endpoint."""

    reply: BotReply
    intent: str | None = None
    confidence: float | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    collected: dict[str, Any] = field(default_factory=dict)  # set during this turn, even if reset by its end
    active_loop: str | None = None
    requested_slot: str | None = None
    latency_s: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any], latency_s: float = 0.0) -> DialogTurn:
        intent = data.get("intent") or {}
        return cls(
            reply=BotReply.from_messages(data.get("messages") or []),
            intent=intent.get("name"),
            confidence=intent.get("confidence"),
            entities=list(data.get("entities") or []),
            slots=dict(data.get("slots") or {}),
            collected=dict(data.get("collected") or {}),
            active_loop=data.get("active_loop"),
            requested_slot=(data.get("slots") or {}).get("requested_slot"),
            latency_s=latency_s,
        )
