"""Read access to call data for agents and machine clients: handoff packages and call transcripts.

Every route asks `current_user` first and then applies the tenant scope of the
user's `agents:` entry. Something of a tenant the user may not see answers
404 exactly like something that does not exist, so ids cannot be probed for
existence across companies. Responses carry personal data and are marked
`Cache-Control: no-store`. The JSON of a handoff is documented (with a JSON
Schema) in docs/handoff-api.md, which is the contract for CRM integrations:
change both together.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from aiohttp import hdrs, web

from ivr.agents.auth import current_user
from ivr.queue.acd import Acd
from ivr.queue.kpi import containment, queue_kpis
from ivr.storage.base import Storage

_NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}


def routes(storage: Storage) -> list[web.RouteDef]:
    """`GET /api/handoffs/{handoff_id}`, `GET /api/calls/{call_id}` and the provider-id lookup on `storage`."""

    async def handoff_detail(request: web.Request) -> web.Response:
        user = await current_user(request)
        handoff_id = request.match_info["handoff_id"]
        handoff = await storage.get_handoff(handoff_id)
        if handoff is None or not user.sees(handoff.tenant):
            raise _not_found(f"no handoff {handoff_id!r}")
        body: dict[str, Any] = asdict(handoff)
        # The package froze the transcript at the handoff; what was said afterwards (with the agent) is here.
        body["transcript"] = [asdict(u) for u in await storage.transcript(handoff.call_id)]
        body["wrapups"] = [asdict(w) for w in await storage.wrapups(handoff.call_id)]
        return web.json_response(body, headers=_NO_STORE)

    async def call_detail(request: web.Request) -> web.Response:
        user = await current_user(request)
        call_id = request.match_info["call_id"]
        call = await storage.get_call(call_id)
        if call is None or not user.sees(call.tenant):
            raise _not_found(f"no call {call_id!r}")
        transcript = [asdict(u) for u in await storage.transcript(call_id)]
        wrapups = [asdict(w) for w in await storage.wrapups(call_id)]
        body = {"call": asdict(call), "transcript": transcript, "wrapups": wrapups}
        return web.json_response(body, headers=_NO_STORE)

    async def calls_by_provider_id(request: web.Request) -> web.Response:
        """`GET /api/calls?provider_call_id=CA…`: our calls for the provider's id (CallSid, SIP Call-ID)."""
        user = await current_user(request)
        provider_call_id = request.query.get("provider_call_id", "")
        if not provider_call_id:
            raise web.HTTPBadRequest(text=json.dumps({"error": "query parameter provider_call_id is required"}),
                                     content_type="application/json")  # fmt: skip
        found = [asdict(c) for c in await storage.calls_by_provider_id(provider_call_id) if user.sees(c.tenant)]
        return web.json_response({"calls": found}, headers=_NO_STORE)

    return [
        web.get("/api/handoffs/{handoff_id}", handoff_detail),
        web.get("/api/calls", calls_by_provider_id),
        web.get("/api/calls/{call_id}", call_detail),
    ]


def supervisor_routes(acd: Acd, storage: Storage) -> list[web.RouteDef]:
    """`GET /api/queues?since=<unix time>&threshold_s=20`: live queues and agents plus KPIs, for supervisors.

    Only the tenants the user sees; KPIs are folded from the call-event log
    since `since` (default: the last 24 hours).
    """

    async def queues(request: web.Request) -> web.Response:
        user = await current_user(request, roles={"supervisor", "admin"})
        try:
            since = float(request.query.get("since", time.time() - 86400))
            threshold = float(request.query.get("threshold_s", 20))
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"error": "since and threshold_s must be numbers"}),
                                     content_type="application/json") from None  # fmt: skip
        events = [e for e in await storage.events(since=since) if user.sees(e.tenant)]
        body = {
            **acd.snapshot(user),
            "kpis": [k.as_dict() for k in queue_kpis(events, threshold)],
            "containment": containment(events),
            "since": since,
        }
        return web.json_response(body, headers=_NO_STORE)

    return [web.get("/api/queues", queues)]


def _not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json", headers=_NO_STORE)
