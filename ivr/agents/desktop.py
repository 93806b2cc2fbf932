"""The agent desktop: `GET /agent` (the page) and `GET /agent/ws` (its live connection to the ACD).

The websocket is the desktop's `AgentLink`. Text messages are JSON objects with
a `type`; binary messages are 16 kHz PCM16 audio (the agent's microphone one
way, the caller the other way, 20 ms frames).

Server → desktop: `hello` (first, once: who is logged in, dispositions, transfer
queues, company names), then the ACD's events (`state`, `offer` + `summary`,
`revoked`, `connected`, `transcript`, `ended`, `replaced`), answers to requests
(`hold`, `mute`, `ended` with `by: agent` after a hang-up, `wrapup_saved`,
`snapshot`, `pong`) and `error` (`message`, plus `field` when a field of the
request was wrong, and `request`, the type of the request it answers).

Desktop → server: `state` {state: available|break|offline}, `accept` and
`decline` {call_id}, `hold` {on}, `mute` {on}, `transfer` {queue}, `hangup`,
`wrapup` {disposition, notes}, `snapshot` (supervisors and admins), `ping`.

Closing the socket, for whatever reason, logs the agent out of the ACD: a caller
on the line goes back to the head of the queue. Sends never block the ACD: they
go through a queue drained by one writer task (caller audio is dropped, JSON
never, when an agent's connection cannot keep up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, hdrs, web

from ivr.agents.auth import current_user, foreign_origin, user_json
from ivr.agents.summary import summarize
from ivr.queue.acd import Acd
from ivr.queue.model import AcdError, Agent, AgentState
from ivr.settings import AgentUser, Settings
from ivr.storage.base import Storage, Wrapup
from ivr.storage.events import CallEvent, EventName
from ivr.tenants import DEFAULT_QUEUE, Tenant

log = logging.getLogger("ivr.agents")

MAX_NOTES = 2000
MAX_AUDIO_BYTES = 32000  # one second of 16 kHz PCM16 per message at most (the desktop sends 20 ms)
MAX_AUDIO_QUEUED = 250  # caller frames waiting for a slow connection (5 s); more are dropped
CLOSE_REPLACED = 4001  # websocket close code: the same user opened another desktop
CHOOSABLE = {s.value: s for s in (AgentState.AVAILABLE, AgentState.BREAK, AgentState.OFFLINE)}
SUPERVISORS = frozenset({"supervisor", "admin"})
_CLOSE = object()  # writer sentinel: close the socket after what was queued before


class BadMessage(Exception):
    """A request with a missing or wrong field; the desktop gets the field's name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def tenant_queues(tenant: Tenant) -> list[str]:
    """The queues a call of `tenant` can wait in: its configured ones, and `default` where calls fall back to."""
    names = list(dict.fromkeys(tenant.queues.values()))
    if DEFAULT_QUEUE not in tenant.queues and DEFAULT_QUEUE not in names:
        names.append(DEFAULT_QUEUE)
    return names


def hello(user: AgentUser, settings: Settings) -> dict[str, Any]:
    seen = {number: t for number, t in settings.tenants.items() if user.sees(number)}
    per_tenant = {number: tenant_queues(t) for number, t in seen.items()}
    return {
        "type": "hello",
        "user": user_json(user),
        "dispositions": list(settings.queue.dispositions),
        "queues": sorted({q for queues in per_tenant.values() for q in queues}),
        "tenant_queues": per_tenant,  # transfer targets per tenant: a call only moves within its tenant
        "companies": {number: t.company for number, t in seen.items()},
        "max_notes": MAX_NOTES,
    }


