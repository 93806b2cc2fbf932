"""Conversation tests: scripted calls a business writes in YAML, run against the text endpoint.

A file in `tests/conversations/` is one call:

    name: Bestellung mit Korrektur
    to: "+4930123456"          # dialled number: selects the tenant
    from: "+4917612345678"     # caller ID (optional)
    turns:
      - expect: {reply: "Muster Versand"}        # the greeting
      - say: "ich möchte zwei kaffeemaschinen bestellen"
        expect: {active_loop: order_form, requested_slot: customer_number}
      - dtmf: "48213#"
      - no_input: true
        expect: {reply: ["nicht gehört"], intent: null}
      - say: "zwei sieben eins acht zwei acht"
        asr_confidence: 0.4      # how sure the recognizer was: numbers below
                                 # dialog.confirm_below_confidence are read back
    stored:                    # checked in the database after the call
      orders: {count: 1, status: placed, quantity: 2}

`expect` keys: `reply` (a substring, or a list of substrings, of the bot's
reply, case-insensitive), `not_reply`, `intent`, `active_loop`,
`requested_slot`, `slots` (a mapping of slot → value), `handoff` (a reason, or
true/false), `hangup` (true/false), `ended`. `stored` counts what the call
wrote: `orders`, `tickets`, `callbacks`, `handoffs`, `events` (event names).

`ivr test` runs every file; pytest runs the same files (tests/test_conversations.py),
so a business's conversation tests and the project's own tests are one thing.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ivr.errors import ConfigError
from ivr.storage import EventName, Storage

TURN_KEYS = {"say", "dtmf", "no_input", "expect", "asr_confidence"}
EXPECT_KEYS = {"reply", "not_reply", "intent", "active_loop", "requested_slot", "slots", "handoff", "hangup", "ended"}
STORED_KEYS = {"orders", "tickets", "callbacks", "handoffs", "events"}


@dataclass
class Script:
    path: Path
    name: str
    to: str
    caller: str | None
    turns: list[dict[str, Any]]
    stored: dict[str, Any] = field(default_factory=dict)


def load_script(path: Path) -> Script:
    """Read and check one file; errors name the file, the turn and the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError([f"{path}:{mark.line + 1 if mark else 1}: invalid YAML: {exc}"]) from exc
    problems = []
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list) or not data.get("to"):
        raise ConfigError([f"{path}: a conversation test needs `to` (dialled number) and a list of `turns`"])
    for i, turn in enumerate(data["turns"], 1):
        if not isinstance(turn, dict) or not set(turn) <= TURN_KEYS:
            problems.append(f"{path}: turns[{i}]: keys must be among {sorted(TURN_KEYS)}, got {turn!r}")
            continue
        if len({"say", "dtmf", "no_input"} & set(turn)) > 1 or (i > 1 and not {"say", "dtmf", "no_input"} & set(turn)):
            problems.append(
                f"{path}: turns[{i}]: exactly one of say, dtmf, no_input (only the first turn, the greeting, has none)"
            )
        unknown = set(turn.get("expect") or {}) - EXPECT_KEYS
        if unknown:
            problems.append(f"{path}: turns[{i}].expect: unknown keys {sorted(unknown)}; known: {sorted(EXPECT_KEYS)}")
    unknown = set(data.get("stored") or {}) - STORED_KEYS
    if unknown:
        problems.append(f"{path}: stored: unknown keys {sorted(unknown)}; known: {sorted(STORED_KEYS)}")
    if problems:
        raise ConfigError(problems)
    return Script(path, str(data.get("name") or path.stem), str(data["to"]), data.get("from"), data["turns"],
                  data.get("stored") or {})  # fmt: skip


def load_scripts(folder: Path) -> list[Script]:
    return [load_script(p) for p in sorted(folder.glob("*.yml"))]


