"""Fault injection over real HTTP: what the worker's retry/timeout logic will face."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from signal_sync.sandbox import RunningServer, mailgun, mautic

KEY = "key-faults"
LIST = "newsletter@mg.example.com"
MG_AUTH = {"Authorization": aiohttp.encode_basic_auth("api", KEY)}
MG_MEMBERS = f"/v3/lists/{LIST}/members"
MT_AUTH = {"Authorization": aiohttp.encode_basic_auth("signal", "pw")}
MT_NEW = "/api/contacts/new"


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    """``start("mautic"|"mailgun", faults=...)``; every server is stopped after the test."""

    def _start(kind: str, faults: dict[str, Any] | None = None) -> RunningServer:
        if kind == "mautic":
            return serve(mautic.create_app(username="signal", password="pw", faults=faults))
        return serve(mailgun.create_app(api_key=KEY, faults=faults))

    return _start


async def upsert(
    http: aiohttp.ClientSession, server: RunningServer, email: str = "jane@example.com", **kwargs: Any
) -> aiohttp.ClientResponse:
    """One API upsert in the destination's own format; the response is read and released."""
    if "/v3/" in await _kind_path(http, server):
        request = http.post(
            server.url + MG_MEMBERS, data={"address": email, "upsert": "yes"}, headers=MG_AUTH, **kwargs
        )
    else:
        request = http.post(server.url + MT_NEW, json={"email": email}, headers=MT_AUTH, **kwargs)
    async with request as resp:
        await resp.read()
        return resp


async def _kind_path(http: aiohttp.ClientSession, server: RunningServer) -> str:
    async with http.get(server.url + "/_sandbox/health") as resp:
        return "/v3/" if (await resp.json())["kind"] == "mailgun" else "/api/"


async def control(http: aiohttp.ClientSession, server: RunningServer, name: str, body: Any = None) -> Any:
    """GET (body None) or POST a ``/_sandbox/`` endpoint and return its JSON."""
    url = server.url + "/_sandbox/" + name
    request = http.get(url) if body is None else http.post(url, json=body)
    async with request as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def state(http: aiohttp.ClientSession, server: RunningServer) -> list[Any]:
    health = await control(http, server, "health")
    if health["kind"] == "mautic":
        return (await control(http, server, "contacts"))["contacts"]
    return (await control(http, server, "members"))["members"][LIST]


async def last_request(http: aiohttp.ClientSession, server: RunningServer) -> dict[str, Any]:
    return (await control(http, server, "requests?limit=1"))["requests"][0]


# --- rate limits ----------------------------------------------------------------------------


async def test_mailgun_burst_of_429_carries_retry_after(http, start):
    server = start("mailgun", {"rate_limit": {"burst": 2, "retry_after_s": 3}})
    statuses = []
    for _ in range(3):
        resp = await upsert(http, server)
        statuses.append(resp.status)
        if resp.status == 429:
            assert resp.headers["Retry-After"] == "3"
    assert statuses == [429, 429, 200]
    requests = (await control(http, server, "requests"))["requests"]
    assert [r["fault"] for r in requests] == ["rate_limit", "rate_limit", None]
    assert len((await control(http, server, "log/jane@example.com"))["applied"]) == 1


async def test_mautic_429_announces_reset_as_unix_time(http, start):
    server = start("mautic", {"rate_limit": {"burst": 1, "retry_after_s": 2}})
    before = time.time()
    async with http.post(server.url + MT_NEW, json={"email": "a@example.com"}, headers=MT_AUTH) as resp:
        assert resp.status == 429
        assert "Retry-After" not in resp.headers
        reset_at = int(resp.headers["X-RateLimit-Reset"])
        assert before + 1 <= reset_at <= time.time() + 3
        assert (await resp.json())["errors"][0]["code"] == 429
    assert (await upsert(http, server, "a@example.com")).status == 201


