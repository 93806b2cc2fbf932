"""The fixed things a tenant's callers hear, so that they can be synthesized before the first call.

A fixed prompt is every sentence of the Rasa domain's responses in the tenant's
language whose placeholders the tenant alone fills (`{company}`, `{greeting}`),
and every FAQ answer the tenant configured. A sentence that depends on the
caller (an order number, a product, a quantity) stays dynamic and is
synthesized when said. Rendering these once at start-up takes Piper's ~300 ms per new sentence
off the first time each one is said (docs/performance.md).

Which variation a tenant hears follows the domain's convention
(tests/test_rasa_data.py): a variation conditioned on the `language` slot is
for that language, the unconditioned one is for languages without their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ivr.tenants import FAQ_TOPICS, Tenant

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def domain_files(domain: Path) -> list[Path]:
    """`dialogs/domain.yml`, or every YAML file under `dialogs/domain/` (Rasa merges them)."""
    return [domain] if domain.is_file() else sorted(domain.rglob("*.yml"))


def response_variations(domain: Path) -> dict[str, list[dict[str, Any]]]:
    """Response name → its variations, from every domain file."""
    responses: dict[str, list[dict[str, Any]]] = {}
    yaml = YAML(typ="safe")
    for path in domain_files(domain):
        data = yaml.load(path.read_text(encoding="utf-8")) or {}
        for name, variations in (data.get("responses") or {}).items():
            responses.setdefault(name, []).extend(v for v in variations or [] if isinstance(v, dict))
    return responses


def _language_of(variation: dict[str, Any]) -> str | None:
    for condition in variation.get("condition") or []:
        if condition.get("type") == "slot" and condition.get("name") == "language":
            return str(condition.get("value"))
    return None


def _texts_for(variations: list[dict[str, Any]], language: str) -> Iterator[str]:
    own = [v for v in variations if _language_of(v) == language]
    for variation in own or [v for v in variations if _language_of(v) is None]:
        if isinstance(variation.get("text"), str):
            yield variation["text"]


def _filled(text: str, values: dict[str, str]) -> str:
    """`text` with the tenant's placeholders filled; the caller's (`{order_number}`) stay as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def fixed_sentences(responses: dict[str, list[dict[str, Any]]], tenant: Tenant,
                    split: Callable[[str], list[str]]) -> list[str]:  # fmt: skip
    """What `tenant`'s callers can hear that no caller changes, sentence by sentence as `split` (the synthesizer's)
    cuts them, in the tenant's language, in domain order.

    A reply that names the caller's order still opens or ends with fixed sentences ("Ich fasse zusammen:",
    "Ist das richtig?"): those are fixed too, so even a dynamic reply's first audio is often ready.
    """
    values = {"company": tenant.company}
    if tenant.greeting:
        values["greeting"] = tenant.greeting
    texts = [
        _filled(text, values) for variations in responses.values() for text in _texts_for(variations, tenant.language)
    ]
    texts.extend(answer for topic in FAQ_TOPICS if (answer := tenant.faq_answer(topic, tenant.language)))
    sentences = (sentence for text in texts for sentence in split(text))
    return list(dict.fromkeys(s for s in sentences if not _PLACEHOLDER.search(s)))
