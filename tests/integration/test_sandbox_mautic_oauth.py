"""The Mautic emulator's OAuth2 client-credentials grant and bearer checks, over real HTTP.

The token endpoint's answers and errors, bearer tokens beside (and without) Basic auth, expiry
and revocation, and the journal keeping no secret. docs/destinations-api.md has the sources.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from harness import free_port

from signal_sync.sandbox import RunningServer, mautic
from signal_sync.sandbox.mautic_oauth import OAuthClient, new_client
from tests.support.sandbox import request, set_faults, wait_until_serving

pytestmark = pytest.mark.integration

USER = "signal"
PASSWORD = "s3cret-pw"
BASIC = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
CLIENT = OAuthClient(
    "3_4x1vjsc3aao4kgg8s0w40wkw0c0cko8gs0k4kw4wo8ckccso0c", "5w2fyt8l1hs0gos4cw8g8wgcco8w4ckwg0"
)
ADMINLESS = OAuthClient(
    "4_1o9b8c5lx4g0os0sgwsc8wgo8c0okgkc0ok0cokc4c8wgg0k48", "2ot4t3qzq1s0kogw8gsocoskg0k8cw4o4", False
)
TOKEN = "/oauth/v2/token"
NEW = "/api/contacts/new"
JANE = {"email": "jane@example.com", "firstname": "Jane"}
GRANT = {
    "grant_type": "client_credentials",
    "client_id": CLIENT.client_id,
    "client_secret": CLIENT.client_secret,
}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    """Mautic emulators with ``CLIENT`` (client credentials allowed) and ``ADMINLESS`` (not allowed)."""
    base = {"username": USER, "password": PASSWORD, "oauth_clients": [CLIENT, ADMINLESS]}
    return lambda **options: serve(mautic.create_app(**(base | options)))


async def token_call(
    http: aiohttp.ClientSession, server: RunningServer, method: str = "POST", **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    return await request(http, method, server.url + TOKEN, kwargs.pop("headers", None), **kwargs)


async def access_token(http: aiohttp.ClientSession, server: RunningServer) -> str:
    status, body, _ = await token_call(http, server, data=GRANT)
    assert status == 200, body
    return body["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upsert(http, server, headers) -> tuple[int, Any]:
    status, body, _ = await request(http, "POST", server.url + NEW, headers, json=JANE)
    return status, body


def auth_error(body: Any) -> dict[str, Any]:
    """The one error of an auth answer, asserting ``ApiSubscriber``'s shape (no ``details``)."""
    (only,) = body["errors"]
    assert set(body) == {"errors"} and set(only) == {"message", "code", "type"}, body
    return only


# --- the token endpoint ---------------------------------------------------------------------


async def test_client_credentials_grant_answers_like_oauth2_php(http, start):
    server = start(access_token_lifetime_s=120)
    status, body, resp = await token_call(http, server, data=GRANT)
    assert status == 200
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}  # no refresh_token
    assert body["expires_in"] == 120 and body["token_type"] == "bearer" and body["scope"] is None
    assert (
        len(body["access_token"]) == 86 and body["access_token"].replace("-", "").replace("_", "").isalnum()
    )
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Pragma"] == "no-cache"
    assert resp.content_type == "application/json"


async def test_default_lifetime_is_mautics_sixty_minutes(http, start):
    _, body, _ = await token_call(http, start(), data=GRANT)
    assert body["expires_in"] == 3600


async def test_bearer_token_reads_and_writes(http, start):
    server = start()
    headers = bearer(await access_token(http, server))
    status, body = await upsert(http, server, headers)
    assert status == 201 and body["contact"]["fields"]["all"]["email"] == JANE["email"]
    status, body, _ = await request(http, "GET", server.url + "/api/contacts?limit=1", headers)
    assert status == 200 and body["total"] == 1
    status, _, _ = await request(http, "GET", server.url + "/api/contacts/1", headers)
    assert status == 200


