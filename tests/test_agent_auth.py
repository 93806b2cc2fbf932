"""Agent logins and the call data API: nobody reads a transcript without a login, nobody outside their tenants.

The app is the real `make_app` on a real SQLite storage, with the users of
tests/data/ivr.test.yml; no Rasa and no speech models are needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from ivr.agents.auth import AUTH, COOKIE, current_user
from ivr.agents.login_limits import LoginThrottle
from ivr.agents.passwords import hash_password, verify_password
from ivr.agents.sessions import SessionStore
from ivr.app import make_app
from ivr.runtime import Runtime
from ivr.storage import CallRecord, Handoff, Utterance, Wrapup
from tests.agents import DE, PASSWORDS, UK, basic

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "handoff.schema.json").read_text(encoding="utf-8"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def supervisors_only(request: web.Request) -> web.Response:
    user = await current_user(request, roles={"supervisor", "admin"})
    return web.json_response({"username": user.username})


@pytest.fixture
async def client(aiohttp_client, runtime: Runtime):
    app = make_app(runtime)
    app.router.add_get("/api/test/supervisors-only", supervisors_only)
    return await aiohttp_client(app)


async def login(client, username: str, password: str | None = None) -> aiohttp.ClientResponse:
    return await client.post("/agent/login", json={"username": username, "password": password or PASSWORDS[username]})


async def store_handed_off_call(storage, call_id: str, tenant: str, handoff_id: str) -> dict:
    """A call as Conversation.hand_off leaves it: call, transcript lines, the context package."""
    company = "Acme Supplies Ltd" if tenant == UK else "Muster Versand GmbH"
    language = "en" if tenant == UK else "de"
    await storage.start_call(CallRecord(call_id, tenant, company, language, "media_stream", tenant, "+4917099", 100.0))
    lines = [
        Utterance(call_id, "bot", f"Welcome to {company}.", 100.0, 102.0, meta={"barge_in_allowed": True}),
        Utterance(call_id, "caller", "where is my order", 103.0, 104.0, 0.91, "order_status", 0.95),
        Utterance(call_id, "caller", "I want to talk to a person", 110.0, 111.5, 0.88, "request_human", 0.99),
    ]
    for line in lines:
        await storage.add_utterance(line)
    package = {
        "call_id": call_id,
        "tenant": tenant,
        "company": company,
        "language": language,
        "caller": "+4917099",
        "dialled": tenant,
        "reason": "caller_request",
        "queue": "acme-sales",
        "intents": [
            {"intent": "order_status", "confidence": 0.95, "at": 103.0},
            {"intent": "request_human", "confidence": 0.99, "at": 110.0},
        ],
        "slots": {"order_number": "314159"},
        "form": {"name": "order_status_form", "requested_slot": "unsure_confirmed"},
        "transcript": [
            {
                k: getattr(u, k)
                for k in (
                    "call_id",
                    "speaker",
                    "text",
                    "start",
                    "end",
                    "asr_confidence",
                    "intent",
                    "intent_confidence",
                    "meta",
                )
            }  # fmt: skip
            for u in lines
        ],
    }
    await storage.save_handoff(Handoff(handoff_id, call_id, tenant, "caller_request", 112.0, package))
    # After the handoff the transcript goes on (waiting, then with the agent).
    await storage.add_utterance(Utterance(call_id, "caller", "hello are you there", 130.0, 131.0, 0.8))
    return package


# No access without a login


@pytest.mark.parametrize("path", ["/api/handoffs/x", "/api/calls/x", "/api/me"])
async def test_no_access_without_a_login(client, path: str):
    resp = await client.get(path)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="ivr"'
    assert "log in" in (await resp.json())["error"]


async def test_the_desktop_gets_no_basic_challenge_so_browsers_show_no_password_dialog(client):
    resp = await client.get("/api/me", headers={"X-Requested-With": "fetch"})
    assert resp.status == 401 and "WWW-Authenticate" not in resp.headers


async def test_a_call_of_the_store_is_not_readable_without_a_login(client, runtime: Runtime):
    await store_handed_off_call(runtime.storage, "CA1", DE, "h1")
    for path in ("/api/calls/CA1", "/api/handoffs/h1"):
        resp = await client.get(path)
        assert resp.status == 401
        assert "Muster" not in await resp.text()


# Logging in and out


async def test_wrong_password_and_unknown_user_are_refused_alike(client):
    wrong = await login(client, "anna", "not-her-password")
    unknown = await login(client, "nobody", "whatever")
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json() == {"error": "wrong username or password"}
    assert COOKIE not in wrong.cookies and "WWW-Authenticate" not in wrong.headers


async def test_login_sets_an_http_only_strict_cookie_and_me_answers(client):
    resp = await login(client, "anna")
    assert resp.status == 200
    assert await resp.json() == {
        "username": "anna",
        "name": "Anna Agent",
        "role": "agent",
        "tenants": [DE],
        "skills": ["muster-general", "muster-orders", "muster-complaints"],
    }
    cookie = resp.cookies[COOKIE]
    assert len(cookie.value) >= 40
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    me = await client.get("/api/me")
    assert me.status == 200 and (await me.json())["username"] == "anna"
    assert me.headers["Cache-Control"] == "no-store"


async def test_a_login_form_of_this_site_works_too(client):
    url = client.make_url("/")
    origin = f"{url.scheme}://{url.host}:{url.port}"  # what a browser sends with a form of this site
    resp = await client.post("/agent/login", data={"username": "carl", "password": PASSWORDS["carl"]},
                             headers={"Origin": origin})  # fmt: skip
    assert resp.status == 200 and (await resp.json())["tenants"] == [UK]


async def test_a_login_without_password_is_a_bad_request(client):
    assert (await client.post("/agent/login", json={"username": "anna"})).status == 400
    assert (await client.post("/agent/login", data="{nope", headers={"Content-Type": "application/json"})).status == 400


async def test_logout_ends_the_session_also_for_a_copied_cookie(client):
    token = (await login(client, "ben")).cookies[COOKIE].value
    resp = await client.post("/agent/logout")
    assert resp.status == 200
    assert (await client.get("/api/me")).status == 401
    client.session.cookie_jar.update_cookies({COOKIE: token})
    assert (await client.get("/api/me")).status == 401


async def test_a_new_login_replaces_the_old_session(client):
    first = (await login(client, "ben")).cookies[COOKIE].value
    second = (await login(client, "ben")).cookies[COOKIE].value
    assert first != second
    client.session.cookie_jar.update_cookies({COOKIE: first})
    assert (await client.get("/api/me")).status == 401


async def test_roles_are_checked(client):
    await login(client, "anna")
    resp = await client.get("/api/test/supervisors-only")
    assert resp.status == 403 and "supervisor" in (await resp.json())["error"]
    await login(client, "sue")
    assert (await client.get("/api/test/supervisors-only")).status == 200


# Brute force


async def test_five_failures_lock_the_username_at_that_address_for_five_minutes(client, caplog):
    clock = Clock()
    client.app[AUTH].throttle = LoginThrottle(clock=clock)
    caplog.set_level(logging.INFO, logger="ivr.agents")
    for _ in range(5):
        assert (await login(client, "anna", "guess-123")).status == 401
    locked = await login(client, "anna")  # the right password does not help now
    assert locked.status == 429 and int(locked.headers["Retry-After"]) == 300
    assert (await client.get("/api/me", auth=basic("anna"))).status == 429  # nor does Basic auth
    assert (await login(client, "ben")).status == 200  # other users are not affected
    clock.now += 299
    assert (await login(client, "anna")).status == 429
    clock.now += 2
    assert (await login(client, "anna")).status == 200

    failures = [r for r in caplog.records if r.getMessage() == "agent.login_failed"]
    assert len(failures) == 5 and {r.username for r in failures} == {"anna"}
    assert failures[-1].failures == 5 and failures[-1].locked is True
    logged = " ".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "guess-123" not in logged and PASSWORDS["anna"] not in logged and "127.0.0.1" not in logged


async def test_failures_spread_over_more_than_the_window_do_not_lock(client):
    clock = Clock()
    client.app[AUTH].throttle = LoginThrottle(clock=clock)
    for _ in range(8):
        assert (await login(client, "anna", "guess")).status == 401
        clock.now += 80  # four failures per five minutes at most
    assert (await login(client, "anna")).status == 200


async def test_parallel_guesses_cannot_overtake_the_limit(client):
    guesses = await asyncio.gather(*(login(client, "ben", f"guess-{i}") for i in range(12)))
    assert sorted(r.status for r in guesses) == [401] * 5 + [429] * 7


async def test_a_success_in_between_does_not_reset_the_count(client):
    for _ in range(4):
        assert (await login(client, "sue", "guess")).status == 401
    assert (await client.get("/api/me", auth=basic("sue"))).status == 200  # e.g. a machine's valid request
    assert (await login(client, "sue", "guess")).status == 401
    assert (await login(client, "sue")).status == 429


# HTTP Basic for machines


async def test_basic_auth_works_for_the_api(client):
    resp = await client.get("/api/me", auth=basic("root"))
    assert resp.status == 200 and (await resp.json())["tenants"] == ["*"]
    assert COOKIE not in resp.cookies  # machines get no session
    wrong = await client.get("/api/me", auth=aiohttp.BasicAuth("root", "nope"))
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"] == 'Basic realm="ivr"'
    garbage = await client.get("/api/me", headers={"Authorization": "Basic !!!"})
    assert garbage.status == 401


# Tenant scope


async def test_a_handoff_of_another_tenant_looks_missing_and_the_admin_sees_it(client, runtime: Runtime):
    package = await store_handed_off_call(runtime.storage, "CAuk", UK, "h-uk")
    await runtime.storage.save_wrapup(Wrapup("CAuk", UK, "carl", "resolved", "Sent tracking link.", 200.0, "h-uk"))

    other_tenant = await client.get("/api/handoffs/h-uk", auth=basic("anna"))
    missing = await client.get("/api/handoffs/h-none", auth=basic("anna"))
    assert other_tenant.status == missing.status == 404
    errors = [(await r.json())["error"] for r in (other_tenant, missing)]
    assert errors == ["no handoff 'h-uk'", "no handoff 'h-none'"]  # the same answer, only the asked id differs

    for user in ("carl", "root"):
        resp = await client.get("/api/handoffs/h-uk", auth=basic(user))
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
        jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)
        ids = (body["handoff_id"], body["call_id"], body["tenant"], body["reason"])
        assert ids == ("h-uk", "CAuk", UK, "caller_request")
        assert body["package"] == package
        assert len(body["package"]["transcript"]) == 3 and len(body["transcript"]) == 4  # goes on after the handoff
        assert body["wrapups"] == [
            {"call_id": "CAuk", "tenant": UK, "agent": "carl", "disposition": "resolved",
             "notes": "Sent tracking link.", "created_at": 200.0, "handoff_id": "h-uk"}
        ]  # fmt: skip


async def test_calls_are_scoped_to_the_users_tenants(client, runtime: Runtime):
    await store_handed_off_call(runtime.storage, "CAde", DE, "h-de")
    assert (await client.get("/api/calls/CAde", auth=basic("carl"))).status == 404
    assert (await client.get("/api/calls/CAnone", auth=basic("carl"))).status == 404
    for user in ("anna", "sue", "root"):
        resp = await client.get("/api/calls/CAde", auth=basic(user))
        assert resp.status == 200
        body = await resp.json()
        assert body["call"]["tenant"] == DE and [u["speaker"] for u in body["transcript"]][:2] == ["bot", "caller"]
        assert body["wrapups"] == []


def test_the_documented_example_matches_the_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    doc = (ROOT / "docs" / "handoff-api.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))
    jsonschema.validate(example, SCHEMA, cls=jsonschema.Draft202012Validator)


# Passwords and sessions


def test_hash_and_verify_round_trip():
    stored = hash_password("korrekt Pferd Batterie Heftklammer")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert verify_password("korrekt Pferd Batterie Heftklammer", stored)
    assert not verify_password("korrekt Pferd Batterie heftklammer", stored)
    assert not verify_password("", stored)
    assert hash_password("same") != hash_password("same")  # salted


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt$16384$8$1$!!$!!",
        "scrypt$1000$8$1$AAAA$AAAA",
        "bcrypt$16384$8$1$AAAA$AAAA",
        "scrypt$1073741824$8$1$AAAA$AAAA",
    ],  # fmt: skip
)
def test_malformed_or_absurd_hashes_never_verify(stored: str):
    assert not verify_password("anything", stored)


def test_an_empty_password_cannot_be_hashed():
    with pytest.raises(ValueError):
        hash_password("")


def test_sessions_expire_when_idle_and_after_a_shift():
    clock = Clock()
    store = SessionStore(idle_s=8 * 3600, absolute_s=12 * 3600, clock=clock)
    idle = store.login("anna")
    busy = store.login("ben")
    assert store.lookup(idle) == "anna" and store.lookup("forged") is None
    for _ in range(10):  # ben keeps working, anna went home
        clock.now += 3600
        assert store.lookup(busy) == "ben"
    assert store.lookup(idle) is None
    clock.now += 2 * 3600 + 1  # 12 h after ben logged in, however busy
    assert store.lookup(busy) is None
    token = store.login("anna")
    store.logout(token)
    assert store.lookup(token) is None


async def test_queue_view_is_for_supervisors_and_scoped_to_their_tenants(client, runtime: Runtime):
    from ivr.queue.model import QueuedCall
    from ivr.storage import CallEvent

    class Caller:
        async def agent_connected(self, agent): ...
        async def agent_audio(self, pcm16k): ...
        async def hold(self, on): ...
        async def agent_hung_up(self): ...
        async def requeued(self, reason): ...

    await runtime.acd.enqueue(QueuedCall("CAde", DE, "muster-general", Caller()))
    await runtime.acd.enqueue(QueuedCall("CAuk", UK, "acme-general", Caller()))
    await runtime.storage.log_event(CallEvent("CAold", DE, 10.0, "ENTERQUEUE", {"queue": "muster-general"}))

    assert (await client.get("/api/queues", auth=basic("anna"))).status == 403  # agents do not supervise
    resp = await client.get("/api/queues", auth=basic("sue"))
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert [(q["tenant"], q["queue"], q["waiting"]) for q in body["queues"]] == [(DE, "muster-general", 1)]
    assert [(k["tenant"], k["offered"]) for k in body["kpis"]] == [(DE, 1)]  # only the last 24 h, only DE

    body = await (await client.get("/api/queues?since=0", auth=basic("root"))).json()
    assert {(k["tenant"], k["offered"]) for k in body["kpis"]} == {(DE, 2), (UK, 1)}
    assert (await client.get("/api/queues?since=yesterday", auth=basic("root"))).status == 400
