"""``signal-sync test-connection`` against the sandbox emulators on loopback.

One read-only authenticated call per integration; OK, or the destination's hint for
401/403/404 (Mailgun's 401 also names both region hosts), or the connection error; exit 1
if any failed. A Mautic authentication refusal names the method that failed and the hint its
error type calls for (Basic auth disabled, wrong credentials, a wrong OAuth2 client, a Bearer
header stripped on the way, the API disabled).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.destinations.mailgun import HINTS as MAILGUN_HINTS
from signal_sync.destinations.mautic import HINTS as MAUTIC_HINTS
from signal_sync.destinations.mautic_auth import (
    HINT_API_DISABLED,
    HINT_BASIC_DISABLED,
    HINT_BASIC_INVALID,
    HINT_BEARER_NOT_RECEIVED,
    HINT_CLIENT_CREDENTIALS,
    HINT_INVALID_CLIENT,
    HINT_UNAUTHORIZED_CLIENT,
)
from signal_sync.sandbox import mailgun, mautic, start_in_thread
from signal_sync.sandbox.mautic_oauth import OAuthClient
from signal_sync.sandbox.server import RunningServer

PASSWORD = "sandbox-password"
KEY = "key-sandbox"
LIST = "newsletter@mg.example.com"
REGIONS = "US https://api.mailgun.net vs EU https://api.eu.mailgun.net"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def servers() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        start_in_thread(mautic.create_app(username="signal", password=PASSWORD)) as crm,
        start_in_thread(mailgun.create_app(api_key=KEY, lists=(LIST,))) as mg,
    ):
        yield crm, mg


def write_config(tmp_path: Path, mautic_url: str, mailgun_url: str, **changes: Any) -> Path:
    integrations = [
        {
            "id": "mautic-main",
            "type": "mautic",
            "base_url": mautic_url,
            "api_user": "signal",
            "api_password": PASSWORD,
        },
        {
            "id": "mailgun-news",
            "type": "mailgun",
            "base_url": mailgun_url,
            "api_key": KEY,
            "list_address": LIST,
        },
    ]
    for integration in integrations:
        integration.update(changes.get(integration["id"], {}))
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"integrations": integrations, "delivery": {"timeout_s": 5}}), encoding="utf-8"
    )
    return path


def run(config: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["test-connection", "-c", str(config), *args])
    return result.exit_code, result.output.splitlines()


def sandbox(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=5) as reply:  # loopback emulator
        return json.loads(reply.read())


def test_ok_for_each_integration_with_read_only_calls(tmp_path: Path, servers) -> None:
    crm, mg = servers
    code, lines = run(write_config(tmp_path, crm.url, mg.url))
    assert (code, lines) == (0, ["OK mautic-main", "OK mailgun-news"])

    mautic_calls = [
        (r["method"], r["path"], r["query"]) for r in sandbox(crm.url, "/_sandbox/requests")["requests"]
    ]
    mailgun_calls = [(r["method"], r["path"]) for r in sandbox(mg.url, "/_sandbox/requests")["requests"]]
    assert mautic_calls == [("GET", "/api/contacts", "limit=1")]
    assert mailgun_calls == [("GET", f"/v3/lists/{LIST}")]
    assert sandbox(crm.url, "/_sandbox/contacts")["contacts"] == []


def test_401_prints_the_hints_and_mailgun_names_both_regions(tmp_path: Path, servers) -> None:
    crm, mg = servers
    for server in servers:
        sandbox(server.url, "/_sandbox/faults", {"force_status": 401})
    code, lines = run(write_config(tmp_path, crm.url, mg.url))

    assert code == 1
    assert lines[0] == f"FAIL mautic-main: basic auth: HTTP 401: {HINT_BASIC_INVALID}"
    assert lines[1].startswith(f"FAIL mailgun-news: HTTP 401: {MAILGUN_HINTS[401]}")
    assert REGIONS in lines[1] and mg.url in lines[1]


def test_wrong_credentials_and_unknown_list_are_found_without_fault_injection(
    tmp_path: Path, servers
) -> None:
    crm, mg = servers
    config = write_config(
        tmp_path,
        crm.url,
        mg.url,
        **{"mautic-main": {"api_password": "wrong"}, "mailgun-news": {"list_address": "nope@mg.example.com"}},
    )
    code, lines = run(config)
    assert code == 1
    assert lines == [
        f"FAIL mautic-main: basic auth: HTTP 401: {HINT_BASIC_INVALID}",
        f"FAIL mailgun-news: HTTP 404: {MAILGUN_HINTS[404]}",
    ]


def test_403_when_the_mautic_api_is_disabled(tmp_path: Path) -> None:
    with start_in_thread(mautic.create_app(username="signal", password=PASSWORD, api_enabled=False)) as crm:
        code, lines = run(
            write_config(tmp_path, crm.url, "http://127.0.0.1:9"), "--integration", "mautic-main"
        )
    assert (code, lines) == (1, [f"FAIL mautic-main: basic auth: HTTP 403: {HINT_API_DISABLED}"])


def test_server_errors_show_the_reply_and_say_it_is_temporary(tmp_path: Path, servers) -> None:
    crm, mg = servers
    sandbox(mg.url, "/_sandbox/faults", {"force_status": 503})
    code, lines = run(write_config(tmp_path, crm.url, mg.url), "-i", "mailgun-news")
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("FAIL mailgun-news: HTTP 503: ") and lines[0].endswith(
        "(temporary: try again later)"
    )


def test_connection_errors_name_the_base_url(tmp_path: Path, servers) -> None:
    _crm, mg = servers
    closed = f"http://127.0.0.1:{free_port()}"
    code, lines = run(write_config(tmp_path, closed, mg.url))
    assert code == 1
    assert lines[0].startswith("FAIL mautic-main: connection error: ") and closed in lines[0]
    assert lines[1] == "OK mailgun-news"


def test_only_the_chosen_integration_and_unknown_ids_are_named(tmp_path: Path, servers) -> None:
    crm, mg = servers
    config = write_config(tmp_path, crm.url, mg.url)
    assert run(config, "--integration", "mailgun-news") == (0, ["OK mailgun-news"])
    assert sandbox(crm.url, "/_sandbox/requests")["requests"] == []

    code, lines = run(config, "--integration", "mautic-typo")
    assert code == 2
    assert "no integration 'mautic-typo'" in lines[0] and "mailgun-news, mautic-main" in lines[0]


def test_a_403_without_an_auth_type_keeps_the_permission_hint(tmp_path: Path, servers) -> None:
    crm, mg = servers
    sandbox(crm.url, "/_sandbox/faults", {"force_status": 403})
    code, lines = run(write_config(tmp_path, crm.url, mg.url), "-i", "mautic-main")
    assert (code, lines) == (1, [f"FAIL mautic-main: HTTP 403: {MAUTIC_HINTS[403]}"])


# --- auth methods -----------------------------------------------------------------------------

CLIENT = OAuthClient("7_2y0c1kw4kss8cgoo04gwg0wcc8owgs8gw0k80os4o0wg4kgc4", "1hx3wz5h4zms4o4kgsk0c4k408gcsw0")
ADMINLESS = OAuthClient(
    "8_5mbb0mc5vqkgsw0o8cow8ok0wck4gwc8c4ws0s4gkkwg0wg0s", "3kd4zdsnx9uoksc0kww04cgw0ok4c", False
)


def oauth2(client: OAuthClient, secret: str | None = None) -> dict[str, Any]:
    """The changes that make the Mautic integration authenticate with ``client``."""
    auth = {"type": "oauth2", "client_id": client.client_id, "client_secret": secret or client.client_secret}
    return {"mautic-main": {"api_user": None, "api_password": None, "auth": auth}}


def write_oauth2_config(tmp_path: Path, url: str, client: OAuthClient, secret: str | None = None) -> Path:
    path = write_config(tmp_path, url, "http://127.0.0.1:9", **oauth2(client, secret))
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["integrations"][0] = {k: v for k, v in raw["integrations"][0].items() if v is not None}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def oauth_mautic() -> Iterator[RunningServer]:
    """A Mautic with HTTP Basic auth disabled and two OAuth2 credentials: one an administrator
    made (client credentials allowed), one not."""
    app = mautic.create_app(
        username="signal", password=PASSWORD, basic_auth_enabled=False, oauth_clients=[CLIENT, ADMINLESS]
    )
    with start_in_thread(app) as crm:
        yield crm


def test_basic_auth_disabled_in_mautic_names_the_switch_and_oauth2(tmp_path: Path, oauth_mautic) -> None:
    config = write_config(tmp_path, oauth_mautic.url, "http://127.0.0.1:9")
    code, lines = run(config, "-i", "mautic-main")
    assert (code, lines) == (1, [f"FAIL mautic-main: basic auth: HTTP 403: {HINT_BASIC_DISABLED}"])
    assert "Enable HTTP basic auth" in HINT_BASIC_DISABLED and "oauth2" in HINT_BASIC_DISABLED


def test_oauth2_gets_a_token_in_the_form_body_and_calls_with_the_bearer(tmp_path: Path, oauth_mautic) -> None:
    code, lines = run(write_oauth2_config(tmp_path, oauth_mautic.url, CLIENT), "-i", "mautic-main")
    assert (code, lines) == (0, ["OK mautic-main"])

    calls = sandbox(oauth_mautic.url, "/_sandbox/requests")["requests"]
    assert [(c["method"], c["path"], c["authorization"], c["status"]) for c in calls] == [
        ("POST", "/oauth/v2/token", None, 200),
        ("GET", "/api/contacts", "Bearer <redacted>", 200),
    ]
    assert calls[0]["body"] == {
        "grant_type": "client_credentials",
        "client_id": CLIENT.client_id,
        "client_secret": "<redacted>",
    }
    assert calls[0]["content_type"] == "application/x-www-form-urlencoded"
    assert sandbox(oauth_mautic.url, "/_sandbox/oauth")["issued"] == 1


def test_a_wrong_client_secret_is_a_wrong_client(tmp_path: Path, oauth_mautic) -> None:
    config = write_oauth2_config(tmp_path, oauth_mautic.url, CLIENT, secret="not-the-secret")
    code, lines = run(config, "-i", "mautic-main")
    assert (code, lines) == (1, [f"FAIL mautic-main: oauth2 token request: HTTP 400: {HINT_INVALID_CLIENT}"])
    assert "not-the-secret" not in lines[0]


def test_a_client_without_the_grant_must_be_made_by_an_administrator(tmp_path: Path, oauth_mautic) -> None:
    code, lines = run(write_oauth2_config(tmp_path, oauth_mautic.url, ADMINLESS), "-i", "mautic-main")
    assert (code, lines) == (
        1,
        [f"FAIL mautic-main: oauth2 token request: HTTP 400: {HINT_UNAUTHORIZED_CLIENT}"],
    )
    assert (
        HINT_CLIENT_CREDENTIALS in HINT_UNAUTHORIZED_CLIENT and HINT_CLIENT_CREDENTIALS in HINT_INVALID_CLIENT
    )


def test_oauth2_with_the_api_disabled(tmp_path: Path) -> None:
    app = mautic.create_app(username="signal", password=PASSWORD, api_enabled=False, oauth_clients=[CLIENT])
    with start_in_thread(app) as crm:
        code, lines = run(write_oauth2_config(tmp_path, crm.url, CLIENT), "-i", "mautic-main")
    assert (code, lines) == (1, [f"FAIL mautic-main: oauth2 token request: HTTP 403: {HINT_API_DISABLED}"])


def stripping_proxy(upstream: str) -> web.Application:
    """A reverse proxy that drops the Authorization header of /api requests, as a misconfigured
    web server in front of Mautic does (PHP-CGI without CGIPassAuth)."""

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        if request.path.startswith("/api"):
            headers.pop("Authorization", None)
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method, upstream + request.path_qs, headers=headers, data=await request.read()
            ) as reply:
                body = await reply.read()
                return web.Response(body=body, status=reply.status, content_type=reply.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def test_a_bearer_header_stripped_on_the_way_is_not_a_token_problem(tmp_path: Path, oauth_mautic) -> None:
    with start_in_thread(stripping_proxy(oauth_mautic.url)) as proxy:
        code, lines = run(write_oauth2_config(tmp_path, proxy.url, CLIENT), "-i", "mautic-main")
    assert (code, lines) == (1, [f"FAIL mautic-main: oauth2: HTTP 401: {HINT_BEARER_NOT_RECEIVED}"])
    assert sandbox(oauth_mautic.url, "/_sandbox/oauth")["issued"] == 1, "a new token does not help"
