"""Parse every held-out utterance with a trained model and print the results as JSON (for tests/test_rasa_load.py).

Usage: python tests/rasa_parse.py MODEL {rasa,ivr}
`rasa` loads the model with Rasa's own loader, `ivr` with ivr.dialog.rasa_main's.
Prints one JSON object: utterance -> intent ranking, entities and FAQ topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent


async def main(model: str, loader: str) -> None:
    if loader == "ivr":
        from ivr.dialog.rasa_main import install

        install()
    from rasa.core.agent import Agent
    from rasa.shared.nlu.training_data.loading import load_data

    logging.disable(logging.WARNING)
    agent = Agent.load(model)
    results = {}
    for lang in ("de", "en"):
        for example in load_data(str(ROOT / "tests" / "data" / f"nlu_heldout_{lang}.yml")).training_examples:
            text = example.get("text")
            parsed = await agent.parse_message(text)
            selector = parsed.get("response_selector", {}).get("faq", {}).get("response", {})
            results[text] = {
                "ranking": [(i["name"], i["confidence"]) for i in parsed.get("intent_ranking", [])],
                "entities": [
                    (e["entity"], e["start"], e["end"], e.get("value"), e.get("confidence_entity"))
                    for e in parsed.get("entities", [])
                ],  # fmt: skip
                "faq": (selector.get("intent_response_key"), selector.get("confidence")),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
