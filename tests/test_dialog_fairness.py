"""One tenant's load does not stall another tenant's turns (hardening finding 3, second half).

Seen before: while one long turn of one company ran in Rasa (which answers its
requests one after the other), another company's caller timed out and was
handed off with "technical problem". Turns now go to Rasa through a lane per
tenant, at most `turns_per_tenant` at a time. A Rasa stand-in that holds every
request shows who gets in.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from ivr.dialog.rasa_client import RasaClient


async def test_a_surge_of_one_tenant_leaves_room_for_another(aiohttp_server):
    in_flight: Counter[str] = Counter()
    most: Counter[str] = Counter()
    arrived: list[str] = []
    release = asyncio.Event()

    async def turn(request: web.Request) -> web.Response:
        tenant = (await request.json())["slots"]["tenant"]
        arrived.append(tenant)
        in_flight[tenant] += 1
        most[tenant] = max(most[tenant], in_flight[tenant])
        await release.wait()
        in_flight[tenant] -= 1
        return web.json_response({"messages": [{"text": "ok"}]})

    app = web.Application()
    app.router.add_post("/webhooks/ivr/turn", turn)
    server = await aiohttp_server(app)
    client = RasaClient(str(server.make_url("/")), timeout_s=30, turns_per_tenant=4)
    try:
        surge = [
            asyncio.create_task(client.turn(f"a{i}", "hallo", slots={"tenant": "A"}, tenant="A")) for i in range(12)
        ]
        while len(arrived) < 4:
            await asyncio.sleep(0.01)
        other = asyncio.create_task(client.turn("b", "hello", slots={"tenant": "B"}, tenant="B"))
        while "B" not in arrived:
            await asyncio.sleep(0.01)
        assert arrived == ["A"] * 4 + ["B"]  # B got in while 8 of A's turns still wait their turn
        release.set()
        replies = await asyncio.gather(*surge, other)
        assert all(r.reply.text == "ok" for r in replies)
        assert most == Counter({"A": 4, "B": 1})
    finally:
        release.set()
        await client.close()
