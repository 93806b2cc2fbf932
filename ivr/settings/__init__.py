"""IVR settings (`ivr.yml`): tenants, timeouts, endpointing and model choices.

`config.yml` stays Rasa's pipeline/policies file; everything the voice front end
needs lives here. The file is described once, by the frozen pydantic
dataclasses of this package (sections, sip, agents) and of `ivr.tenants`; every
error is reported as `file:line: dotted.path: message` (ivr.yaml_config) so a
business can fix it without reading code. Model choices can be overridden from
the environment (`IVR_ASR_MODEL`, `IVR_ASR_MODEL_DE`, `IVR_TTS_VOICE`,
`IVR_TTS_VOICE_EN`, …) and so can storage and dialog locations
(`IVR_DATABASE_URL`, `IVR_DIALOG_URL`), which is how tests point every language
at the models available offline; a bad override names its variable.
"""

import dataclasses
import os
import re
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import StrictStr, root_validator, validator

from ivr.errors import ConfigError
from ivr.settings.agents import AgentUser, LoginSettings, agent_problems
from ivr.settings.sections import (
    AdmissionSettings,
    AsrSettings,
    BargeInSettings,
    DialogSettings,
    LimitSettings,
    ModelSettings,
    QueueSettings,
    ServerSettings,
    StorageSettings,
    TimeoutSettings,
    VadSettings,
)
from ivr.settings.sip import SipRegistration, SipSettings, SipTls
from ivr.tenants import LANGUAGES, Tenant  # Tenant: `from ivr.settings` still works
from ivr.yaml_config import Loc, config, empty_means_default, load_file, matching, non_empty, problems, validate

__all__ = [
    "AdmissionSettings", "AgentUser", "AsrSettings", "BargeInSettings", "DEFAULT_SETTINGS_FILE", "DialogSettings", "LANGUAGES", "LimitSettings",
    "LoginSettings", "ModelSettings", "QueueSettings", "ServerSettings", "Settings", "SipRegistration", "SipSettings",
    "SipTls", "StorageSettings", "Tenant", "TimeoutSettings", "VadSettings", "load_settings", "normalize_number",
    "replace",
]  # fmt: skip

DEFAULT_SETTINGS_FILE = "ivr.yml"
if TYPE_CHECKING:
    TenantNumber = str
else:
    TenantNumber = matching(r"^\+?[0-9*#]{2,20}$")


@config
class Settings:
    tenants: dict[TenantNumber, Tenant]
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    dialog: DialogSettings = DialogSettings()
    vad: VadSettings = VadSettings()
    asr: AsrSettings = AsrSettings()
    barge_in: BargeInSettings = BargeInSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    limits: LimitSettings = LimitSettings()
    admission: AdmissionSettings = AdmissionSettings()
    models: ModelSettings = field(default_factory=ModelSettings)
    queue: QueueSettings = QueueSettings()
    sip: SipSettings = SipSettings()
    agents: tuple[AgentUser, ...] = ()
    logins: LoginSettings = LoginSettings()
    default_tenant: StrictStr | None = None

    _empty = validator("agents", pre=True, allow_reuse=True)(empty_means_default)
    _some = validator("tenants", allow_reuse=True)(non_empty("{} should be non-empty: at least one tenant"))

    @root_validator(skip_on_failure=True)
    def _default_is_a_tenant(cls, values: dict[str, Any]) -> dict[str, Any]:
        default = values.get("default_tenant")
        if default and default not in values["tenants"]:
            raise problems([(("default_tenant",), f"{default!r} is not one of the tenants")])
        return values

    def tenant_for(self, dialled: str | None) -> tuple[str, Tenant]:
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

    @property
    def overflow_callbacks(self) -> bool:
        """Whether some tenant wants media streams over the limit told "all lines busy" and called back."""
        return any(tenant.overflow == "callback" for tenant in self.tenants.values())

    def voice_for(self, tenant: Tenant) -> str:
        return tenant.voice or self.models.tts[tenant.language]

    @property
    def cache_dir(self) -> Path:
        return Path(os.path.expanduser(self.models.cache_dir))


def normalize_number(number: str) -> str:
    digits = re.sub(r"[^0-9+*#]", "", number)
    return "+" + digits[2:] if digits.startswith("00") else digits


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> dict[Loc, str]:
    """Model and storage overrides from the environment; a language-specific one wins.

    Returns which variable set which location, for error messages.
    """
    used: dict[Loc, str] = {}

    def mapping(parent: dict[str, Any], name: str, default: Any) -> dict[str, Any]:
        """The mapping to override in; a wrong value in the file is left for validation to report."""
        if parent.get(name) is None:
            parent[name] = default
        return parent[name] if isinstance(parent[name], dict) else {}

    models = mapping(data, "models", {})
    defaults = ModelSettings()
    for kind, var in (("asr", "IVR_ASR_MODEL"), ("tts", "IVR_TTS_VOICE")):
        for lang in LANGUAGES:
            name = next((name for name in (f"{var}_{lang.upper()}", var) if env.get(name)), None)
            if name:
                mapping(models, kind, dict(getattr(defaults, kind)))[lang] = env[name]
                used[("models", kind, lang)] = name
    if env.get("IVR_MODEL_DIR"):
        models["cache_dir"], used[("models", "cache_dir")] = env["IVR_MODEL_DIR"], "IVR_MODEL_DIR"
    if forced_voice := env.get("IVR_TTS_VOICE"):
        # A forced voice also replaces the voices tenants picked for themselves.
        for number, tenant in (data.get("tenants") or {}).items() if isinstance(data.get("tenants"), dict) else ():
            if isinstance(tenant, dict) and tenant.get("voice"):
                tenant["voice"], used[("tenants", number, "voice")] = forced_voice, "IVR_TTS_VOICE"
    for name, var in (("storage", "IVR_DATABASE_URL"), ("dialog", "IVR_DIALOG_URL")):
        if env.get(var):
            mapping(data, name, {})["url"], used[(name, "url")] = env[var], var
    return used


def load_settings(path: str | Path = DEFAULT_SETTINGS_FILE, env: dict[str, str] | None = None) -> Settings:
    """Read, override from the environment and validate the settings file; ConfigError lists every problem."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    data, source = load_file(path, "settings file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the settings file must be a mapping of sections"])
    overridden = _apply_env(data, env)
    return validate(Settings, data, source, str(path), extra=agent_problems(data), env=overridden)


def replace(settings: Any, **changes: Any) -> Any:
    """A copy with some sections or fields swapped, validated again (tests and `ivr serve --port` use it)."""
    return dataclasses.replace(settings, **changes)
