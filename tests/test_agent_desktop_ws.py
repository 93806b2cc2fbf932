"""The agent desktop's websocket (/agent/ws) against the real ACD, without a browser, Rasa or speech models.

The app is the real `make_app` on a real SQLite storage with the users of
tests/data/ivr.test.yml. Callers are put straight into `runtime.acd` with a
fake `CallerLink` that records what the ACD and the agent did to them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.agents.desktop import CLOSE_REPLACED, MAX_NOTES
from ivr.agents.summary import summarize
from ivr.app import make_app
from ivr.queue.model import QueuedCall
from ivr.runtime import Runtime
from tests.agents import DE, PASSWORDS, UK

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0


class FakeCaller:
    """A `CallerLink` that remembers everything."""

    def __init__(self) -> None:
        self.agent: str | None = None
        self.audio: list[bytes] = []
        self.holds: list[bool] = []
        self.hung_up = False
        self.requeued_for: list[str] = []

    async def agent_connected(self, agent) -> None:
        self.agent = agent.username

    async def agent_audio(self, pcm16k: bytes) -> None:
        self.audio.append(pcm16k)

    async def hold(self, on: bool) -> None:
        self.holds.append(on)

    async def agent_hung_up(self) -> None:
        self.hung_up = True

    async def requeued(self, reason: str) -> None:
        self.requeued_for.append(reason)


@pytest.fixture
async def client(aiohttp_client, runtime: Runtime):
    client = await aiohttp_client(make_app(runtime))
    client.desktops = []
    yield client
    # Close the desktops and let the server log their agents out before the storage closes.
    for ws in client.desktops:
        await ws.close()
    await until(lambda: not runtime.acd.agents)


def queue_of(runtime: Runtime, tenant: str, purpose: str = "default") -> str:
    """The queue the dialog hands a caller of `tenant` to (as action_handoff picks it)."""
    return runtime.settings.tenants[tenant].queue_for(purpose)


def package_for(call_id: str, tenant: str = DE) -> dict[str, Any]:
    """A context package as Conversation.hand_off builds it: a caller ordering coffee machines asks for a person."""
    t0 = 1_700_000_000.0
    lines = [
        ("bot", "Willkommen bei Muster Versand GmbH.", None, None, None),
        ("caller", "ich möchte eine kaffeemaschine bestellen", 0.91, "place_order", 0.97),
        ("bot", "Wie viele möchten Sie?", None, None, None),
        ("caller", "zwei", 0.88, "inform", 0.93),
        ("caller", "ich will mit einem menschen sprechen", 0.85, "request_human", 0.99),
    ]
    transcript = [
        {"call_id": call_id, "speaker": s, "text": text, "start": t0 + 3 * i, "end": t0 + 3 * i + 2, "asr_confidence": asr,
         "intent": intent, "intent_confidence": conf, "meta": {}}
        for i, (s, text, asr, intent, conf) in enumerate(lines)
    ]  # fmt: skip
    return {
        "call_id": call_id,
        "tenant": tenant,
        "company": "Muster Versand GmbH",
        "language": "de",
        "caller": "+4915112345678",
        "dialled": tenant,
        "reason": "caller_request",
        "queue": "muster-orders",
        "intents": [
            {"intent": u["intent"], "confidence": u["intent_confidence"], "at": u["start"]}
            for u in transcript
            if u["intent"]
        ],
        "slots": {"product": "Kaffeemaschine", "quantity": 2.0},
        "form": {"name": "order_form", "requested_slot": "customer_number"},
        "transcript": transcript,
    }


async def enqueue(runtime: Runtime, call_id: str, tenant: str = DE, queue: str | None = None) -> FakeCaller:
    caller = FakeCaller()
    call = QueuedCall(call_id=call_id, tenant=tenant, queue=queue or queue_of(runtime, tenant), link=caller,
                      handoff_id=f"h-{call_id}", package=package_for(call_id, tenant))  # fmt: skip
    await runtime.acd.enqueue(call)
    return caller


async def desktop(client, username: str) -> aiohttp.ClientWebSocketResponse:
    """Log in (the cookie goes into the client's jar) and open the desktop socket."""
    resp = await client.post("/agent/login", json={"username": username, "password": PASSWORDS[username]})
    assert resp.status == 200, await resp.text()
    ws = await client.ws_connect("/agent/ws")
    client.desktops.append(ws)
    return ws


async def next_json(ws, type_: str | None = None, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next JSON message (of `type_`, skipping others and audio)."""

    async def read() -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if type_ is None or data["type"] == type_:
                    return data
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise AssertionError(f"socket closed while waiting for {type_!r}: {msg}")

    return await asyncio.wait_for(read(), timeout)


async def next_state(ws, state: str) -> None:
    while (await next_json(ws, "state"))["state"] != state:
        pass


async def ready(client, username: str) -> aiohttp.ClientWebSocketResponse:
    ws = await desktop(client, username)
    await next_json(ws, "hello")
    await next_state(ws, "offline")
    await ws.send_json({"type": "state", "state": "available"})
    await next_state(ws, "available")
    return ws


async def until(predicate, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_whole_call_from_offer_to_wrap_up(client, runtime: Runtime):
    ws = await desktop(client, "anna")
    hello = await next_json(ws)
    assert hello["type"] == "hello"  # first, before any state
    anna = next(u for u in runtime.settings.agents if u.username == "anna")
    assert hello["user"] == {"username": "anna", "name": "Anna Agent", "role": "agent", "tenants": [DE],
                             "skills": list(anna.skills)}  # fmt: skip
    assert hello["dispositions"] == list(runtime.settings.queue.dispositions)
    assert hello["companies"] == {DE: "Muster Versand GmbH"}  # only the tenants she sees
    assert set(hello["queues"]) == set(runtime.settings.tenants[DE].queues.values())
    assert not any(q.startswith("acme") for q in hello["queues"])
    assert await next_json(ws) == {"type": "state", "state": "offline"}

    await ws.send_json({"type": "state", "state": "available"})
    assert await next_json(ws) == {"type": "state", "state": "available"}

    caller = await enqueue(runtime, "call-1")
    assert await next_json(ws) == {"type": "state", "state": "ringing"}
    offer = await next_json(ws)
    assert offer["type"] == "offer" and offer["call_id"] == "call-1" and offer["tenant"] == DE
    assert offer["ring_timeout_s"] == runtime.settings.queue.ring_timeout_s and offer["handoff_id"] == "h-call-1"
    assert offer["package"] == package_for("call-1")
    assert offer["summary"] == (
        "Asked for a person while placing an order. Collected: product Kaffeemaschine, quantity 2. "
        "Was being asked for the customer number. Last intents: place_order, inform, request_human."
    )

    await ws.send_json({"type": "accept"})  # a field missing: named
    error = await next_json(ws)
    assert error["type"] == "error" and error["field"] == "call_id" and "call_id" in error["message"]

    await ws.send_json({"type": "accept", "call_id": "call-1"})
    assert await next_json(ws) == {"type": "state", "state": "on_call"}
    assert await next_json(ws) == {"type": "connected", "call_id": "call-1"}
    assert caller.agent == "anna"

    # Audio both ways: the caller's reaches the desktop as binary, the agent's reaches the caller.
    await runtime.acd.caller_audio("call-1", b"\x01\x02" * 320)
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == b"\x01\x02" * 320
    await ws.send_bytes(b"\x10\x00" * 320)
    await until(lambda: caller.audio)
    assert caller.audio == [b"\x10\x00" * 320]
    await ws.send_bytes(b"\x00" * 641)
    error = await next_json(ws, "error")
    assert error["field"] == "audio" and "even" in error["message"]

    # The caller's live transcript.
    line = {"type": "transcript", "speaker": "caller", "text": "hallo?", "final": True, "confidence": 0.8, "at": 1.0}
    await runtime.acd.caller_event("call-1", line)
    assert await next_json(ws) == {**line, "call_id": "call-1"}

    await ws.send_json({"type": "hold", "on": "yes"})
    assert (await next_json(ws, "error"))["field"] == "on"
    await ws.send_json({"type": "hold", "on": True})
    assert await next_json(ws) == {"type": "hold", "call_id": "call-1", "on": True}
    await ws.send_json({"type": "hold", "on": False})
    assert await next_json(ws) == {"type": "hold", "call_id": "call-1", "on": False}
    assert caller.holds == [True, False]

    await ws.send_json({"type": "mute", "on": True})
    assert await next_json(ws) == {"type": "mute", "on": True}
    await ws.send_bytes(b"\x20\x00" * 320)
    await ws.send_json({"type": "mute", "on": False})
    assert await next_json(ws) == {"type": "mute", "on": False}
    assert caller.audio == [b"\x10\x00" * 320]  # nothing while muted

    await ws.send_json({"type": "state", "state": "break"})
    assert (await next_json(ws, "error"))["message"] == "finish the call first"

    await ws.send_json({"type": "hangup"})
    assert await next_json(ws) == {"type": "state", "state": "wrap_up"}
    assert await next_json(ws) == {"type": "ended", "call_id": "call-1", "by": "agent"}
    assert caller.hung_up

    # Wrap-up: a disposition that is not configured, notes too long, then a good one.
    await ws.send_json({"type": "wrapup", "disposition": "sold_a_yacht", "notes": "x"})
    error = await next_json(ws)
    assert error["type"] == "error" and error["field"] == "disposition" and error["message"].startswith("disposition:")
    await ws.send_json({"type": "wrapup", "disposition": "resolved", "notes": "x" * (MAX_NOTES + 1)})
    assert (await next_json(ws))["field"] == "notes"
    assert await runtime.storage.wrapups("call-1") == []

    notes = "Customer wants 2 coffee machines, customer number unknown; call back tomorrow."
    await ws.send_json({"type": "wrapup", "disposition": "follow_up", "notes": notes})
    assert await next_json(ws) == {"type": "state", "state": "available"}
    assert await next_json(ws) == {"type": "wrapup_saved", "call_id": "call-1", "disposition": "follow_up"}

    [wrapup] = await runtime.storage.wrapups("call-1")
    assert (wrapup.call_id, wrapup.tenant, wrapup.agent, wrapup.disposition, wrapup.notes, wrapup.handoff_id) == (
        "call-1", DE, "anna", "follow_up", notes, "h-call-1")  # fmt: skip
    assert wrapup.created_at > 0
    events = await runtime.storage.events(call_id="call-1")
    verbs = [e.event for e in events]
    assert verbs == ["ENTERQUEUE", "CONNECT", "HOLD", "UNHOLD", "COMPLETEAGENT", "WRAPUP"], verbs
    wrap = events[-1]
    assert wrap.tenant == DE and wrap.data == {"agent": "anna", "disposition": "follow_up"}
    assert "notes" not in json.dumps([e.data for e in events]) and "coffee" not in json.dumps([e.data for e in events])

    # A second wrap-up for the same call is refused.
    await ws.send_json({"type": "wrapup", "disposition": "resolved"})
    assert (await next_json(ws))["message"] == "there is no call to wrap up"
    await ws.close()


async def test_the_socket_needs_a_login(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/agent/ws")
    assert caught.value.status == 401


async def test_a_socket_from_another_site_is_refused(client):
    await client.post("/agent/login", json={"username": "anna", "password": PASSWORDS["anna"]})
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/agent/ws", headers={"Origin": "https://evil.example"})
    assert caught.value.status == 403


async def test_an_agent_of_another_tenant_never_gets_the_offer(client, runtime: Runtime):
    carl = await ready(client, "carl")  # Acme (UK) only
    hello_queues = runtime.settings.tenants[UK].queues.values()
    await enqueue(runtime, "call-de", DE)
    await enqueue(runtime, "call-de-orders", DE, queue_of(runtime, DE, "orders"))
    # Nothing arrives for Carl: a ping is answered first.
    await carl.send_json({"type": "ping"})
    assert await next_json(carl) == {"type": "pong"}
    assert runtime.acd.calls["call-de"].agent is None

    # And the desktop's own check: even an offer the ACD got wrong never reaches the screen.
    link = runtime.acd.agents["carl"].link
    await link.send(
        {"type": "offer", "call_id": "call-de", "tenant": DE, "queue": "x", "package": package_for("call-de")}
    )
    await link.send(
        {"type": "offer", "call_id": "call-de", "tenant": UK, "queue": "x", "package": package_for("call-de", DE)}
    )
    await link.send({"type": "offer", "call_id": "call-de", "queue": "x", "package": {"caller": "+49151"}})
    await carl.send_json({"type": "ping"})
    assert await next_json(carl) == {"type": "pong"}

    # A caller of his own tenant does ring.
    await enqueue(runtime, "call-uk", UK)
    offer = await next_json(carl, "offer")
    assert offer["call_id"] == "call-uk" and offer["package"]["tenant"] == UK
    # A call without a stored package still rings (the offer's tenant is his).
    await link.send({"type": "offer", "call_id": "call-uk2", "tenant": UK, "queue": "x", "package": {}})
    assert (await next_json(carl, "offer"))["summary"] == "Handed over."
    assert runtime.acd.calls["call-uk"].queue in hello_queues
    await carl.close()


async def test_closing_the_socket_mid_call_puts_the_caller_back_at_the_head(client, runtime: Runtime):
    anna = await ready(client, "anna")
    caller = await enqueue(runtime, "call-2")
    await next_json(anna, "offer")
    await anna.send_json({"type": "accept", "call_id": "call-2"})
    await next_json(anna, "connected")
    ben = await ready(client, "ben")  # a colleague becomes free meanwhile

    await anna.close()  # tab closed, network gone: the same for the server
    # The caller hears "reconnecting" before the ACD has logged the agent off and removed her (it writes the
    # AGENTLOGOFF event in between): wait for the logout to finish, not for its first step.
    await until(lambda: caller.requeued_for and "anna" not in runtime.acd.agents)
    assert caller.requeued_for == ["agent_lost"]
    offer = await next_json(ben, "offer")  # first in line, offered to the next agent at once
    assert offer["call_id"] == "call-2" and offer["package"]["call_id"] == "call-2"
    call = runtime.acd.calls["call-2"]
    assert call.head and call.agent == "ben"
    verbs = [e.event for e in await runtime.storage.events(call_id="call-2")]
    assert verbs[:3] == ["ENTERQUEUE", "CONNECT", "AGENTDUMP"], verbs
    await ben.close()


async def test_transfer_only_within_the_calls_tenant(client, runtime: Runtime):
    anna = await ready(client, "anna")
    caller = await enqueue(runtime, "call-3")
    await next_json(anna, "offer")
    await anna.send_json({"type": "accept", "call_id": "call-3"})
    await next_json(anna, "connected")

    await anna.send_json({"type": "transfer", "queue": queue_of(runtime, UK)})
    error = await next_json(anna)
    assert error["type"] == "error" and error["field"] == "queue" and "Muster Versand GmbH" in error["message"]
    await anna.send_json({"type": "transfer"})
    assert (await next_json(anna))["field"] == "queue"

    target = queue_of(runtime, DE, "complaints")
    await anna.send_json({"type": "transfer", "queue": target})
    assert await next_json(anna) == {"type": "state", "state": "wrap_up"}
    assert await next_json(anna) == {"type": "ended", "call_id": "call-3", "by": "transfer"}
    await until(lambda: caller.requeued_for)
    assert caller.requeued_for == [f"transfer:{target}"]

    await anna.send_json({"type": "wrapup", "disposition": "escalated", "notes": ""})
    # Available again, and the transferred caller (in a queue she works) rings her once more at once.
    available, ringing, offer, saved = [await next_json(anna) for _ in range(4)]
    assert (available, ringing) == ({"type": "state", "state": "available"}, {"type": "state", "state": "ringing"})
    assert offer["type"] == "offer" and offer["call_id"] == "call-3" and offer["queue"] == target
    assert saved == {"type": "wrapup_saved", "call_id": "call-3", "disposition": "escalated"}
    [wrapup] = await runtime.storage.wrapups("call-3")
    assert wrapup.disposition == "escalated" and wrapup.agent == "anna"
    assert runtime.acd.calls["call-3"].queue == target and runtime.acd.calls["call-3"].agent == "anna"
    await anna.close()


async def test_bad_requests_name_what_is_wrong(client, runtime: Runtime):
    ws = await ready(client, "anna")
    for request, field in [
        ("not json", "message"),
        ("[1, 2]", "message"),
        (json.dumps({"state": "available"}), "type"),
        (json.dumps({"type": "dance"}), "type"),
        (json.dumps({"type": "state", "state": "on_call"}), "state"),
        (json.dumps({"type": "decline", "call_id": 7}), "call_id"),
    ]:
        await ws.send_str(request)
        error = await next_json(ws)
        assert error["type"] == "error" and error["field"] == field, (request, error)
        assert error["message"].startswith(f"{field}:"), error
    # Requests the ACD refuses come back with its message.
    await ws.send_json({"type": "accept", "call_id": "nope"})
    assert await next_json(ws) == {
        "type": "error",
        "message": "this call is no longer offered to you",
        "request": "accept",
    }
    await ws.send_json({"type": "hangup"})
    assert (await next_json(ws))["message"] == "you are not on a call"
    await ws.send_json({"type": "wrapup", "disposition": "resolved"})
    assert (await next_json(ws))["message"] == "there is no call to wrap up"
    # Only supervisors see the queues.
    await ws.send_json({"type": "snapshot"})
    assert "supervisors" in (await next_json(ws, "error"))["message"]
    await ws.close()


async def test_supervisors_get_the_queue_snapshot(client, runtime: Runtime):
    await enqueue(runtime, "call-4")
    sue = await desktop(client, "sue")
    await next_json(sue, "hello")
    await sue.send_json({"type": "snapshot"})
    snap = await next_json(sue, "snapshot")
    assert [(q["tenant"], q["queue"], q["waiting"]) for q in snap["queues"]] == [(DE, queue_of(runtime, DE), 1)]
    assert [a["username"] for a in snap["agents"]] == ["sue"]
    await sue.close()


async def test_a_second_desktop_of_the_same_user_replaces_the_first(client, runtime: Runtime):
    first = await ready(client, "anna")
    second = await desktop(client, "anna")
    assert await next_json(first) == {"type": "replaced"}
    msg = await asyncio.wait_for(first.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_REPLACED and msg.extra == "replaced"
    await next_json(second, "hello")
    await next_state(second, "offline")
    assert runtime.acd.agents["anna"].link is not None and len(runtime.acd.agents) == 1
    await second.close()


@pytest.mark.parametrize(
    "package, summary",
    [
        ({}, "Handed over."),
        ({"reason": "dtmf_agent", "slots": {}, "form": {"name": None, "requested_slot": None}, "intents": []},
         "Pressed 0 for a person."),
        ({"reason": "no_match", "form": {"name": "order_status_form", "requested_slot": "order_number"},
          "slots": {"order_number": None, "caller_number": "+49151", "handoff_reason": "no_match"},
          "intents": [{"intent": "order_status"}, {"intent": "inform"}]},
         "The bot did not understand the caller while asking where an order is. Was being asked for the order number. "
         "Last intents: order_status, inform."),
        ({"reason": "storm_warning", "slots": {"address_confirmed": False, "products": ["Toaster", "Mixer"]}},
         "Handed over (storm warning). Collected: address confirmed no, products Toaster, Mixer."),
    ],
)  # fmt: skip
def test_the_call_pop_summary(package: dict[str, Any], summary: str):
    assert summarize(package) == summary
