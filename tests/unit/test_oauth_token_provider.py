"""The OAUTHBEARER token provider Faust's aiokafka clients use, against a real local token endpoint
(``tests/support/oidc.py``): one token shared by every caller and event loop, refreshed before it
expires, and failures that name the setting."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.errors import ConfigError
from signal_sync.streams.oauth import (
    REFRESH_LEEWAY_S,
    UNKNOWN_LIFETIME_S,
    ClientCredentialsTokenProvider,
    _jwt_claims,
    _lifetime,
    parse_extensions,
)
from tests.support.oidc import Provider, running

CLIENT_ID = "signal-sync"
SECRET = "token-test-secret-1"  # noqa: S105 - a test value


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[Provider]:
    with running(Provider({CLIENT_ID: SECRET}, lifetime_s=300)) as provider:
        yield provider


def provider_for(
    idp: Provider, secret: str = SECRET, scope: str | None = "kafka", **kwargs: Any
) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(idp.token_url, CLIENT_ID, secret, scope, **kwargs)


async def test_concurrent_callers_share_one_token(idp: Provider) -> None:
    provider = provider_for(idp)
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert len(set(tokens)) == 1 and provider.fetches == 1 and len(idp.issued) == 1
    claims = _jwt_claims(tokens[0])
    assert (claims["sub"], claims["aud"], claims["scope"]) == (CLIENT_ID, "kafka", "kafka")


def test_callers_on_other_event_loops_share_it_too(idp: Provider) -> None:
    """Faust's consumer runs in a thread with its own loop; its connections ask the same provider."""
    provider = provider_for(idp)
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda: tokens.append(asyncio.run(provider.token()))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(tokens) == 4 and len(set(tokens)) == 1 and provider.fetches == 1


def test_a_new_token_before_the_kept_one_expires(idp: Provider) -> None:
    clock = Clock()
    provider = provider_for(idp, clock=clock)
    first = provider.current_token()
    clock.now += 300 - REFRESH_LEEWAY_S - 1
    assert provider.current_token() == first and provider.fetches == 1
    clock.now += 2
    provider.current_token()
    assert provider.fetches == 2 and len(idp.issued) == 2


@pytest.mark.parametrize(
    ("secret", "scope", "field"),
    [
        ("wrong-secret", "kafka", "kafka.sasl_oauthbearer_client_secret: "),
        (SECRET, "admin", "kafka.sasl_oauthbearer_scope: "),
    ],
)
def test_a_refusal_names_the_setting(idp: Provider, secret: str, scope: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        provider_for(idp, secret, scope).current_token()
    assert str(info.value).startswith(field) and "wrong-secret" not in str(info.value)


def test_an_unreachable_endpoint_names_the_url() -> None:
    provider = ClientCredentialsTokenProvider("http://127.0.0.1:1/token", CLIENT_ID, SECRET)
    with pytest.raises(ConfigError, match=r"^kafka\.sasl_oauthbearer_token_endpoint_url: no access token"):
        provider.current_token()


def _jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


def test_lifetime_from_the_answer_else_the_jwt_else_a_minute() -> None:
    now = 1_800_000_000.0
    assert _lifetime({"expires_in": 120}, "opaque", now) == 120
    assert _lifetime({}, _jwt({"exp": now + 900}), now) == 900
    assert _lifetime({"expires_in": True}, "opaque", now) == UNKNOWN_LIFETIME_S
    assert _lifetime({}, "opaque", now) == UNKNOWN_LIFETIME_S


def test_extensions_parse_as_librdkafka_writes_them() -> None:
    assert parse_extensions("logicalCluster=lkc-1, identityPoolId=pool-2,junk,=x") == {
        "logicalCluster": "lkc-1",
        "identityPoolId": "pool-2",
    }


@given(st.text(max_size=200))
def test_any_token_text_reads_as_claims_or_none(text: str) -> None:
    assert isinstance(_jwt_claims(text), dict)
    assert isinstance(parse_extensions(text), dict)