@pytest.mark.parametrize("how", ["form", "multipart", "json", "query"])
async def test_parameters_come_from_a_form_a_json_body_or_the_query(http, start, how):
    server = start()
    if how == "form":
        status, body, _ = await token_call(http, server, data=GRANT)
    elif how == "multipart":
        form = aiohttp.FormData(GRANT, default_to_multipart=True)
        status, body, _ = await token_call(http, server, data=form)
    elif how == "json":
        status, body, _ = await token_call(http, server, json=GRANT)
    else:
        status, body, _ = await token_call(http, server, "GET", params=GRANT)
    assert status == 200, body
    assert (await upsert(http, server, bearer(body["access_token"])))[0] == 201


async def test_a_repeated_form_key_keeps_its_last_value(http, start):
    server = start()
    data = [*GRANT.items(), ("client_secret", "wrong")]
    status, body, _ = await token_call(http, server, data=data)
    assert status == 400 and auth_error(body)["type"] == "invalid_client"
    data = [("client_secret", "wrong"), *GRANT.items()]
    assert (await token_call(http, server, data=data))[0] == 200


async def test_client_credentials_in_http_basic_work_only_while_basic_auth_is_on(http, start):
    basic_client = {"Authorization": aiohttp.encode_basic_auth(CLIENT.client_id, CLIENT.client_secret)}
    server = start()
    status, body, _ = await token_call(
        http, server, data={"grant_type": "client_credentials"}, headers=basic_client
    )
    assert status == 200, body
    # HTTP Basic wins over the body
    data = {"grant_type": "client_credentials", "client_id": "9_nobody", "client_secret": "x"}
    assert (await token_call(http, server, data=data, headers=basic_client))[0] == 200

    off = start(basic_auth_enabled=False)
    status, body, _ = await token_call(
        http, off, data={"grant_type": "client_credentials"}, headers=basic_client
    )
    assert status == 403
    assert auth_error(body) == {"message": mautic.MSG_BASIC_DISABLED, "code": 403, "type": "access_denied"}
    assert (await token_call(http, off, data=GRANT))[0] == 200  # the same client, in the body


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({}, "invalid_request", "Invalid grant_type parameter or parameter missing"),
        (
            GRANT | {"grant_type": "client-credentials"},
            "invalid_request",
            "Invalid grant_type parameter or parameter missing",
        ),
        (GRANT | {"grant_type": ""}, "invalid_request", "Invalid grant_type parameter or parameter missing"),
        (
            {"grant_type": "client_credentials"},
            "invalid_client",
            "Client id was not found in the headers or body",
        ),
        (GRANT | {"client_id": "0"}, "invalid_client", "Client id was not found in the headers or body"),
        (GRANT | {"client_id": "3_unknown"}, "invalid_client", "The client credentials are invalid"),
        (GRANT | {"client_secret": "wrong"}, "invalid_client", "The client credentials are invalid"),
        (
            {k: v for k, v in GRANT.items() if k != "client_secret"},
            "invalid_client",
            "The client credentials are invalid",
        ),
        (
            GRANT | {"grant_type": "password"},
            "unauthorized_client",
            "The grant type is unauthorized for this client_id",
        ),
        (
            GRANT | {"grant_type": "urn:custom"},
            "unauthorized_client",
            "The grant type is unauthorized for this client_id",
        ),
        (GRANT | {"scope": "user"}, "invalid_scope", "An unsupported scope was requested."),
        (
            GRANT | {"grant_type": "authorization_code"},
            "invalid_request",
            'Missing parameter. "code" is required',
        ),
        (
            GRANT | {"grant_type": "authorization_code", "code": "c"},
            "invalid_request",
            "The redirect URI parameter is required.",
        ),
        (
            GRANT
            | {"grant_type": "authorization_code", "code": "c", "redirect_uri": "https://example.com/cb"},
            "invalid_grant",
            "Code doesn't exist or is invalid for the client",
        ),
        (GRANT | {"grant_type": "refresh_token"}, "invalid_request", 'No "refresh_token" parameter found'),
        (
            GRANT | {"grant_type": "refresh_token", "refresh_token": "r"},
            "invalid_grant",
            "Invalid refresh token",
        ),
    ],
)
async def test_token_errors_are_400_in_mautics_rewritten_shape(http, start, data, error, message):
    server = start()
    status, body, resp = await token_call(http, server, data=data)
    assert status == 400
    assert auth_error(body) == {"message": message, "code": 400, "type": error}
    assert "WWW-Authenticate" not in resp.headers
    assert (await server_state(http, server))["issued"] == 0


