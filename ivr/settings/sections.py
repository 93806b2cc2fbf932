"""The plain sections of `ivr.yml`: server, storage, dialog, endpointing, asr, timeouts, limits, admission, models, queue.

Each class is the one description of its section (see ivr.yaml_config):
the field types carry the constraints, the defaults are the documented ones.
"""

from dataclasses import field
from typing import TYPE_CHECKING, Literal

from pydantic import StrictBool, validator

from ivr.tenants import LANGUAGES, Key, Language
from ivr.yaml_config import Text, config, integer, matching, non_empty, number

if TYPE_CHECKING:  # what the values are to the code that reads them
    Port = int
    Seconds = float
    HttpUrl = str
    DatabaseUrl = str
    HangoverMs = int
    Expect = str
else:
    Port = integer(ge=0, le=65535)
    Seconds = number(gt=0)
    HangoverMs = integer(ge=60, le=5000, multiple_of=20)
    # What a prompt expects of the answer (ivr/dialog/payloads.py's EXPECT): the keys of vad.hangover_by_expect.
    Expect = Literal["yes_no", "digits", "menu"]
    HttpUrl = matching(r"^https?://[^/\s]", "{value!r} is not an http(s) URL like 'http://127.0.0.1:5005'")
    DatabaseUrl = matching(
        r"^[a-z][a-z0-9+]*://",
        "{value!r} is not a database URL like 'sqlite:///var/ivr.db' or 'postgresql+psycopg://…'",
    )


@config
class ServerSettings:
    host: Text = "127.0.0.1"
    port: Port = 8080


@config
class StorageSettings:
    url: DatabaseUrl = "sqlite:///var/ivr.db"
    # Call writes waiting for an unavailable database before new calls are refused (ivr/storage/write_behind.py):
    # a call writes some 20-60 rows, so the default keeps a few hundred calls' worth.
    max_pending_writes: integer(ge=100) = 20_000


@config
class DialogSettings:
    """Where Rasa and its action server run.

    With `url` unset, `ivr serve` starts and supervises `rasa run`, and with
    `actions_url` unset also the action server (`dialogs/actions`).
    """

    url: HttpUrl | None = None
    # 0: a free loopback port at each start, so two instances on one machine never share a child. A fixed
    # port that is taken stops start-up with an error naming this field (ivr/dialog/supervisor.py).
    port: Port = 0
    model_dir: Text = "models/rasa"
    timeout_s: Seconds = 8.0
    startup_timeout_s: Seconds = 240.0
    actions_url: HttpUrl | None = None
    actions_port: Port = 0
    # A number recognized from speech with less ASR confidence than this is read back for a yes/no.
    confirm_below_confidence: number(ge=0, le=1) = 0.6
    # Dialog turns of one tenant in Rasa at a time; more wait, so one company cannot stall another's callers.
    turns_per_tenant: integer(ge=1) = 4


@config
class VadSettings:
    """Endpointing: when a caller's turn starts and ends (all in ms, whole 20 ms frames).

    The caller's last word is the last voiced frame at least `end_energy_db`
    above the noise floor (0: webrtcvad's last voiced frame, which on a noisy
    line comes 100-200 ms after it). `hangover_by_expect` ends a turn that long
    after the last word where the answer is complete sooner (a yes or no);
    `hangover_ms` ends an open answer that long after webrtcvad's
    last voiced frame, whose tail bridges the pauses between words. A menu
    ("How can I help you? Or press 1 ...") is an open question that also takes
    keys, and digits keep the open one too: a number is read in groups with pauses, and
    whether it is complete would need its expected length. Measured in
    docs/performance.md (bench/endpointing.py).
    """

    aggressiveness: integer(ge=0, le=3) = 2
    start_ms: integer(ge=20, multiple_of=20) = 60
    pre_roll_ms: integer(ge=0, le=2000, multiple_of=20) = 300
    hangover_ms: HangoverMs = 300
    hangover_by_expect: dict[Expect, HangoverMs] = field(default_factory=lambda: {"yes_no": 200})
    end_energy_db: number(ge=0, le=40) = 8.0
    min_speech_ms: integer(ge=0) = 200
    max_utterance_ms: integer(ge=1000) = 15000

    def hangover_for(self, expect: str | None) -> int:
        """The hangover for a prompt expecting `expect` (None or an unlisted kind: an open answer)."""
        return self.hangover_by_expect.get(expect, self.hangover_ms) if expect else self.hangover_ms


@config
class AsrSettings:
    """Recognition: how many free-form recognizers per Vosk model are kept warm for the next calls.

    A new recognizer decodes its first utterance 1-2 s slower than later ones
    (the decoding graph is expanded as it goes), which a caller heard as a
    slow first answer; warm ones are built and fed a sentence ahead of time in
    the ASR threads (ivr/audio/recognizer_pool.py, docs/performance.md). A call
    gives its recognizer back when it ends; after `recognizer_calls` calls it is
    dropped, since its expanded graph only ever grows. `warm_recognizers: 0`:
    every call builds its own, as before.
    """

    warm_recognizers: integer(ge=0, le=64) = 2  # per Vosk model in use; each ~40-90 MB (docs/performance.md)
    recognizer_calls: integer(ge=1, le=1000) = 8  # calls one recognizer serves before it is replaced


@config
class BargeInSettings:
    enabled: StrictBool = True
    min_words: integer(ge=0) = 1


@config
class TimeoutSettings:
    no_input_s: Seconds = 7.0
    max_no_input: integer(ge=1) = 2
    max_call_s: Seconds = 1800.0
    inter_digit_s: Seconds = 3.0  # keypad: a pause this long ends a number typed without #


