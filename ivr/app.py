"""The aiohttp application: routes for every transport, agent logins and the (authenticated) call data API."""

from __future__ import annotations

import dataclasses
from importlib import resources

from aiohttp import web

from ivr.agents import api as agent_api
from ivr.agents import auth as agent_auth
from ivr.agents import desktop as agent_desktop
from ivr.logs import error_middleware
from ivr.runtime import Runtime
from ivr.transports import text
from ivr.transports.browser import BrowserSerializer
from ivr.transports.twilio import TwilioSerializer
from ivr.transports.websocket import media_socket

RUNTIME = web.AppKey("runtime", Runtime)
WEB_SCRIPTS = frozenset({"pcm16.js"})


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[error_middleware])  # unhandled errors: logged without data, 500 with an id
    app[RUNTIME] = runtime
    text.setup(app, runtime)
    # aiohttp 3.9 annotates its signals for aiosignal < 1.4; aiosignal 1.4 made Signal generic over the arguments.
    app.on_shutdown.append(text.end_all)  # type: ignore[arg-type]

    async def start_lag_probe(app: web.Application) -> None:
        runtime.admission.lag.start()  # on the loop that serves the calls; Runtime.close stops it

    app.on_startup.append(start_lag_probe)  # type: ignore[arg-type]
    agent_auth.setup(app, lambda: runtime.settings.agents, runtime.settings.logins)

    async def twilio_media(request: web.Request) -> web.StreamResponse:
        return await media_socket(request, runtime, TwilioSerializer)

    async def browser_media(request: web.Request) -> web.StreamResponse:
        return await media_socket(request, runtime, BrowserSerializer)

    async def phone_page(request: web.Request) -> web.Response:
        page = resources.files("ivr.web").joinpath("phone.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html")

    async def web_script(request: web.Request) -> web.Response:
        """Scripts the pages share (pcm16.js is also their AudioWorklet module)."""
        name = request.match_info["name"]
        if name not in WEB_SCRIPTS:
            raise web.HTTPNotFound()
        script = resources.files("ivr.web").joinpath(name).read_text(encoding="utf-8")
        return web.Response(text=script, content_type="application/javascript")

    async def tenants(request: web.Request) -> web.Response:
        listing = [
            {"number": number, "company": t.company, "language": t.language}
            for number, t in runtime.settings.tenants.items()
        ]
        return web.json_response(listing)

    async def health(request: web.Request) -> web.Response:
        stats = runtime.pacing
        return web.json_response(
            {
                "status": "ok",
                "active_calls": runtime.active_calls,
                "admission": dataclasses.asdict(runtime.admission.state()),
                "frames_sent": stats.frames,
                "late_frames": stats.late_frames,
                "max_lateness_ms": round(stats.max_lateness_ms, 1),
                "underruns": stats.underruns,
                "prompts": runtime.prompt_health(),
                **({"sip": runtime.sip_health()} if runtime.sip_health else {}),
                **({"dialog": runtime.dialog_health()} if runtime.dialog_health else {}),
                "storage": runtime.write_behind.health(),
            }
        )

    app.add_routes(
        [
            web.get("/media", twilio_media),
            web.get("/phone/ws", browser_media),
            web.get("/", phone_page),
            web.get("/phone", phone_page),
            web.get("/web/{name}", web_script),
            web.get("/api/tenants", tenants),
            web.get("/healthz", health),
            *text.routes(runtime),
            *agent_auth.routes(),
            *agent_api.routes(runtime.storage),
            *agent_api.supervisor_routes(runtime.acd, runtime.storage),
            *agent_desktop.routes(runtime),
        ]
    )
    return app