async def test_a_client_an_administrator_did_not_create_may_not_use_the_grant(http, start):
    server = start()
    data = {
        "grant_type": "client_credentials",
        "client_id": ADMINLESS.client_id,
        "client_secret": ADMINLESS.client_secret,
    }
    status, body, _ = await token_call(http, server, data=data)
    assert status == 400
    assert auth_error(body) == {
        "message": "The grant type is unauthorized for this client_id",
        "code": 400,
        "type": "unauthorized_client",
    }


async def test_the_token_endpoint_is_refused_while_the_api_is_disabled(http, start):
    server = start(api_enabled=False)
    status, body, _ = await token_call(http, server, data=GRANT)
    assert status == 403
    assert auth_error(body) == {"message": mautic.MSG_API_DISABLED, "code": 403, "type": "api_disabled"}


async def test_token_endpoint_paths_and_methods(http, start):
    server = start()
    status, body, _ = await request(http, "PUT", server.url + TOKEN, None, data=GRANT)
    assert status == 405 and body["errors"][0]["code"] == 405
    status, body, _ = await request(http, "POST", server.url + "/mautic" + TOKEN, None, data=GRANT)
    assert status == 404 and isinstance(body, str) and "Not Found" in body  # a base_url with a path
    status, _, _ = await request(http, "POST", server.url + TOKEN + "/", None, data=GRANT)
    assert status == 404


async def test_every_call_issues_a_new_token_and_earlier_ones_stay_valid(http, start):
    server = start()
    first, second = await access_token(http, server), await access_token(http, server)
    assert first != second
    for token in (first, second):
        assert (await upsert(http, server, bearer(token)))[0] in (200, 201)
    assert (await server_state(http, server))["issued"] == 2


async def test_faults_apply_to_the_token_endpoint(http, start):
    server = start()
    set_faults(server.url, {"force_status": 503})
    assert (await token_call(http, server, data=GRANT))[0] == 503
    set_faults(server.url, {})
    assert (await token_call(http, server, data=GRANT))[0] == 200


# --- bearer checks --------------------------------------------------------------------------


async def test_bearer_tokens_work_while_basic_auth_is_off_and_basic_is_refused(http, start):
    server = start(basic_auth_enabled=False)
    token = await access_token(http, server)
    assert (await upsert(http, server, bearer(token)))[0] == 201
    status, body = await upsert(http, server, BASIC)
    assert status == 403
    assert auth_error(body) == {"message": mautic.MSG_BASIC_DISABLED, "code": 403, "type": "access_denied"}
    status, body = await upsert(http, server, {"Authorization": "basic Zm9vOmJhcg=="})  # any case of "basic"
    assert status == 403 and auth_error(body)["message"] == mautic.MSG_BASIC_DISABLED


async def test_basic_auth_keeps_working_beside_oauth2(http, start):
    server = start()
    await access_token(http, server)
    assert (await upsert(http, server, BASIC))[0] == 201