async def test_window_limiter_keeps_refusing_until_the_window_rolls(http, start):
    server = start("mailgun", {"rate_limit": {"limit": 2, "window_s": 0.3}})
    statuses = [(await upsert(http, server)).status for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    time.sleep(0.35)
    assert (await upsert(http, server)).status == 200


# --- broken transport -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mautic", "mailgun"])
async def test_reset_drops_the_connection_without_a_response(http, start, kind):
    server = start(kind, {"reset_rate": 1.0})
    with pytest.raises(aiohttp.ClientConnectionError) as info:
        await upsert(http, server)
    assert not isinstance(info.value, TimeoutError)
    entry = await last_request(http, server)
    assert entry["fault"] == "reset" and entry["status"] is None
    assert await state(http, server) == []


async def test_hang_makes_a_short_timeout_client_time_out(http, start):
    server = start("mautic", {"hang_rate": 1.0})  # default hang_seconds: 30
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await upsert(http, server, timeout=aiohttp.ClientTimeout(total=0.5))
    assert time.monotonic() - started < 2
    entry = await last_request(http, server)
    assert entry["fault"] == "hang" and entry["status"] is None  # still held

    await control(http, server, "faults", {})  # clearing faults releases held requests
    deadline = time.monotonic() + 3
    while (entry := await last_request(http, server))["status"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert entry["status"] == 504
    assert await state(http, server) == []


async def test_stop_does_not_wait_for_hung_requests(http, start):
    server = start("mailgun", {"hang_rate": 1.0, "hang_seconds": 30})
    with pytest.raises(TimeoutError):
        await upsert(http, server, timeout=aiohttp.ClientTimeout(total=0.3))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3


# --- errors, forced status, latency ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["mautic", "mailgun"])
async def test_force_status_401_until_cleared(http, start, kind):
    server = start(kind)
    config = await control(http, server, "faults", {"force_status": 401})
    assert config["faults"]["force_status"] == 401
    resp = await upsert(http, server)
    assert resp.status == 401
    if kind == "mailgun":
        assert resp.content_type == "text/plain"
    else:
        assert resp.content_type == "application/json"
    assert (await control(http, server, "health"))["status"] == "ok"  # control routes unaffected
    assert (await last_request(http, server))["fault"] == "force_status"
    assert await state(http, server) == []

    assert (await control(http, server, "faults", {}))["faults"]["force_status"] is None
    assert (await upsert(http, server)).status in (200, 201)
    assert len(await state(http, server)) == 1


async def test_error_rate_answers_configured_status_and_applies_nothing(http, start):
    server = start("mautic", {"error_rate": 1.0, "error_status": 500})
    resp = await upsert(http, server)
    assert resp.status == 500
    assert (await last_request(http, server))["fault"] == "error"
    assert await state(http, server) == []
    assert (await control(http, server, "log/jane@example.com"))["applied"] == []
    assert (await control(http, server, "faults"))["stats"] == {"requests": 1, "error": 1}


async def test_same_seed_replays_the_same_fault_sequence(http, start):
    faults = {"seed": 7, "error_rate": 0.5, "rate_limit": {"rate": 0.2}}
    runs = []
    for _ in range(2):
        server = start("mailgun", faults)
        runs.append([(await upsert(http, server, f"u{i}@example.com")).status for i in range(24)])
    assert runs[0] == runs[1]
    assert {200, 429, 503} <= set(runs[0])
    other = start("mailgun", faults | {"seed": 8})
    assert [(await upsert(http, other, f"u{i}@example.com")).status for i in range(24)] != runs[0]


async def test_latency_delays_api_but_not_control_routes(http, start):
    server = start("mailgun", {"latency_ms": 300, "jitter_ms": 50})
    started = time.monotonic()
    assert (await upsert(http, server)).status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await control(http, server, "health")
    assert time.monotonic() - started < 0.2


# --- configuration --------------------------------------------------------------------------


async def test_invalid_fault_config_is_refused_and_keeps_the_old_one(http, start):
    server = start("mailgun", {"latency_ms": 1})
    async with http.post(server.url + "/_sandbox/faults", json={"error_rate": 2}) as resp:
        assert resp.status == 400
    async with http.post(server.url + "/_sandbox/faults", json={"no_such_fault": 1}) as resp:
        assert resp.status == 400
    assert (await control(http, server, "faults"))["faults"]["latency_ms"] == 1


async def test_reset_restores_the_creation_time_faults(http, start):
    server = start("mautic", {"force_status": 503})
    await control(http, server, "faults", {})
    assert (await upsert(http, server)).status == 201
    await control(http, server, "reset", {})
    assert (await control(http, server, "faults"))["faults"]["force_status"] == 503
    assert (await upsert(http, server)).status == 503
