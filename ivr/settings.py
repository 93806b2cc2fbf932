"""IVR settings (`ivr.yml`): tenants, timeouts, endpointing and model choices.

`config.yml` stays Rasa's pipeline/policies file; everything the voice front end
needs lives here. The file is validated against a JSON schema, and every error
is reported as `file:line: dotted.path: message` so a business can fix it
without reading code. Model choices can be overridden from the environment
(`IVR_ASR_MODEL`, `IVR_ASR_MODEL_DE`, `IVR_TTS_VOICE`, `IVR_TTS_VOICE_EN`, …)
and so can storage and dialog locations (`IVR_DATABASE_URL`, `IVR_DIALOG_URL`),
which is how tests point every language at the models available offline.
Tenants (business hours, catalogue, FAQ answers, queues) are described by the
schema here and built and further checked by `ivr.tenants`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from ivr.errors import ConfigError
from ivr.tenants import WEEKDAYS, Tenant, tenant_from_dict, tenant_problems  # Tenant: `from ivr.settings` still works

LANGUAGES: tuple[str, ...] = ("de", "en")
DEFAULT_SETTINGS_FILE = "ivr.yml"


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_INT = {"type": "integer"}
_NUM = {"type": "number", "exclusiveMinimum": 0}
_STR = {"type": "string", "minLength": 1}
_FRAME_MS = {"type": "integer", "multipleOf": 20, "minimum": 0}
_PER_LANGUAGE = _obj({lang: _STR for lang in LANGUAGES}, LANGUAGES)
_SOME_LANGUAGES = {"type": "object", "propertyNames": {"enum": list(LANGUAGES)}, "minProperties": 1}
_TEXT_PER_LANGUAGE = {**_SOME_LANGUAGES, "additionalProperties": _STR}
_KEY = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}
_STRINGS = {"type": "array", "items": _STR}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An empty YAML key (`catalogue:`) means the same as leaving it out."""
    return {**schema, "type": [schema["type"], "null"]}


# Times, time zones, holiday regions, duplicate SKUs, FAQ topics and texts in
# the tenant's language are checked by ivr.tenants.tenant_problems, with
# messages that say what would be valid.
_TENANT = _obj(
    {
        "company": _STR,
        "language": {"enum": list(LANGUAGES)},
        "voice": {"type": ["string", "null"]},
        "greeting": {"type": ["string", "null"]},
        "currency": {"enum": ["EUR", "GBP", "CHF", "USD"]},
        "hours": _nullable(
            _obj(
                {
                    "timezone": _STR,
                    "weekly": _obj({day: _STRINGS for day in WEEKDAYS}),
                    "holidays": _obj({"country": _STR, "subdivision": {"type": ["string", "null"]}}, ("country",)),
                    "closed": _STRINGS,
                },
                ("timezone",),
            )
        ),
        "catalogue": _nullable(
            {
                "type": "array",
                "items": _obj(
                    {
                        "sku": _STR,
                        "name": _TEXT_PER_LANGUAGE,
                        "synonyms": {**_SOME_LANGUAGES, "additionalProperties": _STRINGS},
                        "price": {"type": "number", "minimum": 0},
                        "max_quantity": {**_INT, "minimum": 1},
                    },
                    ("sku", "name", "price"),
                ),
            }
        ),
        "faq": _nullable({"type": "object", "propertyNames": _KEY, "additionalProperties": _TEXT_PER_LANGUAGE}),
        "queues": _nullable({"type": "object", "propertyNames": _KEY, "additionalProperties": _STR}),
        "handoff": {"enum": ["queue", "telephony"]},
    },
    ("company",),
)

_AGENT = _obj(
    {
        "username": {"type": "string", "pattern": r"^[a-z][a-z0-9_.-]{1,31}$"},
        "name": _STR,
        "password_hash": {"type": "string", "pattern": r"^scrypt\$"},
        "role": {"enum": ["agent", "supervisor", "admin"]},
        "tenants": {"type": "array", "items": _STR, "minItems": 1},
        "skills": {"type": "array", "items": _STR},  # queue names, as the tenants' `queues` map them
    },
    ("username", "password_hash", "role", "tenants"),
)