@pytest.mark.parametrize(
    ("header", "message", "error_type"),
    [
        ("Bearer not-a-token", "The access token provided is invalid.", "invalid_grant"),
        ("bearer {token}", "API authorization denied.", "access_denied"),  # oauth2-php wants "Bearer"
        ("Token {token}", "API authorization denied.", "access_denied"),
        ("Bearer", "API authorization denied.", "access_denied"),
    ],
)
async def test_bad_bearer_headers(http, start, header, message, error_type):
    server = start()
    token = await access_token(http, server)
    status, body = await upsert(http, server, {"Authorization": header.format(token=token)})
    assert status == 401
    assert auth_error(body) == {"message": message, "code": 401, "type": error_type}


async def test_a_token_in_the_query_is_not_read(http, start):
    server = start()
    token = await access_token(http, server)
    status, body, _ = await request(
        http, "GET", server.url + "/api/contacts", None, params={"access_token": token}
    )
    assert status == 401 and auth_error(body)["message"] == "API authorization denied."


async def test_auth_401s_carry_no_www_authenticate_header(http, start):
    server = start()
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": aiohttp.encode_basic_auth(USER, "x")},
    ):
        status, _, resp = await request(http, "POST", server.url + NEW, headers, json=JANE)
        assert status == 401 and "WWW-Authenticate" not in resp.headers


async def test_the_api_switch_comes_before_the_token_check(http, start):
    server = start(api_enabled=False)
    status, body = await upsert(http, server, bearer("whatever"))
    assert status == 403 and auth_error(body)["type"] == "api_disabled"


async def test_revoked_tokens_are_invalid_and_a_new_one_works(http, start):
    server = start()
    token = await access_token(http, server)
    _, revoked, _ = await request(http, "POST", server.url + "/_sandbox/oauth/revoke", None)
    assert revoked == {"revoked": 1}
    status, body = await upsert(http, server, bearer(token))
    assert status == 401
    assert auth_error(body) == {
        "message": "The access token provided is invalid.",
        "code": 401,
        "type": "invalid_grant",
    }
    assert (await upsert(http, server, bearer(await access_token(http, server))))[0] == 201


async def test_expired_tokens_say_so_and_a_new_one_works(http, start):
    server = start()
    token = await access_token(http, server)
    _, expired, _ = await request(http, "POST", server.url + "/_sandbox/oauth/expire", None)
    assert expired == {"expired": 1}
    status, body = await upsert(http, server, bearer(token))
    assert status == 401
    assert auth_error(body) == {
        "message": "The access token provided has expired.",
        "code": 401,
        "type": "invalid_grant",
    }
    assert [t["expired"] for t in (await server_state(http, server))["tokens"]] == [True]
    assert (await upsert(http, server, bearer(await access_token(http, server))))[0] == 201


async def test_a_token_expires_by_itself_after_its_lifetime(http, start):
    server = start(access_token_lifetime_s=1)
    issued_at = time.time()
    headers = bearer(await access_token(http, server))
    assert (await upsert(http, server, headers))[0] == 201
    deadline = time.monotonic() + 10
    while True:
        status, body = await upsert(http, server, headers)
        if status == 401:
            break
        assert status == 200 and time.monotonic() < deadline, "the token never expired"
        await asyncio.sleep(0.05)
    assert auth_error(body)["message"] == "The access token provided has expired."
    assert time.time() - issued_at >= 1  # valid for its whole lifetime first


async def test_reset_forgets_tokens(http, start):
    server = start()
    token = await access_token(http, server)
    await request(http, "POST", server.url + "/_sandbox/reset", None)
    assert (await upsert(http, server, bearer(token)))[0] == 401
    assert (await server_state(http, server))["issued"] == 0


# --- what a test may see ----------------------------------------------------------------------


async def server_state(http, server) -> dict[str, Any]:
    status, body, _ = await request(http, "GET", server.url + "/_sandbox/oauth", None)
    assert status == 200
    return body


