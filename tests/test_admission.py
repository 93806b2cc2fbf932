"""Admission control: a call is taken only while there is room for it (docs/architecture.md, "Admission control").

Unit tests run `Admission` on a fake clock; the transport tests run the real
app and SIP endpoint in process on the fakes of test_wire_limits (no Rasa, no
speech models) and check what a refused caller gets: SIP 503 with Retry-After
before any 180/200, a media WebSocket 503 before the upgrade, both naming the
reason, at once, and never a slot leaked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import aiohttp
import pytest

from ivr.runtime import Runtime
from ivr.session.admission import Admission, AdmissionLimits, Refusal, RefusalReason, Ticket
from ivr.settings import AdmissionSettings
from ivr.transports.sip.caller import SipCaller
from ivr.transports.sip.endpoint import SipEndpoint
from tests.test_wire_limits import MUSTER, client, closed, start_message, tuned, until  # noqa: F401 (a fixture)

LIMITS = AdmissionLimits(max_calls=2, max_loop_lag_ms=50, max_asr_backlog_s=3, starts_per_s=5, start_burst=10,
                         retry_after_s=30)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admit(admission: Admission, channel: str = "sip") -> Ticket:
    ticket = admission.try_admit(channel)
    assert isinstance(ticket, Ticket), ticket
    return ticket


def refused(admission: Admission, reason: RefusalReason) -> Refusal:
    refusal = admission.try_admit("sip")
    assert isinstance(refusal, Refusal) and refusal.reason is reason, refusal
    return refusal


# ---- the decision, on a fake clock ---------------------------------------------------------------------


def test_calls_beyond_the_limit_are_refused_until_a_slot_is_released():
    admission = Admission(LIMITS, clock=Clock())
    first, second = admit(admission), admit(admission)
    refusal = refused(admission, RefusalReason.AT_CAPACITY)
    assert refusal.retry_after_s == 30 and refusal.text == "at_capacity: calls at the limit (admission.max_calls: 2)"
    first.release()
    first.release()  # a second clean-up path frees nothing more
    assert admission.active == 1 and not first.held
    third = admit(admission)
    refused(admission, RefusalReason.AT_CAPACITY)
    second.release(), third.release()
    state = admission.state()
    assert (state.active, state.admitted, state.refused["at_capacity"], state.limit) == (0, 3, 2, 2)


def test_a_burst_of_starts_is_limited_by_the_token_bucket():
    clock = Clock()
    admission = Admission(dataclasses.replace(LIMITS, max_calls=100, starts_per_s=5, start_burst=3), clock=clock)
    for _ in range(3):
        admit(admission)
    refused(admission, RefusalReason.BURST)
    clock.now += 0.2  # one start's worth of tokens at 5 per second
    admit(admission)
    refused(admission, RefusalReason.BURST)
    assert admission.state().refused == {"shutting_down": 0, "at_capacity": 0, "loop_lag": 0, "asr_backlog": 0,
                                         "burst": 2}  # fmt: skip


def test_measured_load_refuses_below_the_limit():
    backlog = [0.0]
    admission = Admission(dataclasses.replace(LIMITS, max_calls=100), lambda: backlog[0], clock=Clock())
    for lag_s in (0.08, 0.07, 0.01):  # the mean of the last second: 53 ms
        admission.lag.record(lag_s)
    refused(admission, RefusalReason.LOOP_LAG)
    for _ in range(10):
        admission.lag.record(0.002)  # the loop on time again
    admit(admission)
    backlog[0] = 3.5
    refusal = refused(admission, RefusalReason.ASR_BACKLOG)
    assert "3.5 s of audio" in refusal.detail and admission.state().asr_backlog_ms == 3500
    backlog[0] = 0.1
    admit(admission)


def test_shutting_down_refuses_everything(caplog):
    admission = Admission(LIMITS, clock=Clock())
    admission.shutting_down = True
    caplog.set_level(logging.INFO, "ivr.admission")
    refused(admission, RefusalReason.SHUTTING_DOWN)
    (record,) = [r for r in caplog.records if r.getMessage() == "call.refused"]
    assert (record.reason, record.channel) == ("shutting_down", "sip")


def test_the_default_limit_follows_the_cores():
    assert AdmissionSettings().call_limit(2) == 6 and AdmissionSettings().call_limit(None) == 3
    assert AdmissionSettings(calls_per_core=3.5).call_limit(4) == 14
    assert AdmissionSettings(max_calls=0).call_limit(64) == 0


async def test_the_loop_lag_probe_sees_a_blocked_loop():
    admission = Admission(LIMITS)
    admission.lag.start()
    try:
        await asyncio.sleep(0.15)
        time.sleep(0.3)  # noqa: ASYNC251 (the point: the event loop blocked, as by inference run on it)
        await asyncio.sleep(0.05)
        assert admission.lag.lag_ms > 50
        refused(admission, RefusalReason.LOOP_LAG)
    finally:
        await admission.lag.stop()


async def test_shut_down_calls_refuses_new_calls(runtime: Runtime):
    await runtime.shut_down_calls(1)
    assert isinstance(runtime.admission.try_admit("sip"), Refusal)
    assert runtime.admission.state().refused["shutting_down"] == 1


# ---- transports ---------------------------------------------------------------------------------------------


def limit(runtime: Runtime, max_calls: int, **changes) -> Admission:
    """The runtime on fakes, with its own admission limits."""
    tuned(runtime)
    probe = runtime.admission.lag  # started by the app, stopped by Runtime.close
    runtime.admission = Admission(dataclasses.replace(LIMITS, max_calls=max_calls, **changes), runtime._asr_backlog_s)
    runtime.admission.lag = probe
    return runtime.admission


async def test_media_stream_over_the_limit_gets_503_before_the_upgrade(client, runtime):  # noqa: F811
    limit(runtime, 1)
    async with client.ws_connect("/media") as first:
        await first.send_json(start_message())
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await client.ws_connect("/media")
        assert refused_ws.value.status == 503 and refused_ws.value.headers["Retry-After"] == "30"
        async with client.ws_connect("/phone/ws") as browser:  # a browser cannot read a 503: told by the close
            code, reason, events = await closed(browser)
        assert code == 1013 and reason == "at_capacity: calls at the limit (admission.max_calls: 1)" and events == []
        answer = await client.get("/media")
        assert answer.status == 503 and answer.headers["Retry-After"] == "30"
        body = await answer.json()
        assert (
            body["reason"] == "at_capacity" and body["retry_after_s"] == 30 and "admission.max_calls" in body["error"]
        )
        health = await (await client.get("/healthz")).json()
        assert health["admission"]["active"] == 1 and health["admission"]["refused"]["at_capacity"] == 3
        assert health["active_calls"] == 1 and health["admission"]["limit"] == 1
        await first.send_json({"event": "stop", "streamSid": "MZ1"})
        await closed(first)
    await until(lambda: runtime.active_calls == 0, what="the slot released")
    async with client.ws_connect("/media") as again:  # the slot is free again
        await again.send_json(start_message())
        await again.send_json({"event": "stop", "streamSid": "MZ1"})
        await closed(again)
    await until(lambda: runtime.active_calls == 0, what="the slot released")


async def test_a_stream_that_never_starts_a_call_frees_its_slot(client, runtime):  # noqa: F811
    limit(runtime, 1)
    async with client.ws_connect("/media") as ws:
        await ws.send_json(start_message(mediaFormat__channels="x"))  # refused by the serializer: no call
        await closed(ws)
    await until(lambda: runtime.active_calls == 0, what="the slot released")


async def test_a_burst_of_100_media_streams_is_admitted_or_refused_cleanly(client, runtime, caplog):  # noqa: F811
    admission = limit(runtime, 3)
    caplog.set_level(logging.INFO)
    open_streams: list[aiohttp.ClientWebSocketResponse] = []
    waits: list[float] = []

    async def attempt() -> int:
        started = time.monotonic()
        try:
            ws = await client.ws_connect("/media")
        except aiohttp.WSServerHandshakeError as exc:
            waits.append(time.monotonic() - started)
            assert exc.status == 503 and exc.headers["Retry-After"] == "30"
            return 503
        waits.append(time.monotonic() - started)
        open_streams.append(ws)
        await ws.send_json(start_message())
        return 101

    began = time.monotonic()
    outcomes = await asyncio.gather(*(attempt() for _ in range(100)))
    assert time.monotonic() - began < 1.5 and max(waits) < 2  # nobody waits in silence for an answer
    assert outcomes.count(101) == 3 and outcomes.count(503) == 97
    health = await client.get("/healthz")
    assert health.status == 200
    state = (await health.json())["admission"]
    assert state["admitted"] + sum(state["refused"].values()) == 100 and state["active"] == 3
    for ws in open_streams:
        await ws.send_json({"event": "stop", "streamSid": "MZ1"})
        await closed(ws)
    await until(lambda: admission.active == 0, what="every slot released")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if r.getMessage() == "call.refused"]) == 97


# ---- SIP ------------------------------------------------------------------------------------------------------


async def sip_endpoint(runtime: Runtime, **changes) -> SipEndpoint:
    # UDP only: TCP would have to bind the port number UDP got, which another process may hold meanwhile.
    sip = dataclasses.replace(runtime.settings.sip, enabled=True, port=0, rtp_ports=None, transports=("udp",),
                              **changes)  # fmt: skip
    endpoint = SipEndpoint(runtime, sip)
    await endpoint.start()
    return endpoint


async def test_sip_over_the_limit_gets_503_with_retry_after_and_no_ringing(runtime):
    limit(runtime, 1)
    endpoint = await sip_endpoint(runtime)
    try:
        first = SipCaller(("127.0.0.1", endpoint.port))
        assert (await first.call(MUSTER)).code == 200
        second = SipCaller(("127.0.0.1", endpoint.port))
        answer = await second.call(MUSTER)
        second.close()
        assert answer.code == 503 and answer.headers.get("Retry-After") == "30"
        assert "at_capacity" in answer.headers.get("Warning")
        assert [r.code for r in second.responses if r.code != 503] == [100]  # no 180, no 200
        assert runtime.active_calls == 1 and runtime.admission.state().refused["at_capacity"] == 1
        assert (await first.hang_up()).code == 200
        await until(lambda: not endpoint.live and runtime.active_calls == 0, what="the slot released")
    finally:
        await endpoint.stop()


async def test_a_burst_of_100_invites_is_admitted_or_refused_cleanly(runtime, caplog):
    admission = limit(runtime, 3)
    caplog.set_level(logging.INFO)
    endpoint = await sip_endpoint(runtime)
    callers = [SipCaller(("127.0.0.1", endpoint.port)) for _ in range(100)]
    try:
        began = time.monotonic()
        answers = await asyncio.gather(*(caller.call(MUSTER) for caller in callers))
        assert time.monotonic() - began < 2  # every INVITE answered, none left ringing
        codes = [a.code for a in answers]
        assert codes.count(200) == 3 and codes.count(503) == 97
        assert all(a.headers.get("Retry-After") == "30" for a in answers if a.code == 503)
        state = admission.state()
        assert state.admitted + sum(state.refused.values()) == 100 and state.active == 3
        answered = [c for c, a in zip(callers, answers, strict=True) if a.code == 200]
        for caller in answered:
            assert (await caller.hang_up()).code == 200
        await until(lambda: not endpoint.live and admission.active == 0, what="every slot released")
        assert endpoint.health()["bad_messages"] == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        for caller in callers:
            caller.close()
        await endpoint.stop()


async def test_a_call_cancelled_while_ringing_frees_its_slot(runtime):
    admission = limit(runtime, 1)
    endpoint = await sip_endpoint(runtime, answer_delay_s=5.0)
    caller = SipCaller(("127.0.0.1", endpoint.port))
    try:
        calling = asyncio.create_task(caller.call(MUSTER))
        await until(lambda: any(r.code == 180 for r in caller.responses), what="ringing")
        assert admission.active == 1  # the slot is taken before the 180
        await caller.cancel()
        assert (await calling).code == 487
        await until(lambda: admission.active == 0, what="the slot released")
    finally:
        caller.close()
        await endpoint.stop()


async def test_a_sip_call_that_fails_on_our_side_frees_its_slot(runtime, monkeypatch, caplog):
    admission = limit(runtime, 1)

    async def broken(call):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runtime.write_behind, "start_call", broken)
    endpoint = await sip_endpoint(runtime)
    caller = SipCaller(("127.0.0.1", endpoint.port))
    try:
        assert (await caller.call(MUSTER)).code == 200
        await until(lambda: admission.active == 0 and not endpoint.live, what="the failed call's slot released")
        assert "sip.setup_failed" in caplog.text
    finally:
        caller.close()
        await endpoint.stop()


# ---- overflow: a stream over the limit for a tenant with `overflow: callback` ---------------------------------


ACME = "+442071234567"  # overflow: refuse (the default)


def overflow_to_callback(runtime: Runtime, max_overflow: int = 10) -> Admission:
    admission = limit(runtime, 0, max_overflow=max_overflow)
    tenants = dict(runtime.settings.tenants)
    tenants[MUSTER] = dataclasses.replace(tenants[MUSTER], overflow="callback")
    runtime.settings = dataclasses.replace(runtime.settings, tenants=tenants)
    return admission


async def test_overflow_tells_the_caller_all_lines_are_busy_and_stores_a_callback(client, runtime):  # noqa: F811
    admission = overflow_to_callback(runtime)
    async with client.ws_connect("/media") as ws:
        await ws.send_json({"event": "connected", "protocol": "Call"})
        await ws.send_json(start_message())
        media = 0
        while True:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            event = json.loads(msg.data)
            media += event["event"] == "media"
            if event["event"] == "mark":
                break
        assert media == 5  # the message (100 ms from the fake voice) in 20 ms frames, then its mark
        await ws.send_json({"event": "mark", "streamSid": "MZ1", "mark": {"name": event["mark"]["name"]}})
        code, reason, _ = await closed(ws)
    assert (code, reason) == (1000, "all_lines_busy")
    (request,) = await runtime.storage.callbacks(MUSTER)
    assert request.number == "+4917012" and request.reason == "all_lines_busy"
    await until(lambda: admission.overflow_active == 0, what="the overflow slot released")
    state = admission.state()
    assert (state.overflowed, state.active, state.refused["at_capacity"]) == (1, 0, 1)


async def test_overflow_for_a_tenant_that_refuses_closes_with_1013_and_the_reason(client, runtime):  # noqa: F811
    admission = overflow_to_callback(runtime)
    async with client.ws_connect("/media") as ws:
        await ws.send_json(start_message(customParameters={"to": ACME, "from": "+4917012"}))
        code, reason, events = await closed(ws)
    assert code == 1013 and reason.startswith("at_capacity") and events == []
    assert await runtime.storage.callbacks(ACME) == []
    await until(lambda: admission.overflow_active == 0, what="the overflow slot released")


async def test_overflow_slots_taken_means_503(client, runtime):  # noqa: F811
    overflow_to_callback(runtime, max_overflow=0)
    answer = await client.get("/media")
    assert answer.status == 503 and (await answer.json())["reason"] == "at_capacity"