SCHEMA: dict[str, Any] = _obj(
    {
        "server": _obj({"host": _STR, "port": {**_INT, "minimum": 0, "maximum": 65535}}),
        "storage": _obj({"url": _STR, "max_pending_writes": {**_INT, "minimum": 100}}),
        "dialog": _obj(
            {
                "url": {"type": ["string", "null"]},
                "port": {**_INT, "minimum": 0, "maximum": 65535},
                "model_dir": _STR,
                "timeout_s": _NUM,
                "startup_timeout_s": _NUM,
                "actions_url": {"type": ["string", "null"]},
                "confirm_below_confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "turns_per_tenant": {**_INT, "minimum": 1},
                "actions_port": {**_INT, "minimum": 0, "maximum": 65535},
            }
        ),
        "vad": _obj(
            {
                "aggressiveness": {**_INT, "minimum": 0, "maximum": 3},
                "start_ms": {**_FRAME_MS, "minimum": 20},
                "pre_roll_ms": {**_FRAME_MS, "maximum": 2000},
                "hangover_ms": {**_FRAME_MS, "minimum": 60, "maximum": 5000},
                "min_speech_ms": {**_INT, "minimum": 0},
                "max_utterance_ms": {**_INT, "minimum": 1000},
            }
        ),
        "barge_in": _obj({"enabled": {"type": "boolean"}, "min_words": {**_INT, "minimum": 0}}),
        "timeouts": _obj(
            {"no_input_s": _NUM, "max_no_input": {**_INT, "minimum": 1}, "max_call_s": _NUM, "inter_digit_s": _NUM}
        ),
        "limits": _obj(
            {
                "max_text_chars": {**_INT, "minimum": 1, "maximum": 4000},
                "max_dtmf_digits": {**_INT, "minimum": 1, "maximum": 256},
                "dtmf_turns_per_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 50},
                "dtmf_burst": {**_INT, "minimum": 1, "maximum": 100},
                "media_burst_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                "asr_backlog_s": {"type": "number", "minimum": 1, "maximum": 120},
                "text_idle_s": {"type": "number", "minimum": 10},
            }
        ),
        "models": _obj(
            {
                "cache_dir": _STR,
                "asr": _PER_LANGUAGE,
                "tts": _PER_LANGUAGE,
                "onnx_threads": {**_INT, "minimum": 1, "maximum": 16},
                "tts_cache_entries": {**_INT, "minimum": 0},
            }
        ),
        "queue": _obj(
            {
                "handoff": {"enum": ["queue", "telephony"]},
                "ring_timeout_s": _NUM,
                "announce_every_s": _NUM,
                "max_wait_s": _NUM,
                "callback_offer_after_s": {"type": "number", "minimum": 0},
                "default_handle_time_s": _NUM,
                "wrap_up_s": {"type": "number", "minimum": 0},
                "hold_music": {"type": ["string", "null"]},
                "dispositions": {"type": "array", "items": _KEY, "minItems": 1},
            }
        ),
        "sip": _obj(
            {
                "enabled": {"type": "boolean"},
                "host": _STR,
                "port": {**_INT, "minimum": 0, "maximum": 65535},
                "transports": {"type": "array", "items": {"enum": ["udp", "tcp"]}, "minItems": 1, "contains": {"const": "udp"}},
                "advertise": {"type": ["string", "null"]},
                "rtp_ports": {"type": ["string", "null"], "pattern": r"^[0-9]{4,5}-[0-9]{4,5}$"},
                "jitter_ms": {**_FRAME_MS, "minimum": 20, "maximum": 500},
                "inband_dtmf": {"enum": ["auto", "always", "never"]},
                "answer_delay_s": {"type": "number", "minimum": 0, "maximum": 30},
                "max_calls": {**_INT, "minimum": 1},
                "allow_from": {"type": "array", "items": _STR},
                "transfer_to": {"type": ["string", "null"], "pattern": r"^sips?:"},
                "transfer_timeout_s": _NUM,
                "tls": _nullable(_obj({"port": {**_INT, "minimum": 0, "maximum": 65535}, "certificate": _STR, "key": _STR},
                                      ("certificate", "key"))),
                "register": _nullable(
                    _obj(
                        {
                            "registrar": {"type": "string", "pattern": r"^sip:"},
                            "domain": {"type": ["string", "null"]},
                            "user_env": _STR,
                            "password_env": _STR,
                            "expires_s": {**_INT, "minimum": 60},
                            "retry_s": _NUM,
                        },
                        ("registrar",),
                    )
                ),
            }
        ),
        "agents": _nullable({"type": "array", "items": _AGENT}),
        "logins": _obj(
            {
                "hash_threads": {**_INT, "minimum": 1, "maximum": 8},
                "hash_queue": {**_INT, "minimum": 0, "maximum": 1000},
                "attempts_per_minute": _NUM,
                "attempt_burst": {**_INT, "minimum": 1},
                "trusted_proxies": {"type": "array", "items": _STR},
            }
        ),
        "default_tenant": {"type": ["string", "null"]},
        "tenants": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^\+?[0-9*#]{2,20}$"},
            "additionalProperties": _TENANT,
        },
    },
    ("tenants",),
)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class StorageSettings:
    url: str = "sqlite:///var/ivr.db"
    # Call writes waiting for an unavailable database before new calls are refused (ivr/storage/write_behind.py):
    # a call writes some 20-60 rows, so the default keeps a few hundred calls' worth.
    max_pending_writes: int = 20_000


