"""Static checks of the NLU training data (nlu/de, nlu/en), the held-out sets
(tests/data/nlu_heldout_*.yml) and the FAQ responses (dialogs/domain/faq.yml).

Fast: nothing is trained. The held-out accuracy itself is measured by
bench/nlu_eval.py.
"""

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("de", "en")
HELDOUT = {lang: ROOT / "tests" / "data" / f"nlu_heldout_{lang}.yml" for lang in LANGUAGES}
FAQ_DOMAIN = ROOT / "dialogs" / "domain" / "faq.yml"

INTENTS = (
    "greet",
    "goodbye",
    "affirm",
    "deny",
    "thank",
    "request_human",
    "bot_challenge",
    "help",
    "repeat",
    "out_of_scope",
    "place_order",
    "order_status",
    "cancel_order",
    "report_problem",
    "inform",
    "cancel",
    "angry",
    "dont_know",
)
FAQ_TOPICS = (
    "opening_hours",
    "shipping_time",
    "shipping_cost",
    "delivery_countries",
    "returns",
    "exchange",
    "payment_methods",
    "invoice_copy",
    "warranty",
    "repair",
    "data_protection",
    "contact_address",
    "order_change",
    "vouchers",
    "business_customers",
    "product_availability",
    "account_password",
    "store_locations",
)
IVR_ONLY_INTENTS = ("start_call", "no_input")
MIN_TRAIN_PER_INTENT = 40
MIN_TRAIN_PER_FAQ = 12
MIN_HELDOUT = 8

ENTITIES = {"product", "number", "ticket_category", "urgency"}
CANONICAL = {
    "ticket_category": {"defect", "delivery", "billing", "service", "other"},
    "urgency": {"high", "normal"},
}
EN_CONDITION = [{"type": "slot", "name": "language", "value": "en"}]

# Rasa's YAML annotation: [text](entity) or [text]{"entity": ..., "value": ...}
ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<name>[^)]+)\)|(?P<json>\{[^}]*\}))")


def _load_yaml(path: Path):
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _items(block: dict) -> list[str]:
    return [
        line.strip()[2:].strip()
        for line in str(block.get("examples", "")).splitlines()
        if line.strip().startswith("- ")
    ]


def _entities(example: str) -> list[tuple[str, str, str]]:
    """(text, entity, value) of every annotation in one example."""
    result = []
    for m in ANNOTATION.finditer(example):
        if m.group("name"):
            result.append((m.group("text"), m.group("name"), m.group("text")))
        else:
            data = json.loads(m.group("json"))
            result.append((m.group("text"), data.get("entity"), data.get("value", m.group("text"))))
    return result


def _plain(example: str) -> str:
    return ANNOTATION.sub(lambda m: m.group("text"), example)


def normalize(example: str) -> str:
    """Text without annotations, lowercased, whitespace folded."""
    return " ".join(_plain(example).lower().split())


def _examples(paths) -> dict[str, list[str]]:
    result: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for block in _load_yaml(path).get("nlu") or []:
            if "intent" in block:
                result[block["intent"]].extend(_items(block))
    return result


def _nlu_files(lang: str) -> list[Path]:
    return sorted((ROOT / "nlu" / lang).glob("*.yml"))


def _training(lang: str) -> dict[str, list[str]]:
    return _examples(_nlu_files(lang))


def _heldout(lang: str) -> dict[str, list[str]]:
    return _examples([HELDOUT[lang]])


def _blocks(kind: str):
    for lang in LANGUAGES:
        for path in _nlu_files(lang):
            for block in _load_yaml(path).get("nlu") or []:
                if kind in block:
                    yield path, block


