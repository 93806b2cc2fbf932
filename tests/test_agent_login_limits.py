"""Login hardening (review issue 17): hashing off the shared pool, limits per source address, no login CSRF.

The app is the real `make_app` on a real SQLite storage with the users of
tests/data/ivr.test.yml, its `logins:` limits replaced per test. Different
source addresses come through X-Forwarded-For from the test client's own
address, configured as a trusted proxy (the way a TLS proxy in front of
`ivr serve` reports clients); without that configuration the header must count
for nothing. No Rasa, no speech models.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from ivr.agents import passwords as passwords_module
from ivr.agents.auth import AUTH, COOKIE
from ivr.agents.login_limits import SourceLimiter, client_address, trusted_networks
from ivr.app import make_app
from ivr.errors import ConfigError
from ivr.runtime import Runtime
from ivr.settings import LoginSettings, load_settings, replace
from tests.agents import PASSWORDS, basic

A = {"X-Forwarded-For": "198.51.100.7"}  # two clients behind the trusted proxy
B = {"X-Forwarded-For": "203.0.113.9"}
HANG_GUARD_S = 20.0  # only so that a broken fix fails instead of hanging; never reached when it works


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app_with(aiohttp_client, runtime: Runtime):
    """`await app_with(**limits)`: a test client of the app with these `logins:` settings."""

    async def make(**limits) -> aiohttp.test_utils.TestClient:
        runtime.settings = replace(runtime.settings, logins=LoginSettings(**limits))
        return await aiohttp_client(make_app(runtime))

    return make


async def login(client, username: str, password: str | None = None, headers: dict | None = None):
    body = {"username": username, "password": password or PASSWORDS[username]}
    return await client.post("/agent/login", json=body, headers=headers or {})


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), HANG_GUARD_S)


# Finding 7: scrypt has threads of its own and a bounded queue; storage never waits behind logins


async def test_password_checks_run_on_their_own_threads_and_storage_stays_free(app_with, runtime, monkeypatch):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="default"))  # storage's pool, of known size
    client = await app_with(hash_threads=2, hash_queue=2)
    release, hashing = threading.Event(), []
    real_scrypt = passwords_module._scrypt

    def held_scrypt(*args):  # keeps the checks in flight until the test has looked
        hashing.append(threading.current_thread().name)
        release.wait(HANG_GUARD_S)
        return real_scrypt(*args)

    monkeypatch.setattr(passwords_module, "_scrypt", held_scrypt)
    logins = [asyncio.create_task(login(client, name)) for name in ("anna", "ben", "carl", "sue")]
    try:
        await until(lambda: len(hashing) == 2)
        assert all(name.startswith("ivr-hash") for name in hashing), hashing  # not the default executor's threads
        await until(lambda: client.app[AUTH].hashes.in_flight == 4)  # two hashing, two queued: the pool is full

        busy = await asyncio.wait_for(login(client, "root"), HANG_GUARD_S)
        assert busy.status == 503 and busy.headers["Retry-After"] == "1"
        assert "too many logins at once" in (await busy.json())["error"]
        # Both default-executor threads are free for storage while every hashing thread is taken.
        assert await asyncio.wait_for(runtime.storage.get_call("CA-none"), HANG_GUARD_S) is None
    finally:
        release.set()
    assert [r.status for r in await asyncio.gather(*logins)] == [200] * 4
    assert len(hashing) == 4 and all(name.startswith("ivr-hash") for name in hashing)
    assert client.app[AUTH].hashes.in_flight == 0


async def test_one_address_gets_a_burst_of_password_checks_then_429(app_with):
    client = await app_with(attempts_per_minute=6, attempt_burst=3, trusted_proxies=("127.0.0.1/32",))
    clock = Clock()
    client.app[AUTH].sources = SourceLimiter(6, 3, clock=clock)
    for name in ("nobody1", "nobody2", "nobody3"):  # spraying names: no per-name lock-out helps here
        assert (await login(client, name, "guess", A)).status == 401
    refused = await login(client, "anna", headers=A)  # the N+1th attempt, even with the right password
    assert refused.status == 429 and refused.headers["Retry-After"] == "10"  # one check per 10 s at 6 a minute
    assert (await refused.json())["error"] == "too many login attempts from this address; try again later"
    assert (await client.get("/api/me", auth=basic("anna"), headers=A)).status == 429  # Basic checks count too
    assert (await login(client, "anna", headers=B)).status == 200  # other addresses are not affected
    clock.now += 10
    assert (await login(client, "anna", headers=A)).status == 200


async def test_x_forwarded_for_counts_for_nothing_without_a_trusted_proxy(app_with):
    client = await app_with(attempt_burst=3)  # no trusted_proxies: every request is the test client's address
    for i in range(3):
        spoofed = {"X-Forwarded-For": f"198.51.100.{i}"}
        assert (await login(client, f"nobody{i}", "guess", spoofed)).status == 401
    assert (await login(client, "anna", headers={"X-Forwarded-For": "198.51.100.99"})).status == 429


# Finding 12: lock-out per (user, address); no login CSRF


async def test_wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere(app_with):
    client = await app_with(trusted_proxies=("127.0.0.0/8",))
    for _ in range(5):
        assert (await login(client, "root", "guess", A)).status == 401
    assert (await login(client, "root", headers=A)).status == 429
    assert (await client.get("/api/me", auth=basic("root"), headers=A)).status == 429
    machine = await client.get("/api/me", auth=basic("root"), headers=B)  # the CRM elsewhere keeps working
    assert machine.status == 200 and (await machine.json())["username"] == "root"
    assert (await login(client, "root", headers=B)).status == 200


async def test_a_spoofed_x_forwarded_for_does_not_escape_the_lock_out(app_with):
    client = await app_with()
    for _ in range(5):
        assert (await login(client, "anna", "guess", A)).status == 401
    assert (await login(client, "anna", headers=B)).status == 429  # B is only claimed: the peer is the same


@pytest.mark.parametrize(
    "kind, headers, reason",
    [
        ("form", {"Origin": "https://evil.example"}, "the Origin header names another site"),
        ("form", {"Origin": "null"}, "the Origin header names another site"),
        ("form", {}, "a login form needs this site's Origin header; send JSON instead"),
        ("json", {"Origin": "https://evil.example"}, "the Origin header names another site"),
        ("json", {"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site is 'cross-site', not same-origin"),
        ("form", {"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site is 'same-site', not same-origin"),
    ],
)
async def test_a_cross_site_login_is_refused_with_the_reason(app_with, kind: str, headers: dict, reason: str):
    client = await app_with()
    credentials = {"username": "anna", "password": PASSWORDS["anna"]}
    body = {"data": credentials} if kind == "form" else {"json": credentials}
    resp = await client.post("/agent/login", headers=headers, **body)
    assert resp.status == 403 and COOKIE not in resp.cookies
    assert (await resp.json())["error"] == f"cross-site login refused: {reason}"
    assert (await client.get("/api/me")).status == 401


async def test_a_login_that_is_neither_json_nor_a_form_is_refused(app_with):
    client = await app_with()
    resp = await client.post("/agent/login", data='{"username": "anna"}', headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and "as JSON" in (await resp.json())["error"]


async def test_the_desktop_login_from_this_site_works(app_with):
    client = await app_with()
    url = client.make_url("/")
    headers = {"Origin": f"{url.scheme}://{url.host}:{url.port}", "Sec-Fetch-Site": "same-origin"}
    resp = await login(client, "anna", headers=headers)
    assert resp.status == 200 and COOKIE in resp.cookies


# Where a request comes from


def request_from(peer: str, forwarded: str | None = None):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return make_mocked_request("POST", "/agent/login", headers=headers, transport=transport)


@pytest.mark.parametrize(
    "peer, forwarded, trusted, source",
    [
        ("198.51.100.7", "192.0.2.1", (), "198.51.100.7"),  # nobody trusted: the header is ignored
        ("10.0.0.2", "6.6.6.6, 203.0.113.5, 10.0.0.1", ("10.0.0.0/8",), "203.0.113.5"),  # left of it: made up
        ("10.0.0.2", "not-an-address", ("10.0.0.0/8",), "10.0.0.2"),
        ("10.0.0.2", None, ("10.0.0.0/8",), "10.0.0.2"),
        ("2001:db8:1:2:3:4:5:6", None, (), "2001:db8:1:2::/64"),  # one machine's IPv6 addresses are one source
        ("::ffff:192.0.2.1", None, (), "192.0.2.1"),
    ],
)
def test_the_source_address(peer: str, forwarded: str | None, trusted: tuple, source: str):
    assert client_address(request_from(peer, forwarded), trusted_networks(trusted)) == source


# The limits are settings


def test_login_limits_are_parsed_and_checked(tmp_path):
    path = tmp_path / "ivr.yml"
    path.write_text(
        "logins:\n"
        "  hash_threads: 0\n"  # line 2
        "  attempts_per_minute: 0\n"  # line 3
        "  trusted_proxies: [10.0.0.0/8, proxy.example]\n"  # line 4
        "tenants:\n"
        '  "+4930111": {company: A}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value).replace(f"{path}:", "ivr.yml:")
    assert "ivr.yml:2: logins.hash_threads: 0 is less than the minimum of 1" in text
    assert "ivr.yml:3: logins.attempts_per_minute: 0 is less than or equal to the minimum of 0" in text
    assert "ivr.yml:4: logins.trusted_proxies.1: 'proxy.example' is not a network" in text

    path.write_text('logins: {hash_queue: 4, trusted_proxies: [192.0.2.10]}\ntenants:\n  "+4930111": {company: A}\n')
    logins = load_settings(path, env={}).logins
    assert (logins.hash_threads, logins.hash_queue, logins.trusted_proxies) == (1, 4, ("192.0.2.10",))
    assert (logins.attempts_per_minute, logins.attempt_burst) == (30.0, 30)