@dataclass(frozen=True)
class DialogSettings:
    """Where Rasa and its action server run.

    With `url` unset, `ivr serve` starts and supervises `rasa run`, and with
    `actions_url` unset also the action server (`dialogs/actions`).
    """

    url: Optional[str] = None
    # 0: a free loopback port at each start, so two instances on one machine never share a child. A fixed
    # port that is taken stops start-up with an error naming this field (ivr/dialog/supervisor.py).
    port: int = 0
    model_dir: str = "models/rasa"
    timeout_s: float = 8.0
    startup_timeout_s: float = 240.0
    actions_url: Optional[str] = None
    actions_port: int = 0
    # A number recognized from speech with less ASR confidence than this is read back for a yes/no.
    confirm_below_confidence: float = 0.6
    # Dialog turns of one tenant in Rasa at a time; more wait, so one company cannot stall another's callers.
    turns_per_tenant: int = 4


@dataclass(frozen=True)
class VadSettings:
    """Endpointing: when a caller's turn starts and ends (all in ms)."""

    aggressiveness: int = 2
    start_ms: int = 60
    pre_roll_ms: int = 300
    hangover_ms: int = 300
    min_speech_ms: int = 200
    max_utterance_ms: int = 15000


@dataclass(frozen=True)
class BargeInSettings:
    enabled: bool = True
    min_words: int = 1