def check_turn(where: str, expect: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """What differs between the turn's expectations and the endpoint's answer."""
    problems = []
    reply = " ".join(result.get("replies") or [])
    wanted = expect.get("reply")
    for part in [wanted] if isinstance(wanted, str) else wanted or []:
        if part.lower() not in reply.lower():
            problems.append(f"{where}: reply {reply!r} does not contain {part!r}")
    unwanted = expect.get("not_reply")
    for part in [unwanted] if isinstance(unwanted, str) else unwanted or []:
        if part.lower() in reply.lower():
            problems.append(f"{where}: reply {reply!r} contains {part!r}")
    for key in ("intent", "active_loop", "requested_slot", "hangup", "ended"):
        if key in expect and result.get(key) != expect[key]:
            problems.append(f"{where}: {key} is {result.get(key)!r}, expected {expect[key]!r} (reply: {reply!r})")
    for slot, value in (expect.get("slots") or {}).items():
        actual = (result.get("slots") or {}).get(slot)
        if actual != value and str(actual) != str(value):
            problems.append(f"{where}: slot {slot} is {actual!r}, expected {value!r}")
    if "handoff" in expect:
        handoff = result.get("handoff")
        wanted_handoff = expect["handoff"]
        if wanted_handoff is True and not handoff or wanted_handoff is False and handoff:
            problems.append(f"{where}: handoff is {handoff!r}, expected {wanted_handoff!r} (reply: {reply!r})")
        if isinstance(wanted_handoff, str) and (not handoff or handoff.get("reason") != wanted_handoff):
            problems.append(f"{where}: handoff is {handoff!r}, expected reason {wanted_handoff!r} (reply: {reply!r})")
    return problems


async def run_script(base_url: str, script: Script, storage: Storage | None = None) -> tuple[list[str], str]:
    """Plays one script over HTTP; returns the problems found and the conversation id."""
    problems: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(url, data=json.dumps(body)) as resp:
                if resp.status != 200:
                    return {"error": f"HTTP {resp.status}: {(await resp.text())[:200]}"}
                return await resp.json()

        result = await post(f"{base_url}/api/conversations", {"to": script.to, "from": script.caller})
        cid = result.get("conversation_id", "")
        for i, turn in enumerate(script.turns, 1):
            where = f"{script.path.name}: turns[{i}]"
            if i > 1:
                if result.get("ended"):
                    problems.append(f"{where}: the call already ended (reply: {result.get('replies')!r})")
                    break
                body = (
                    {"text": turn["say"]}
                    if "say" in turn
                    else {"dtmf": str(turn["dtmf"])}
                    if "dtmf" in turn
                    else {"no_input": True}
                )
                if "asr_confidence" in turn:
                    body["asr_confidence"] = turn["asr_confidence"]
                result = await post(f"{base_url}/api/conversations/{cid}/messages", body)
            if "error" in result:
                problems.append(f"{where}: {result['error']}")
                break
            problems += check_turn(where, turn.get("expect") or {}, result)
        if not result.get("ended") and cid:
            async with http.delete(f"{base_url}/api/conversations/{cid}"):
                pass
    if storage is not None and script.stored:
        problems += await check_stored(script, cid, storage)
    return problems, cid


async def check_stored(script: Script, call_id: str, storage: Storage) -> list[str]:
    """What the call wrote, found through the call-event log of that call."""
    events = await storage.events(call_id=call_id)
    names = [e.event for e in events]
    problems = []
    where = f"{script.path.name}: stored"
    for kind, event_name in (("orders", EventName.ORDER_PLACED), ("tickets", EventName.TICKET_CREATED), ("callbacks", EventName.CALLBACK_REQUESTED),
                       ("handoffs", EventName.HANDOFF)):  # fmt: skip
        wanted = script.stored.get(kind)
        if wanted is None:
            continue
        count = wanted.get("count") if isinstance(wanted, dict) else wanted
        if names.count(event_name) != count:
            problems.append(f"{where}.{kind}: {names.count(event_name)} {event_name} events, expected {count}")
    tenant = events[0].tenant if events else ""
    for event in events:
        if event.event == EventName.ORDER_PLACED and isinstance(script.stored.get("orders"), dict):
            order = await storage.get_order(tenant, event.data["order_number"])
            problems += _compare(f"{where}.orders", script.stored["orders"], _order_facts(order))
        if event.event == EventName.TICKET_CREATED and isinstance(script.stored.get("tickets"), dict):
            ticket = await storage.get_ticket(tenant, event.data["ticket_number"])
            problems += _compare(f"{where}.tickets", script.stored["tickets"], ticket.__dict__ if ticket else {})
    for name in script.stored.get("events") or []:
        if name not in names:
            problems.append(f"{where}.events: no {name} event (logged: {names})")
    return problems


def _order_facts(order: Any) -> dict[str, Any]:
    if order is None:
        return {}
    return {"status": order.status, "quantity": sum(line.quantity for line in order.lines),
            "sku": order.lines[0].sku if order.lines else None, "customer_number": order.customer_number}  # fmt: skip


def _compare(where: str, wanted: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in wanted.items():
        if key == "count":
            continue
        if isinstance(value, str) and value.startswith("re:"):
            if not re.search(value[3:], str(actual.get(key, ""))):
                problems.append(f"{where}.{key}: {actual.get(key)!r} does not match {value[3:]!r}")
        elif actual.get(key) != value:
            problems.append(f"{where}.{key}: {actual.get(key)!r}, expected {value!r}")
    return problems


async def run_all(base_url: str, scripts: list[Script], storage: Storage | None = None) -> dict[str, list[str]]:
    results = {}
    for script in scripts:
        problems, _ = await run_script(base_url, script, storage)
        results[script.path.name] = problems
    return results


def main_sync(base_url: str, folder: Path, storage: Storage | None) -> int:
    results = asyncio.run(run_all(base_url, load_scripts(folder), storage))
    for name, problems in results.items():
        print(f"{'PASS' if not problems else 'FAIL'} {name}")
        for problem in problems:
            print(f"    {problem}")
    failed = sum(1 for p in results.values() if p)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