@config
class LimitSettings:
    """Bounds on what one caller can push into the IVR (see docs/architecture.md, "Limits").

    A caller's turn is seconds of speech, so text that reaches the dialog is
    bounded (`max_text_chars`, typed or recognized); keypad input is bounded in
    length and in the dialog turns it makes; a media stream may run ahead of
    real time by `media_burst_s` (network catch-up), not more; the recognizer's
    backlog per call is bounded; text conversations nobody continues end.
    """

    max_text_chars: integer(ge=1, le=4000) = 500  # longer typed text is refused; recognized text is cut
    max_dtmf_digits: integer(ge=1, le=256) = 32  # one keypad entry (a collected number, a text-API `dtmf`)
    dtmf_turns_per_s: number(gt=0, le=50) = 1.0  # dialog turns from keys, sustained ...
    dtmf_burst: integer(ge=1, le=100) = 5  # ... and in a burst; keys beyond are dropped
    media_burst_s: number(gt=0, le=60) = 3.0  # how far a media stream's audio may run ahead of real time
    asr_backlog_s: number(ge=1, le=120) = 10.0  # caller audio waiting for the recognizer; more is dropped
    text_idle_s: number(ge=10) = 900.0  # a text conversation without a request this long is ended


@config
class AdmissionSettings:
    """How many calls this machine takes, so that every call it took keeps its latency (docs/architecture.md).

    `max_calls` unset: `calls_per_core` × the machine's cores. 3 per core is what
    docs/performance.md measured on 2 cores with the Korean Vosk model: p95 reply
    latency 1.1 s at 5 calls and 4.7 s at 10 (2026-12-06, warm recognizers and
    prerendered prompts; before them 2.7 s and 6.4 s). Below the limit a
    call is still refused while the event loop runs late or the recognizers
    are behind (load the count does not show: long turns, a slow disk), and
    while calls start faster than `starts_per_s` (a burst of INVITEs). Refused
    SIP calls get 503 with Retry-After, media streams 503 before the upgrade.
    """

    max_calls: integer(ge=0) | None = None  # calls at once; unset = calls_per_core × cores; 0 refuses every call
    calls_per_core: number(gt=0, le=100) = 3.0
    max_loop_lag_ms: number(gt=0) = 50.0  # the event loop paces every call's 20 ms audio; later than this: refuse
    max_asr_backlog_s: number(gt=0) = 3.0  # caller audio waiting for the recognizers, summed over calls
    starts_per_s: number(gt=0) = 5.0  # new calls admitted per second, sustained ...
    start_burst: integer(ge=1) = 10  # ... and at once
    retry_after_s: integer(ge=1, le=3600) = 30  # SIP Retry-After and the media endpoints' Retry-After header
    # Media streams over the limit taken for a short "all lines busy" and a callback request (tenants with
    # `overflow: callback`), at once; more get 503. No recognizer, no dialog: a cached prompt and one row.
    max_overflow_calls: integer(ge=0) = 10

    def call_limit(self, cores: int | None) -> int:
        """`max_calls`, or for a machine with `cores` cores (os.cpu_count(); None counts as 1) its share."""
        if self.max_calls is not None:
            return self.max_calls
        return max(1, int(self.calls_per_core * (cores or 1)))


def _every_language(models: dict[str, str]) -> dict[str, str]:
    missing = [lang for lang in LANGUAGES if lang not in models]
    if missing:
        raise ValueError(f"{missing[0]!r} is a required property (one model per language: {', '.join(LANGUAGES)})")
    return models


@config
class ModelSettings:
    """Model per language: a catalogue name (see voices/catalogue.yml) or a path."""

    cache_dir: Text = "~/.cache/ivr/models"
    asr: dict[Language, Text] = field(
        default_factory=lambda: {"de": "vosk-model-small-de-0.15", "en": "vosk-model-small-en-us-0.15"}
    )
    tts: dict[Language, Text] = field(
        default_factory=lambda: {"de": "de_DE-thorsten-medium", "en": "en_US-lessac-medium"}
    )
    onnx_threads: integer(ge=1, le=16) = 1
    tts_cache_entries: integer(ge=0) = 256
    # Every tenant's fixed prompts (domain responses, FAQ answers) synthesized at start-up, in the background at low
    # priority, so that none costs the caller Piper's ~300 ms the first time it is said (ivr/dialog/fixed_prompts.py).
    prerender_prompts: StrictBool = True

    _check_languages = validator("asr", "tts", allow_reuse=True)(_every_language)


@config
class QueueSettings:
    """The agent queue (ACD): how long phones ring, what waiting callers hear, when they get a way out.

    `handoff: telephony` hands calls back to the telephony side with the handoff
    id instead (providers that transfer to their own ACD); a tenant can set it too.
    German telecom law: the expected wait is announced when waiting starts, and
    nobody waits longer than `max_wait_s` (a callback request is taken instead).
    """

    handoff: Literal["queue", "telephony"] = "queue"
    ring_timeout_s: Seconds = 15.0  # then the next agent; who did not answer is not-responding
    announce_every_s: Seconds = 45.0  # position and expected wait, between hold music
    max_wait_s: Seconds = 600.0
    callback_offer_after_s: number(ge=0) = 120.0  # offer a callback when the wait is longer
    default_handle_time_s: Seconds = 180.0  # average handle time until calls completed
    wrap_up_s: number(ge=0) = 0.0  # after-call work; 0 = until the agent finishes it
    hold_music: Text | None = None  # a WAV file; unset = a generated tone loop
    dispositions: tuple[Key, ...] = ("resolved", "follow_up", "callback_needed", "escalated", "wrong_number", "other")

    _some = validator("dispositions", allow_reuse=True)(non_empty("[] should be non-empty"))