@dataclass(frozen=True)
class TimeoutSettings:
    no_input_s: float = 7.0
    max_no_input: int = 2
    max_call_s: float = 1800.0
    inter_digit_s: float = 3.0  # keypad: a pause this long ends a number typed without #


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on what one caller can push into the IVR (see docs/architecture.md, "Limits").

    A caller's turn is seconds of speech, so text that reaches the dialog is
    bounded (`max_text_chars`, typed or recognized); keypad input is bounded in
    length and in the dialog turns it makes; a media stream may run ahead of
    real time by `media_burst_s` (network catch-up), not more; the recognizer's
    backlog per call is bounded; text conversations nobody continues end.
    """

    max_text_chars: int = 500  # typed text longer than this is refused; recognized text is cut
    max_dtmf_digits: int = 32  # one keypad entry (a collected number, a text-API `dtmf`)
    dtmf_turns_per_s: float = 1.0  # dialog turns from keys, sustained ...
    dtmf_burst: int = 5  # ... and in a burst; keys beyond are dropped
    media_burst_s: float = 3.0  # how far a media stream's audio may run ahead of real time
    asr_backlog_s: float = 10.0  # caller audio waiting for the recognizer; more is dropped
    text_idle_s: float = 900.0  # a text conversation without a request this long is ended


@dataclass(frozen=True)
class QueueSettings:
    """The agent queue (ACD): how long phones ring, what waiting callers hear, when they get a way out.

    `handoff: telephony` hands calls back to the telephony side with the handoff
    id instead (providers that transfer to their own ACD); a tenant can set it too.
    German telecom law: the expected wait is announced when waiting starts, and
    nobody waits longer than `max_wait_s` (a callback request is taken instead).
    """

    handoff: str = "queue"
    ring_timeout_s: float = 15.0  # then the next agent; the one who did not answer is set to not-responding
    announce_every_s: float = 45.0  # position and expected wait, between hold music
    max_wait_s: float = 600.0
    callback_offer_after_s: float = 120.0  # offer a callback when the expected wait is longer
    default_handle_time_s: float = 180.0  # average handle time until calls of this run have completed
    wrap_up_s: float = 0.0  # after-call work before the agent is offered calls again; 0 = until they finish it
    hold_music: Optional[str] = None  # a WAV file; unset = a generated tone loop
    dispositions: tuple[str, ...] = ("resolved", "follow_up", "callback_needed", "escalated", "wrong_number", "other")


@dataclass(frozen=True)
class SipRegistration:
    """REGISTER with a PBX or trunk; the account is read from the named environment variables."""

    registrar: str  # sip:pbx.example.com:5060
    domain: Optional[str] = None  # of the address of record; default: the registrar's host
    user_env: str = "IVR_SIP_USER"
    password_env: str = "IVR_SIP_PASSWORD"
    expires_s: int = 600
    retry_s: float = 30.0


@dataclass(frozen=True)
class SipTls:
    """SIP over TLS (RFC 3261 §26.2): a certificate and key in PEM files, on its own port."""

    certificate: str
    key: str
    port: int = 5061


@dataclass(frozen=True)
class SipSettings:
    """The SIP user agent (ivr/transports/sip): calls from trunks, PBXs and phones, next to the media stream.

    `advertise` is the address put into Contact, Via and SDP when peers reach
    this machine under another address (NAT). `transfer_to` is the REFER target
    for a handoff in `telephony` mode; `{queue}` is replaced by the queue name.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    advertise: Optional[str] = None
    rtp_ports: Optional[tuple[int, int]] = (20000, 20999)  # None: any free port
    jitter_ms: int = 60
    inband_dtmf: str = "auto"  # auto: listen for tones when the caller offers no telephone-event
    answer_delay_s: float = 0.0
    max_calls: int = 200
    allow_from: tuple[str, ...] = ()  # networks that may place calls (CIDR); empty: anyone who reaches the port
    transfer_to: Optional[str] = None
    transfer_timeout_s: float = 10.0
    register: Optional[SipRegistration] = None
    tls: Optional[SipTls] = None