async def test_oauth_state_shows_clients_and_tokens_without_secrets(http, start):
    server = start(access_token_lifetime_s=60)
    token = await access_token(http, server)
    state = await server_state(http, server)
    assert state["clients"][0] == {
        "client_id": CLIENT.client_id,
        "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
    }
    assert state["clients"][1]["grant_types"] == ["authorization_code", "refresh_token"]
    assert state["access_token_lifetime_s"] == 60 and state["issued"] == 1
    assert [t["client_id"] for t in state["tokens"]] == [CLIENT.client_id]
    text = str(state)
    assert token not in text and CLIENT.client_secret not in text


async def test_the_journal_keeps_no_client_secret_or_token(http, start):
    server = start()
    token = await access_token(http, server)
    await token_call(http, server, json=GRANT)
    await token_call(http, server, "GET", params=GRANT)
    await token_call(http, server, data=f"grant_type=client_credentials&client_secret={CLIENT.client_secret}")
    await upsert(http, server, bearer(token))
    await request(http, "GET", server.url + "/api/contacts", None, params={"access_token": token})
    set_faults(server.url, {"force_status": 503})
    await token_call(http, server, data=GRANT)  # faulted: journaled, never handled
    _, journal, _ = await request(http, "GET", server.url + "/_sandbox/requests", None)
    text = str(journal)
    assert CLIENT.client_secret not in text and token not in text
    records = journal["requests"]
    assert records[0]["body"]["client_secret"] == "<redacted>"
    assert "client_secret=%3Credacted%3E" in records[2]["query"]
    assert records[4]["authorization"] == "Bearer <redacted>"
    assert records[-1]["fault"] == "force_status" and records[-1]["body"]["client_secret"] == "<redacted>"


# --- configuration and the CLI --------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "secret", "field"),
    [
        ("abc", "s", "client_id"),
        ("0_abc", "s", "client_id"),
        ("1_ABC", "s", "client_id"),
        ("1_abc", "", "client_secret"),
    ],
)
def test_client_ids_and_secrets_must_look_like_mautics(client_id, secret, field):
    with pytest.raises(ValueError, match=field):
        OAuthClient(client_id, secret)


def test_new_clients_look_like_mautics_and_lifetimes_are_whole_seconds():
    client = new_client(7)
    assert client.client_id.startswith("7_") and client.client_credentials
    with pytest.raises(ValueError, match="access_token_lifetime_s"):
        mautic.create_app(username=USER, password=PASSWORD, access_token_lifetime_s=0)
    with pytest.raises(ValueError, match="access_token_lifetime_s"):
        mautic.create_app(username=USER, password=PASSWORD, access_token_lifetime_s=1.5)


async def test_cli_serves_an_oauth_client_with_the_secret_from_the_environment(http):
    port = free_port()
    client = new_client(2)
    env = os.environ | {"MAUTIC_PASSWORD": "pw", "MAUTIC_CLIENT_SECRET": client.client_secret}
    cmd = [sys.executable, "-m", "signal_sync.cli.main", "emulator", "mautic", "--port", str(port)]
    cmd += ["--oauth-client-id", client.client_id, "--access-token-lifetime-s", "90", "--basic-auth-disabled"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(http, url, proc)
        data = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        status, body, _ = await request(http, "POST", url + TOKEN, None, data=data)
        assert status == 200 and body["expires_in"] == 90
        status, _, _ = await request(http, "POST", url + NEW, bearer(body["access_token"]), json=JANE)
        assert status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert client.client_secret.encode() not in err


def test_cli_wants_the_client_id_and_secret_together():
    env = os.environ | {"MAUTIC_PASSWORD": "pw"}
    env.pop("MAUTIC_CLIENT_SECRET", None)
    cmd = [sys.executable, "-m", "signal_sync.cli.main", "emulator", "mautic", "--port", "0"]
    done = subprocess.run([*cmd, "--oauth-client-id", "1_abc"], env=env, capture_output=True, timeout=30)
    assert done.returncode == 2 and b"--oauth-client-secret" in done.stderr
    done = subprocess.run(
        [*cmd, "--oauth-client-id", "nope", "--oauth-client-secret", "s"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2 and b"client_id" in done.stderr
