"""Static checks of the Rasa dialog project (config.yml, dialogs/, nlu/).

No model is trained here. The NLU data itself is checked in
tests/test_nlu_data.py, its held-out accuracy is measured by bench/nlu_eval.py.
"""

import re
from collections import defaultdict
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ivr.dialog.project import RasaProject

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yml"
DOMAIN_FILES = sorted((ROOT / "dialogs" / "domain").glob("*.yml"))
PROJECT = RasaProject(ROOT)  # the same paths `ivr train` / `ivr check` use
LANGUAGES = ("de", "en")

# Intents the IVR sends only as "/start_call", "/no_input": no NLU examples.
IVR_ONLY_INTENTS = {"start_call", "no_input"}

# Rasa UserWarnings `rasa data validate` is allowed to print. Everything else
# (unused responses, intents missing from the domain, ...) fails the test.
ALLOWED_WARNINGS = [
    # Rasa 3.6 merges retrieval intents found in the NLU data into the domain and
    # then reports the domain's own declaration of them as a duplicate.
    re.compile(r"The following duplicated intents have been found across multiple domain files: faq$"),
    # utter_faq/*: only the ResponseSelector's labels; callers hear the tenant's
    # answer, spoken by action_answer_faq.
    re.compile(r"The utterance 'utter_faq' is not used in any story or rule\.$"),
    # IVR-only intents without NLU examples
    re.compile(
        r"The intent '(start_call|no_input)' is listed in the domain file, "
        r"but is not found in the NLU training data\."
    ),
]

EN_CONDITION = [{"type": "slot", "name": "language", "value": "en"}]


def _load_yaml(path: Path):
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _domain_responses() -> dict[str, list[dict]]:
    responses: dict[str, list[dict]] = {}
    for path in DOMAIN_FILES:
        responses.update(_load_yaml(path).get("responses") or {})
    return responses


def _is_en_variation(variation: dict) -> bool:
    return variation.get("condition") == EN_CONDITION


def _is_default_variation(variation: dict) -> bool:
    return not variation.get("condition")


def _nlu_examples(path: Path) -> dict[str, list[str]]:
    """intent (incl. retrieval sub-intent) -> examples of one NLU yaml file."""
    result: dict[str, list[str]] = defaultdict(list)
    for block in _load_yaml(path).get("nlu") or []:
        if "intent" not in block:
            continue
        for line in str(block.get("examples", "")).splitlines():
            line = line.strip()
            if line.startswith("- "):
                result[block["intent"]].append(line[2:].strip())
    return result


def _training_examples(lang: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "nlu" / lang).glob("*.yml")):
        for intent, examples in _nlu_examples(path).items():
            result[intent].extend(examples)
    return result


def _responses_used_by_actions() -> set[str]:
    """Responses the custom actions utter (by name, or by a prefix such as `utter_help_{slot}`)."""
    used: set[str] = set()
    for path in (ROOT / "dialogs" / "actions").glob("*.py"):
        used |= set(re.findall(r'response=f?"(utter_[a-z_]*)', path.read_text(encoding="utf-8")))
        used |= set(re.findall(r'"(utter_[a-z_]+)"', path.read_text(encoding="utf-8")))
    return used


def _used_by_forms_or_actions(name: str, used: set[str]) -> bool:
    # utter_ask_<slot> is uttered by Rasa's forms; the rest by dialogs/actions/*.py
    return name.startswith("utter_ask_") or any(name == u or (u.endswith("_") and name.startswith(u)) for u in used)


def test_rasa_data_validate():
    proc = PROJECT.validate()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    used = _responses_used_by_actions()
    warnings = re.findall(r"rasa/[\w/]+\.py:\d+: UserWarning: (.*)", output)
    warnings = [
        w for w in warnings
        if not ((m := re.match(r"The utterance '(\w+)' is not used in any story or rule\.", w)) and _used_by_forms_or_actions(m.group(1), used))
    ]  # fmt: skip
    unexpected = [w for w in warnings if not any(p.search(w) for p in ALLOWED_WARNINGS)]
    assert not unexpected, "unexpected warnings from rasa data validate:\n" + "\n".join(unexpected)
    assert "No story structure conflicts found" in output, output[-5000:]


def test_every_response_an_action_utters_exists():
    responses = set(_domain_responses())
    missing = [u for u in _responses_used_by_actions() if not u.endswith("_") and u not in responses]
    assert not missing, f"dialogs/actions/ utter responses the domain lacks: {missing}"


def test_every_response_is_bilingual():
    missing = []
    for name, variations in _domain_responses().items():
        variations = variations or []
        if not any(_is_default_variation(v) for v in variations):
            missing.append(f"{name}: no default (German) variation")
        if not any(_is_en_variation(v) for v in variations):
            missing.append(f"{name}: no variation with condition language == en")
    assert not missing, "responses lacking a language variation:\n" + "\n".join(missing)


def test_custom_payload_on_every_language_variation():
    """If one variation carries an IVR payload, all must carry the same one."""
    mismatched = []
    for name, variations in _domain_responses().items():
        payloads = [v.get("custom") for v in variations or []]
        if any(payloads) and any(p != payloads[0] for p in payloads):
            mismatched.append(f"{name}: {payloads}")
    assert not mismatched, "custom payload differs between variations:\n" + "\n".join(mismatched)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_domain_intents_and_training_data_agree(lang):
    """Every domain intent has training data (but the IVR-only ones), and no trained intent is missing from the domain.

    How much data each intent has is checked in tests/test_nlu_data.py.
    """
    domain_intents = {
        i if isinstance(i, str) else next(iter(i)) for p in DOMAIN_FILES for i in _load_yaml(p).get("intents") or []
    }
    trained_intents = {intent.split("/")[0] for intent in _training_examples(lang)}
    assert trained_intents <= domain_intents, trained_intents - domain_intents
    assert domain_intents - IVR_ONLY_INTENTS <= trained_intents, domain_intents - IVR_ONLY_INTENTS - trained_intents