@dataclass(frozen=True)
class AgentUser:
    """A login of the agent desktop. Only the password's scrypt hash is stored (`ivr agents hash-password`)."""

    username: str
    password_hash: str
    role: str  # agent | supervisor | admin
    tenants: tuple[str, ...]  # tenant numbers this user may see; "*" = all
    skills: tuple[str, ...] = ()  # queue names the agent takes calls from; empty = every queue of their tenants
    name: str = ""

    def sees(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def works(self, queue: str) -> bool:
        return not self.skills or queue in self.skills


@dataclass(frozen=True)
class LoginSettings:
    """Limits of password checks (ivr/agents/auth.py), so logins can neither starve the server nor be sprayed.

    scrypt runs on `hash_threads` threads of its own (never the pool storage
    uses); beyond `hash_queue` waiting checks a login is answered 503. Each
    source address may start `attempt_burst` checks at once, refilled at
    `attempts_per_minute`. The source is the connection's peer, or, when the
    peer is in `trusted_proxies` (networks), the address X-Forwarded-For names.
    """

    hash_threads: int = 1
    hash_queue: int = 16
    attempts_per_minute: float = 30.0
    attempt_burst: int = 30
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSettings:
    """Model per language: a catalogue name (see voices/catalogue.yml) or a path."""

    cache_dir: str = "~/.cache/ivr/models"
    asr: dict[str, str] = field(
        default_factory=lambda: {"de": "vosk-model-small-de-0.15", "en": "vosk-model-small-en-us-0.15"}
    )
    tts: dict[str, str] = field(default_factory=lambda: {"de": "de_DE-thorsten-medium", "en": "en_US-lessac-medium"})
    onnx_threads: int = 1
    tts_cache_entries: int = 256


@dataclass(frozen=True)
class Settings:
    tenants: dict[str, Tenant]
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    dialog: DialogSettings = DialogSettings()
    vad: VadSettings = VadSettings()
    barge_in: BargeInSettings = BargeInSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    limits: LimitSettings = LimitSettings()
    models: ModelSettings = field(default_factory=ModelSettings)
    queue: QueueSettings = QueueSettings()
    sip: SipSettings = SipSettings()
    agents: tuple[AgentUser, ...] = ()
    logins: LoginSettings = LoginSettings()
    default_tenant: Optional[str] = None

    def tenant_for(self, dialled: Optional[str]) -> tuple[str, Tenant]:
        """The tenant for a dialled number, else `default_tenant`.

        Numbers are compared without spaces or dashes and with `00` read as `+`,
        so `+49 30 123` and `004930123` reach the same tenant.
        """
        wanted = normalize_number(dialled or "")
        for number, tenant in self.tenants.items():
            if normalize_number(number) == wanted:
                return number, tenant
        if self.default_tenant:
            return self.default_tenant, self.tenants[self.default_tenant]
        raise LookupError(f"no tenant for dialled number {dialled!r} and no default_tenant")

    def has_tenant(self, dialled: str) -> bool:
        """Whether a number names a tenant itself (not via `default_tenant`)."""
        wanted = normalize_number(dialled)
        return any(normalize_number(number) == wanted for number in self.tenants)

    def handoff_mode(self, tenant: Tenant) -> str:
        """`queue` (our ACD) or `telephony` (back to the caller's provider with the handoff id)."""
        return tenant.handoff or self.queue.handoff

    def voice_for(self, tenant: Tenant) -> str:
        return tenant.voice or self.models.tts[tenant.language]

    @property
    def cache_dir(self) -> Path:
        return Path(os.path.expanduser(self.models.cache_dir))


def normalize_number(number: str) -> str:
    digits = re.sub(r"[^0-9+*#]", "", number)
    return "+" + digits[2:] if digits.startswith("00") else digits


_SECTIONS = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "dialog": DialogSettings,
    "vad": VadSettings,
    "barge_in": BargeInSettings,
    "timeouts": TimeoutSettings,
    "limits": LimitSettings,
    "models": ModelSettings,
}