class DesktopLink:
    """One agent's websocket: the ACD's `AgentLink`, and the handler of the desktop's requests."""

    def __init__(self, ws: web.WebSocketResponse, user: AgentUser, acd: Acd, settings: Settings, storage: Storage):
        self.ws = ws
        self.user = user
        self.acd = acd
        self.settings = settings
        self.storage = storage
        self.agent: Agent | None = None
        self.closed = False
        self.replaced = False  # the same user opened another desktop: this socket closes with CLOSE_REPLACED
        self.dropped_audio = 0
        self._wrapup_for: tuple[str, str, str | None] | None = None  # (call_id, tenant, handoff_id)
        self._out: asyncio.Queue[str | bytes | object] = asyncio.Queue()
        self._audio_queued = 0
        self._writer = asyncio.create_task(self._write())

    # ---- AgentLink: the ACD → the desktop ----------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if not self._may_see(message):
            log.error(
                "desktop.blocked_other_tenant",
                extra={"agent": self.user.username, "type": message.get("type"), "call_id": message.get("call_id")},
            )
            return
        kind = message.get("type")
        if kind == "offer":
            message = {**message, "summary": self._summary(message.get("package") or {})}
        elif kind == "state" and message.get("state") == AgentState.WRAP_UP.value:
            call = self.agent.call if self.agent is not None else None
            if call is not None:  # remember it: the wrap-up is for this call even if a timer moves the agent on
                self._wrapup_for = (call.call_id, call.tenant, call.handoff_id)
        self._queue(json.dumps(message, default=str))
        if kind == "replaced":
            self.replaced = True
            self._out.put_nowait(_CLOSE)

    async def send_audio(self, pcm16k: bytes) -> None:
        if self.closed:
            return
        if self._audio_queued >= MAX_AUDIO_QUEUED:
            self.dropped_audio += 1
            return
        self._audio_queued += 1
        self._out.put_nowait(bytes(pcm16k))

    def _may_see(self, message: dict[str, Any]) -> bool:
        """The ACD filters offers by tenant already; this is the second lock on the door."""
        package = message.get("package")
        owners = {message.get("tenant"), package.get("tenant") if isinstance(package, dict) else None} - {None}
        if package is not None and not owners:
            return False  # call data of nobody knows whom
        return all(self.user.sees(str(owner)) for owner in owners)

    def _summary(self, package: dict[str, Any]) -> str:
        try:
            return summarize(package)
        except Exception:  # a summary is a convenience: never lose the offer over it
            log.exception("desktop.summary_failed", extra={"agent": self.user.username})
            return ""

    def _queue(self, text: str) -> None:
        self._out.put_nowait(text)

    def reply(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self._queue(json.dumps(message, default=str))

    async def _write(self) -> None:
        while True:
            item = await self._out.get()
            if item is _CLOSE:
                self.closed = True
                if not self.ws.closed:
                    await self.ws.close(code=CLOSE_REPLACED, message=b"replaced")
                return
            try:
                if isinstance(item, bytes):
                    self._audio_queued -= 1
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_str(item)  # type: ignore[arg-type]
            except (ConnectionResetError, RuntimeError):
                pass  # the peer is gone; the reader loop ends and logs the agent out

    def stop(self) -> None:
        """The socket is gone: nothing more is sent (what is still queued is dropped)."""
        self.closed = True
        self._writer.cancel()

    # ---- the desktop → the ACD ----------------------------------------------

    async def handle_text(self, data: str) -> None:
        kind: str | None = None
        try:
            try:
                message = json.loads(data)
            except json.JSONDecodeError as exc:
                raise BadMessage("message", f"not JSON ({exc.msg})") from None
            if not isinstance(message, dict):
                raise BadMessage("message", "must be a JSON object")
            kind = message.get("type")
            if not isinstance(kind, str) or not kind:
                raise BadMessage("type", "required (a string)")
            handler = self._HANDLERS.get(kind)
            if handler is None:
                raise BadMessage("type", f"unknown request {kind!r}")
            await handler(self, message)
        except BadMessage as exc:
            self.reply({"type": "error", "message": str(exc), "field": exc.field, "request": kind})
        except AcdError as exc:
            self.reply({"type": "error", "message": str(exc), "request": kind})
        except Exception:
            log.exception("desktop.request_failed", extra={"agent": self.user.username, "request": kind})
            self.reply({"type": "error", "message": "internal error, please try again", "request": kind})

    async def handle_audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            self.reply({"type": "error", "message": "audio: binary messages must be 16-bit PCM (an even number of bytes)",
                        "field": "audio", "request": "audio"})  # fmt: skip
            return
        if len(pcm) > MAX_AUDIO_BYTES:
            self.reply({"type": "error", "message": f"audio: at most {MAX_AUDIO_BYTES} bytes per message",
                        "field": "audio", "request": "audio"})  # fmt: skip
            return
        if pcm and self.agent is not None:
            await self.acd.agent_audio(self.agent, pcm)

    @property
    def _me(self) -> Agent:
        assert self.agent is not None
        return self.agent

    async def _state(self, message: dict[str, Any]) -> None:
        state = message.get("state")
        if state not in CHOOSABLE:
            raise BadMessage("state", f"must be one of {', '.join(CHOOSABLE)}")
        await self.acd.set_state(self._me, CHOOSABLE[state])

    async def _accept(self, message: dict[str, Any]) -> None:
        await self.acd.accept(self._me, _call_id(message))

    async def _decline(self, message: dict[str, Any]) -> None:
        await self.acd.decline(self._me, _call_id(message))

    async def _hold(self, message: dict[str, Any]) -> None:
        on = _flag(message)
        call = self._me.call
        await self.acd.hold(self._me, on)
        self.reply({"type": "hold", "call_id": call.call_id if call else None, "on": on})

    async def _mute(self, message: dict[str, Any]) -> None:
        on = _flag(message)
        if self._me.state != AgentState.ON_CALL:
            raise AcdError("you are not on a call")
        self.acd.mute(self._me, on)
        self.reply({"type": "mute", "on": on})

    async def _transfer(self, message: dict[str, Any]) -> None:
        queue = message.get("queue")
        if not isinstance(queue, str) or not queue:
            raise BadMessage("queue", "required (the queue to transfer to)")
        call = self._me.call
        if call is None or self._me.state != AgentState.ON_CALL:
            raise AcdError("you are not on a call")
        tenant = self.settings.tenants.get(call.tenant)
        allowed = tenant_queues(tenant) if tenant is not None else []
        if queue not in allowed:
            company = tenant.company if tenant is not None else call.tenant
            raise BadMessage("queue", f"{queue!r} is not a queue of {company} ({', '.join(allowed) or 'none'})")
        await self.acd.transfer(self._me, queue)

    async def _hangup(self, message: dict[str, Any]) -> None:
        call = self._me.call
        await self.acd.hang_up(self._me)
        if call is not None:
            self.reply({"type": "ended", "call_id": call.call_id, "by": "agent"})

    async def _wrapup(self, message: dict[str, Any]) -> None:
        disposition = message.get("disposition")
        dispositions = self.settings.queue.dispositions
        if disposition not in dispositions:
            raise BadMessage("disposition", f"must be one of {', '.join(dispositions)}")
        notes = message.get("notes", "")
        if notes is None:
            notes = ""
        if not isinstance(notes, str):
            raise BadMessage("notes", "must be text")
        if len(notes) > MAX_NOTES:
            raise BadMessage("notes", f"at most {MAX_NOTES} characters (got {len(notes)})")
        agent = self._me
        current = agent.call if agent.state == AgentState.WRAP_UP else None
        target = (current.call_id, current.tenant, current.handoff_id) if current is not None else self._wrapup_for
        if target is None:
            raise AcdError("there is no call to wrap up")
        call_id, tenant, handoff_id = target
        wanted = message.get("call_id")
        if wanted is not None and wanted != call_id:
            raise BadMessage("call_id", f"the call to wrap up is {call_id}")
        now = time.time()
        await self.storage.save_wrapup(
            Wrapup(call_id, tenant, agent.username, disposition, notes.strip(), now, handoff_id)
        )
        self._wrapup_for = None
        await self.storage.log_event(
            CallEvent(call_id, tenant, now, EventName.WRAPUP, {"agent": agent.username, "disposition": disposition})
        )
        log.info("agent.wrapup", extra={"agent": agent.username, "call_id": call_id, "disposition": disposition})
        if agent.state == AgentState.WRAP_UP and agent.call is not None and agent.call.call_id == call_id:
            await self.acd.wrap_up_done(agent)
        self.reply({"type": "wrapup_saved", "call_id": call_id, "disposition": disposition})

    async def _snapshot(self, message: dict[str, Any]) -> None:
        if self.user.role not in SUPERVISORS:
            raise AcdError("the queue overview is for supervisors and admins")
        self.reply({"type": "snapshot", **self.acd.snapshot(self.user)})

    async def _ping(self, message: dict[str, Any]) -> None:
        self.reply({"type": "pong"})

    _HANDLERS = {
        "state": _state,
        "accept": _accept,
        "decline": _decline,
        "hold": _hold,
        "mute": _mute,
        "transfer": _transfer,
        "hangup": _hangup,
        "wrapup": _wrapup,
        "snapshot": _snapshot,
        "ping": _ping,
    }


def _call_id(message: dict[str, Any]) -> str:
    call_id = message.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadMessage("call_id", "required (the offered call's id)")
    return call_id


def _flag(message: dict[str, Any]) -> bool:
    on = message.get("on")
    if not isinstance(on, bool):
        raise BadMessage("on", "must be true or false")
    return on


def routes(runtime: Any) -> list[web.RouteDef]:
    """`GET /agent` and `GET /agent/ws` on `runtime` (its acd, settings and storage)."""

    async def page(request: web.Request) -> web.Response:
        html = resources.files("ivr.web").joinpath("agent.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html", headers={hdrs.CACHE_CONTROL: "no-store"})

    async def socket(request: web.Request) -> web.StreamResponse:
        user = await current_user(request)  # 401/403/429 before the upgrade
        reason = foreign_origin(request)  # a page of another site must not use the agent's cookie
        if reason is not None:
            message = json.dumps({"error": f"cross-site request: {reason}"})
            raise web.HTTPForbidden(text=message, content_type="application/json")
        acd: Acd = runtime.acd
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 16)
        await ws.prepare(request)
        link = DesktopLink(ws, user, acd, runtime.settings, runtime.storage)
        link.reply(hello(user, runtime.settings))
        agent: Agent | None = None
        try:
            agent = link.agent = await acd.login(user, link)
            log.info("desktop.connected", extra={"agent": user.username})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await link.handle_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await link.handle_audio(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            link.stop()
            log.info("desktop.disconnected", extra={"agent": user.username, "dropped_audio": link.dropped_audio})
            if agent is not None:
                try:  # shielded: a cancelled handler must still put the caller back in the queue
                    await asyncio.shield(acd.logout(agent, "disconnected"))
                except Exception:
                    log.exception("desktop.logout_failed", extra={"agent": user.username})
            if not ws.closed:  # the writer may have been stopped before it sent the close for `replaced`
                await (ws.close(code=CLOSE_REPLACED, message=b"replaced") if link.replaced else ws.close())
        return ws

    return [web.get("/agent", page), web.get("/agent/ws", socket)]
