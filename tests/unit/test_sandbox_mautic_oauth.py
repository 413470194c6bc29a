"""The Mautic emulator's token server and header parsing, without HTTP: any input is either
answered with one of oauth2-php's errors or, only for the exact client, secret and grant, a token."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.sandbox.mautic_auth import bearer_token, has_basic_auth
from signal_sync.sandbox.mautic_oauth import (
    MSG_BEARER_EXPIRED,
    MSG_BEARER_INVALID,
    OAuthClient,
    OAuthError,
    TokenStore,
    new_client,
    random_token,
)
from tests.property.profiles import PROFILE

CLIENT = new_client(1)
OTHER = new_client(2, client_credentials=False)
ERRORS = {"invalid_request", "invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"}

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["", "0", "client_credentials", "password", "refresh_token", "authorization_code"]),
    st.sampled_from([CLIENT.client_id, CLIENT.client_secret, OTHER.client_id, OTHER.client_secret]),
    st.lists(st.text(max_size=3), max_size=2),
)
names = st.sampled_from(
    ["grant_type", "client_id", "client_secret", "scope", "code", "redirect_uri", "refresh_token", "other"]
)
basics = st.one_of(
    st.none(),
    st.tuples(st.text(max_size=10), st.text(max_size=10)),
    st.just((CLIENT.client_id, CLIENT.client_secret)),
)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def may_have_a_token(params: dict[str, Any], basic: tuple[str, str] | None) -> bool:
    """Whether oauth2-php grants a token for these parameters."""
    scope = params.get("scope")
    if params.get("grant_type") != "client_credentials":
        return False
    if not isinstance(scope, list | dict) and scope not in (None, "", "0", 0, False):  # a list is no scope
        return False
    if basic is not None and basic[0] not in ("", "0"):
        return basic == (CLIENT.client_id, CLIENT.client_secret)
    return params.get("client_id") == CLIENT.client_id and params.get("client_secret") == CLIENT.client_secret


@PROFILE
@given(st.dictionaries(names, values, max_size=8), basics)
def test_a_token_only_for_the_exact_client_secret_and_grant(params, basic):
    store = TokenStore([CLIENT, OTHER], 60, Clock(1000))
    try:
        answer = store.grant(params, basic)
    except OAuthError as exc:
        assert exc.status == 400 and exc.error in ERRORS and exc.description
        assert store.tokens == {}
        return
    assert may_have_a_token(params, basic)
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 60 and answer["scope"] is None
    assert store.verify(answer["access_token"]) is None


def test_a_token_is_valid_through_its_last_whole_second():
    clock = Clock(1000.9)
    store = TokenStore([CLIENT], 2, clock)
    token = store.grant(
        {
            "grant_type": "client_credentials",
            "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret,
        },
        None,
    )["access_token"]
    clock.now = 1002.99  # expires_at = 1000 + 2; time() > expires_at only from 1003
    assert store.verify(token) is None
    clock.now = 1003.0
    assert store.verify(token) == MSG_BEARER_EXPIRED
    assert store.verify(token + "x") == MSG_BEARER_INVALID


@PROFILE
@given(st.text(max_size=40))
def test_bearer_token_is_the_word_after_a_case_sensitive_bearer(header):
    token = bearer_token(header)
    if "Bearer" not in header:
        assert token is None
    if token is not None:
        assert re.search(r"Bearer\s" + re.escape(token), header) and not any(c.isspace() for c in token)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("Bearer  abc", None),
        ("bearer abc", None),
        ("X Bearer abc def", "abc"),
        ("Bearer", None),
    ],
)
def test_bearer_examples(header, token):
    assert bearer_token(header) == token


@PROFILE
@given(st.text(max_size=20))
def test_basic_auth_is_any_header_starting_with_basic_in_any_case(header):
    assert has_basic_auth(header) == header.lower().startswith("basic")


def test_random_tokens_are_base36_like_fosoauthserverbundles():
    token = random_token()
    assert token.isalnum() and token == token.lower() and 40 <= len(token) <= 50
    assert OAuthClient(f"5_{token}", token).client_id == f"5_{token}"