def sip_from_dict(data: dict[str, Any]) -> SipSettings:
    sip = dict(data)
    for name in ("transports", "allow_from"):
        if name in sip:
            sip[name] = tuple(sip[name])
    if sip.get("rtp_ports"):
        low, high = (int(p) for p in sip["rtp_ports"].split("-"))
        sip["rtp_ports"] = (low, high)
    if sip.get("register"):
        sip["register"] = SipRegistration(**sip["register"])
    if sip.get("tls"):
        sip["tls"] = SipTls(**sip["tls"])
    return SipSettings(**sip)


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Build settings from an already validated mapping (defaults fill the gaps)."""
    kwargs: dict[str, Any] = {name: cls(**(data.get(name) or {})) for name, cls in _SECTIONS.items()}
    kwargs["tenants"] = {number: tenant_from_dict(t) for number, t in data["tenants"].items()}
    queue = dict(data.get("queue") or {})
    if "dispositions" in queue:
        queue["dispositions"] = tuple(queue["dispositions"])
    kwargs["queue"] = QueueSettings(**queue)
    kwargs["sip"] = sip_from_dict(data.get("sip") or {})
    kwargs["agents"] = tuple(
        AgentUser(
            username=a["username"],
            password_hash=a["password_hash"],
            role=a["role"],
            tenants=tuple(a["tenants"]),
            skills=tuple(a.get("skills") or ()),
            name=a.get("name") or a["username"],
        )
        for a in data.get("agents") or ()
    )
    logins = dict(data.get("logins") or {})
    kwargs["logins"] = LoginSettings(**{**logins, "trusted_proxies": tuple(logins.get("trusted_proxies") or ())})
    kwargs["default_tenant"] = data.get("default_tenant")
    return Settings(**kwargs)


def line_of(data: Any, path: list[Any]) -> Optional[int]:
    """1-based line of the deepest node of `path` that the YAML source has."""
    line = None
    node = data
    for key in path:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(node, dict) and key in node:
                line = lc.key(key)[0] + 1
            elif lc is not None and isinstance(node, list) and isinstance(key, int):
                line = lc.item(key)[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    """Model and storage overrides from the environment; a language-specific one wins."""
    defaults = ModelSettings()
    models = data.setdefault("models", {})
    for kind, var in (("asr", "IVR_ASR_MODEL"), ("tts", "IVR_TTS_VOICE")):
        chosen = dict(models.get(kind) or getattr(defaults, kind))
        for lang in LANGUAGES:
            value = env.get(f"{var}_{lang.upper()}") or env.get(var)
            if value:
                chosen[lang] = value
        models[kind] = chosen
    if env.get("IVR_MODEL_DIR"):
        models["cache_dir"] = env["IVR_MODEL_DIR"]
    if forced_voice := env.get("IVR_TTS_VOICE"):
        # A forced voice also replaces the voices tenants picked for themselves.
        for tenant in (data.get("tenants") or {}).values():
            if isinstance(tenant, dict) and tenant.get("voice"):
                tenant["voice"] = forced_voice
    if env.get("IVR_DATABASE_URL"):
        data.setdefault("storage", {})["url"] = env["IVR_DATABASE_URL"]
    if env.get("IVR_DIALOG_URL"):
        data.setdefault("dialog", {})["url"] = env["IVR_DIALOG_URL"]


def to_plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, date):  # an unquoted `2026-12-24` is a YAML timestamp
        return node.isoformat()
    return node


def validate(data: Any, source: Any = None, path: str = "settings") -> list[str]:
    """Problems as `file:line: dotted.path: message` lines (empty when valid).

    Besides the schema, each tenant section the schema accepts is checked for
    what a schema cannot say (see ivr.tenants.tenant_problems), so one run
    reports both kinds.
    """
    source = source if source is not None else data
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_problem(path, source, list(err.absolute_path), err.message) for err in errors]
    error_paths = [list(err.absolute_path) for err in errors]
    tenants = data.get("tenants")
    for number, tenant in tenants.items() if isinstance(tenants, dict) else ():
        # Sections the schema rejected are left out; without a valid language nothing can be checked.
        broken = {p[2] for p in error_paths if len(p) > 2 and p[:2] == ["tenants", number]}
        if isinstance(tenant, dict) and "language" not in broken:
            valid = {key: value for key, value in tenant.items() if key not in broken}
            problems += [_problem(path, source, ["tenants", number, *loc], msg) for loc, msg in tenant_problems(valid)]
    problems += _agent_problems(data, source, path)
    problems += _sip_problems(data, source, path, error_paths)
    problems += _network_problems(data, source, path, ["logins", "trusted_proxies"])
    if not problems and data.get("default_tenant") and data["default_tenant"] not in data["tenants"]:
        message = f"{data['default_tenant']!r} is not one of the tenants"
        problems.append(_problem(path, source, ["default_tenant"], message))
    return problems


def _sip_problems(data: dict[str, Any], source: Any, path: str, error_paths: list[list[Any]]) -> list[str]:
    """What the schema cannot say about the sip section: port ranges, networks."""
    import ipaddress

    problems: list[str] = []
    sip = data.get("sip") if isinstance(data.get("sip"), dict) else {}
    for i, network in enumerate(sip.get("allow_from") or ()):
        try:
            ipaddress.ip_network(str(network), strict=False)
        except ValueError:
            problems.append(_problem(path, source, ["sip", "allow_from", i], f"{network!r} is not a network (e.g. 10.0.0.0/8)"))
    ports = sip.get("rtp_ports")
    if isinstance(ports, str) and ["sip", "rtp_ports"] not in error_paths:
        low, high = (int(p) for p in ports.split("-"))
        if not 1024 <= low < high <= 65535:
            problems.append(_problem(path, source, ["sip", "rtp_ports"], f"{ports!r}: want LOW-HIGH with 1024 <= LOW < HIGH <= 65535"))
    return problems


def _network_problems(data: dict[str, Any], source: Any, path: str, where: list[str]) -> list[str]:
    """Entries of the list at `where` (e.g. logins.trusted_proxies) that are no network in CIDR notation."""
    import ipaddress

    node: Any = data
    for key in where:
        node = node.get(key) if isinstance(node, dict) else None
    problems: list[str] = []
    for i, network in enumerate(node if isinstance(node, list) else ()):
        try:
            ipaddress.ip_network(str(network), strict=False)
        except ValueError:
            problems.append(_problem(path, source, [*where, i], f"{network!r} is not a network (e.g. 10.0.0.0/8)"))
    return problems


def _agent_problems(data: dict[str, Any], source: Any, path: str) -> list[str]:
    """Agents must name tenants that exist (or "*") and be unique."""
    agents = data.get("agents")
    tenants = data.get("tenants") if isinstance(data.get("tenants"), dict) else {}
    problems: list[str] = []
    seen: set[str] = set()
    for i, agent in enumerate(agents if isinstance(agents, list) else ()):
        if not isinstance(agent, dict):
            continue
        name = agent.get("username")
        if name in seen:
            problems.append(_problem(path, source, ["agents", i, "username"], f"{name!r} is listed twice"))
        seen.add(name)
        seen_tenants = agent.get("tenants") or ()
        for j, tenant in enumerate(seen_tenants):
            if tenant != "*" and tenant not in tenants:
                message = f"{tenant!r} is not one of the tenants (or \"*\" for all)"
                problems.append(_problem(path, source, ["agents", i, "tenants", j], message))
        # A skill is a queue name; a typo would leave the agent waiting for calls that never come.
        queues = {"default"}
        for number, tenant in tenants.items():
            if isinstance(tenant, dict) and ("*" in seen_tenants or number in seen_tenants):
                queues.update(str(q) for q in (tenant.get("queues") or {}).values())
        for j, skill in enumerate(agent.get("skills") or ()):
            if skill not in queues:
                message = f"{skill!r} is not a queue of the agent's tenants ({', '.join(sorted(queues))})"
                problems.append(_problem(path, source, ["agents", i, "skills", j], message))
    return problems


def _problem(path: str, source: Any, loc: list[Any], message: str) -> str:
    line = line_of(source, loc)
    where = f"{path}:{line}" if line else path
    return f"{where}: {'.'.join(str(p) for p in loc) or '(top level)'}: {message}"


def load_settings(path: str | Path = DEFAULT_SETTINGS_FILE, env: Optional[dict[str, str]] = None) -> Settings:
    """Read, override from the environment and validate the settings file."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read settings file: {exc.strerror}"]) from exc
    try:
        source = YAML(typ="rt").load(text) or {}
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from exc
    if not isinstance(source, dict):
        raise ConfigError([f"{path}:1: the settings file must be a mapping of sections"])
    data = to_plain(source)
    _apply_env(data, env)
    problems = validate(data, source, str(path))
    if problems:
        raise ConfigError(problems)
    return settings_from_dict(data)


def replace(settings: Settings, **sections: Any) -> Settings:
    """A copy with some sections swapped (tests and `ivr serve --port` use it)."""
    return dataclasses.replace(settings, **sections)
