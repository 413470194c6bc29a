"""OAuth2 client credentials on the worker side: the token cache and the sender's bearer requests.

Against the sandbox Mautic over real loopback HTTP (Basic auth disabled, so a token request that
sent the client credentials as HTTP Basic would be refused), except where the answers must be
ones Mautic never gives on its own (a token refused right after it was issued): there a scripted
server on the test's loop answers. The cache's clock is a controllable one, so expiry is tested
without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.config import DeliverySettings, MauticIntegration
from signal_sync.destinations import mautic as mautic_mapping
from signal_sync.destinations import mautic_privacy
from signal_sync.destinations.classify import Verdict
from signal_sync.destinations.delivery import Sender
from signal_sync.destinations.mautic_auth import (
    HINT_BEARER_REFUSED,
    HINT_INVALID_CLIENT,
    HINT_UNAUTHORIZED_CLIENT,
)
from signal_sync.destinations.oauth2 import TokenCache, TokenFailure, expiry_leeway, read_token
from signal_sync.sandbox import mautic, start_in_thread
from signal_sync.sandbox.mautic_oauth import OAuthClient
from signal_sync.sandbox.server import RunningServer
from tests.support.sandbox import set_faults
from tests.support.scripted_server import Answer, ScriptedServer, Seen

CLIENT = OAuthClient(
    "5_1t2m3zm0p9s0gk0k4o8w4c0s8c4ogg4kwgc0w0sw08gkwc8g8o", "4w8zqovbn7gg4sk0c0gs0gos8og8ow4k8"
)
ADMINLESS = OAuthClient(
    "6_3z2lzx0x0ckg4k8cgkkc8ogo4g8wc0w8cwg0s4ogk4sw40kw8", "2b7c0zdy2xkwgwgo0c00g0oc8kckkc", False
)
JANE = {"email": "jane@example.com", "firstname": "Jane"}


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def crm() -> Iterator[RunningServer]:
    app = mautic.create_app(
        username="signal", password="pw", basic_auth_enabled=False, oauth_clients=[CLIENT, ADMINLESS]
    )
    with start_in_thread(app) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield http


def integration(base_url: str, client: OAuthClient = CLIENT, secret: str | None = None) -> MauticIntegration:
    return MauticIntegration.model_validate(
        {
            "id": "mautic-oauth",
            "type": "mautic",
            "base_url": base_url,
            "auth": {
                "type": "oauth2",
                "client_id": client.client_id,
                "client_secret": secret or client.client_secret,
            },
        }
    )


def cache(base_url: str, clock: Clock | None = None, **kwargs: Any) -> TokenCache:
    config = integration(base_url, **kwargs)
    assert config.oauth2 is not None
    return TokenCache(base_url, config.oauth2, clock=clock or Clock())


async def oauth_state(http: aiohttp.ClientSession, server: RunningServer) -> dict[str, Any]:
    async with http.get(server.url + "/_sandbox/oauth") as reply:
        return await reply.json()


async def control(http: aiohttp.ClientSession, server: RunningServer, path: str) -> None:
    async with http.post(server.url + path) as reply:
        assert reply.status == 200


def sender() -> Sender:
    return Sender(DeliverySettings(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02))


# --- the cache -------------------------------------------------------------------------------


async def test_a_token_is_kept_until_the_leeway_before_its_expiry(crm, session) -> None:
    clock = Clock()
    tokens = cache(crm.url, clock)
    first = await tokens.token(session)
    assert isinstance(first, str)
    lifetime = 3600.0  # the sandbox's default, Mautic's api_oauth2_access_token_lifetime of 60 minutes
    clock.now += lifetime - 60 - 0.001  # a minute before Mautic's expiry it is still used
    assert await tokens.token(session) == first and tokens.requests == 1
    clock.now += 0.002  # from then on a new one is fetched
    second = await tokens.token(session)
    assert isinstance(second, str) and second != first and tokens.requests == 2
    assert (await oauth_state(session, crm))["issued"] == 2


def test_the_leeway_is_a_minute_or_a_tenth_of_a_short_lifetime() -> None:
    assert expiry_leeway(3600) == 60 and expiry_leeway(7200) == 60
    assert expiry_leeway(10) == 1


async def test_many_concurrent_callers_make_one_token_request(crm, session) -> None:
    set_faults(crm.url, {"latency_ms": 100})  # the token request is in flight while the others ask
    tokens = cache(crm.url)
    got = await asyncio.gather(*(tokens.token(session) for _ in range(20)))
    assert len(set(got)) == 1 and isinstance(got[0], str)
    assert tokens.requests == 1 and (await oauth_state(session, crm))["issued"] == 1


async def test_callers_waiting_on_a_failed_request_take_its_failure(crm, session) -> None:
    set_faults(crm.url, {"latency_ms": 100})
    tokens = cache(crm.url, secret="wrong-secret")
    got = await asyncio.gather(*(tokens.token(session) for _ in range(10)))
    assert all(isinstance(g, TokenFailure) for g in got)
    assert tokens.requests == 1
    failure = got[0]
    assert isinstance(failure, TokenFailure)
    assert failure.classification.verdict is Verdict.FAULT and failure.status == 400
    assert failure.hint == HINT_INVALID_CLIENT
    assert b"wrong-secret" not in failure.body
    # a later caller asks again (the credential may have been fixed meanwhile)
    assert isinstance(await tokens.token(session), TokenFailure) and tokens.requests == 2


async def test_discard_replaces_only_the_refused_token(crm, session) -> None:
    tokens = cache(crm.url)
    first = await tokens.token(session)
    assert isinstance(first, str)
    tokens.discard(first)
    second = await tokens.token(session)
    assert isinstance(second, str) and second != first
    tokens.discard(first)  # a caller that held the old token: the new one stays
    assert await tokens.token(session) == second and tokens.requests == 2


async def test_a_client_without_the_grant_is_told_to_ask_an_administrator(crm, session) -> None:
    failure = await cache(crm.url, client=ADMINLESS).token(session)
    assert isinstance(failure, TokenFailure)
    assert (failure.status, failure.hint) == (400, HINT_UNAUTHORIZED_CLIENT)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_read_token_never_raises_and_takes_only_a_bearer_with_a_lifetime(value: Any) -> None:
    try:
        body = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return
    answer = read_token(body)
    if answer is not None:
        token, expires_in = answer
        assert isinstance(value, dict) and value["access_token"] == token and expires_in > 0
        assert str(value["token_type"]).lower() == "bearer"


def test_read_token_takes_mautic_s_answer() -> None:
    body = b'{"access_token":"abc-_123","expires_in":3600,"token_type":"bearer","scope":null}'
    assert read_token(body) == ("abc-_123", 3600.0)
    assert read_token(b'{"access_token":"abc","expires_in":"7200","token_type":"Bearer"}') == ("abc", 7200.0)
    assert read_token(b'{"access_token":"abc","token_type":"bearer"}') is None
    assert read_token(b'{"access_token":"a b","expires_in":1,"token_type":"bearer"}') is None
    assert read_token(b'{"access_token":"abc","expires_in":0,"token_type":"bearer"}') is None
    assert read_token(b"<html>") is None


# --- the sender ------------------------------------------------------------------------------


async def test_requests_are_built_without_credentials_and_sent_with_the_bearer(crm, session) -> None:
    config = integration(crm.url)
    request = mautic_mapping.single_request(config, JANE)
    built = [
        request,
        mautic_mapping.build_batch_request(config, [JANE]),
        mautic_privacy.lookup_request(config, "jane@example.com"),
        mautic_privacy.contact_request(config, 1),
        mautic_privacy.withdraw_tag_request(config, 1),
        mautic_privacy.dnc_add_request(config, 1),
        mautic_privacy.dnc_remove_request(config, 1),
    ]
    assert all("Authorization" not in each.headers for each in built)
    send = sender()
    try:
        result = await send.deliver(config, request)
        batch = await send.deliver(config, built[1])
        lookup = await send.deliver(config, built[2])
    finally:
        await send.close()
    assert (result.status, result.http_status) == ("delivered", 201)
    assert (batch.status, lookup.status) == ("delivered", "delivered")
    async with session.get(crm.url + "/_sandbox/requests") as reply:
        calls = (await reply.json())["requests"]
    assert [(c["method"], c["path"], c["authorization"]) for c in calls] == [
        ("POST", "/oauth/v2/token", None),
        ("POST", "/api/contacts/new", "Bearer <redacted>"),
        ("POST", "/api/contacts/batch/new", "Bearer <redacted>"),
        ("GET", "/api/contacts", "Bearer <redacted>"),
    ]


async def test_an_expired_token_is_fetched_again_once_and_the_request_goes_through(crm, session) -> None:
    config = integration(crm.url)
    send = sender()
    try:
        assert (await send.deliver(config, mautic_mapping.single_request(config, JANE))).status == "delivered"
        await control(session, crm, "/_sandbox/oauth/expire")
        result = await send.deliver(config, mautic_mapping.single_request(config, JANE))
    finally:
        await send.close()
    assert (result.status, result.http_status, result.attempts) == ("delivered", 200, 1)
    assert (await oauth_state(session, crm))["issued"] == 2
    async with session.get(crm.url + "/_sandbox/requests") as reply:
        calls = [(c["path"], c["status"]) for c in (await reply.json())["requests"]]
    assert calls == [
        ("/oauth/v2/token", 200),
        ("/api/contacts/new", 201),
        ("/api/contacts/new", 401),
        ("/oauth/v2/token", 200),
        ("/api/contacts/new", 200),
    ]


async def test_a_token_refused_again_after_a_refetch_is_a_fault_with_its_hint() -> None:
    issued = 0

    def script(seen: Seen) -> Answer:
        nonlocal issued
        if seen.path == "/oauth/v2/token":
            issued += 1
            return Answer(
                200, {"access_token": f"token{issued:02d}xyz", "expires_in": 3600, "token_type": "bearer"}
            )
        refused = {
            "errors": [
                {"message": "The access token provided is invalid.", "code": 401, "type": "invalid_grant"}
            ]
        }
        return Answer(401, refused)

    async with ScriptedServer(script) as server:
        config = integration(server.url)
        send = sender()
        try:
            result = await send.deliver(config, mautic_mapping.single_request(config, JANE))
        finally:
            await send.close()
        api_calls = [s.headers.get("Authorization") for s in server.seen if s.path != "/oauth/v2/token"]
    assert result.fault and result.http_status == 401 and result.hint == HINT_BEARER_REFUSED
    assert issued == 2, "one new token, then the normal classification"
    assert api_calls == ["Bearer token01xyz", "Bearer token02xyz"]


async def test_a_wrong_client_secret_pauses_the_integration_never_fails_the_event(crm, session) -> None:
    config = integration(crm.url, secret="wrong-secret")
    send = sender()
    try:
        result = await send.deliver(config, mautic_mapping.single_request(config, JANE))
    finally:
        await send.close()
    assert result.fault and result.status == "failed"
    assert (result.http_status, result.reason, result.hint) == (400, "token_http_400", HINT_INVALID_CLIENT)
    assert result.attempts == 1 and "wrong-secret" not in (result.error or "")


async def test_a_token_endpoint_outage_is_a_destination_outage(crm, session) -> None:
    set_faults(crm.url, {"force_status": 503})
    config = integration(crm.url)
    send = sender()
    try:
        result = await send.deliver(config, mautic_mapping.single_request(config, JANE))
    finally:
        await send.close()
    assert result.destination_down and not result.fault and result.attempts == 2
    assert result.reason == "token_http_503"


async def test_neither_the_secret_nor_a_token_is_logged(crm, session, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config = integration(crm.url)
    send = sender()
    seen_tokens: list[str] = []
    try:
        await send.deliver(config, mautic_mapping.single_request(config, JANE))
        await control(session, crm, "/_sandbox/oauth/expire")
        await send.deliver(config, mautic_mapping.single_request(config, JANE))
        tokens = send.tokens_of(config)
        assert tokens is not None and tokens.requests == 2
        current = await tokens.token(session)
        assert isinstance(current, str)
        seen_tokens.append(current)
        wrong = integration(crm.url, secret="wrong-secret-123")
        await send.deliver(
            wrong.model_copy(update={"id": "other"}), mautic_mapping.single_request(wrong, JANE)
        )
    finally:
        await send.close()
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    for secret in (CLIENT.client_secret, "wrong-secret-123", *seen_tokens):
        assert secret not in text