def _expected_intents() -> list[str]:
    return list(INTENTS) + [f"faq/{t}" for t in FAQ_TOPICS]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_training_data_covers_every_intent(lang):
    examples = _training(lang)
    counts = {i: len({normalize(e) for e in ex}) for i, ex in examples.items()}
    minimum = {i: MIN_TRAIN_PER_FAQ if i.startswith("faq/") else MIN_TRAIN_PER_INTENT for i in _expected_intents()}
    too_few = {i: counts.get(i, 0) for i, n in minimum.items() if counts.get(i, 0) < n}
    assert not too_few, f"intents with too few distinct examples ({lang}), need {minimum}: {too_few}"
    unexpected = set(examples) - set(_expected_intents())
    assert not unexpected, f"intents not in the list ({lang}): {unexpected}"
    assert not set(examples) & set(IVR_ONLY_INTENTS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_duplicate_training_examples(lang):
    seen = Counter(normalize(e) for ex in _training(lang).values() for e in ex)
    dupes = sorted(e for e, n in seen.items() if n > 1)
    assert not dupes, f"duplicate training examples ({lang}): {dupes}"


def test_no_example_in_two_intents():
    owner: dict[str, set] = defaultdict(set)
    for lang in LANGUAGES:
        for intent, examples in _training(lang).items():
            for ex in examples:
                owner[normalize(ex)].add(intent)
    clashes = {ex: sorted(i) for ex, i in owner.items() if len(i) > 1}
    assert not clashes, clashes


@pytest.mark.parametrize("lang", LANGUAGES)
def test_heldout_covers_every_intent(lang):
    heldout = _heldout(lang)
    too_few = {
        i: len({normalize(e) for e in heldout.get(i, [])})
        for i in _expected_intents()
        if len({normalize(e) for e in heldout.get(i, [])}) < MIN_HELDOUT
    }
    assert not too_few, f"held-out intents with fewer than {MIN_HELDOUT} examples ({lang}): {too_few}"
    assert set(heldout) <= set(_expected_intents()), set(heldout) - set(_expected_intents())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_heldout_example_not_in_training(lang):
    trained = {normalize(e) for lang in LANGUAGES for ex in _training(lang).values() for e in ex}
    leaked = sorted(normalize(e) for ex in _heldout(lang).values() for e in ex if normalize(e) in trained)
    assert not leaked, f"held-out examples also in training data: {leaked}"
    seen = Counter(normalize(e) for ex in _heldout(lang).values() for e in ex)
    assert not [e for e, n in seen.items() if n > 1], "duplicate held-out examples"


def test_every_faq_topic_has_a_bilingual_response():
    responses = _load_yaml(FAQ_DOMAIN).get("responses") or {}
    expected = {f"utter_faq/{t}" for t in FAQ_TOPICS}
    assert set(responses) == expected, set(responses) ^ expected
    for name, variations in responses.items():
        assert any(v.get("text") and not v.get("condition") for v in variations), f"{name}: no German default"
        assert any(v.get("text") and v.get("condition") == EN_CONDITION for v in variations), (
            f"{name}: no English variation"
        )


def _all_examples():
    for lang in LANGUAGES:
        for source, examples in (("training", _training(lang)), ("held-out", _heldout(lang))):
            for intent, exs in examples.items():
                for ex in exs:
                    yield lang, source, intent, ex


def test_entity_annotations_use_only_the_four_entities():
    bad = []
    for lang, source, intent, ex in _all_examples():
        for text, entity, value in _entities(ex):
            if entity not in ENTITIES:
                bad.append(f"{lang} {source} {intent}: {ex}")
            elif entity in CANONICAL and value not in CANONICAL[entity] and value not in _synonym_map():
                bad.append(f"{lang} {source} {intent}: {text!r} -> {value!r} is no canonical {entity}")
            elif entity not in CANONICAL and value != text:
                bad.append(f"{lang} {source} {intent}: {entity} keeps the spoken text, not {value!r}")
        # leftover brackets = an annotation Rasa would not parse
        if re.search(r"[\[\]{}]", _plain(ex)):
            bad.append(f"{lang} {source} {intent}: malformed annotation: {ex}")
    assert not bad, "\n".join(bad)


def _synonym_map() -> dict[str, str]:
    mapping = {}
    for _, block in _blocks("synonym"):
        for item in _items(block):
            mapping[item.lower()] = block["synonym"]
    return mapping


def test_synonyms_map_only_to_canonical_values():
    canonical = set().union(*CANONICAL.values())
    targets = {block["synonym"] for _, block in _blocks("synonym")}
    assert targets <= canonical, targets - canonical
    # a phrase maps to one value only
    owner: dict[str, set] = defaultdict(set)
    for _, block in _blocks("synonym"):
        for item in _items(block):
            owner[item.lower()].add(block["synonym"])
    assert not {k: v for k, v in owner.items() if len(v) > 1}
    # every annotated category/urgency phrase maps to the value it is annotated with
    synonyms = _synonym_map()
    wrong = []
    for lang, source, intent, ex in _all_examples():
        if source != "training":
            continue
        for text, entity, value in _entities(ex):
            if entity in CANONICAL and synonyms.get(text.lower()) != value:
                wrong.append(f"{lang} {intent}: {text!r} annotated {value!r}, synonyms: {synonyms.get(text.lower())!r}")
    assert not wrong, "\n".join(wrong)


def test_number_regex_and_product_lookup():
    regexes = {block["regex"]: _items(block) for _, block in _blocks("regex")}
    assert set(regexes) == {"number"}
    pattern = re.compile(regexes["number"][0])
    assert pattern.search("bestellnummer 1 2 3 4 5 6").group(0) == "1 2 3 4 5 6"
    assert pattern.search("3 stück").group(0) == "3"
    lookups = {block["lookup"] for _, block in _blocks("lookup")}
    assert lookups == {"product"}
    # every annotated number is a number the regex matches, or number words
    for lang, source, _intent, ex in _all_examples():
        for text, entity, _ in _entities(ex):
            if entity == "number" and re.search(r"\d", text):
                assert pattern.fullmatch(text), f"{lang} {source}: number span {text!r} in {ex!r}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_rasa_reads_the_same_annotations(lang):
    """Rasa's own reader sees every example and entity this file's parser sees."""
    from rasa.shared.nlu.training_data.loading import load_data

    for path in [*_nlu_files(lang), HELDOUT[lang]]:
        data = load_data(str(path))
        ours = _examples([path])
        assert len(data.intent_examples) == sum(len(v) for v in ours.values()), path
        n_entities = sum(len(_entities(e)) for v in ours.values() for e in v)
        assert sum(len(m.get("entities") or []) for m in data.training_examples) == n_entities, path
