"""``signal-sync test-connection`` against the sandbox emulators on loopback.

One read-only authenticated call per integration; OK, or the destination's hint for
401/403/404 (Mailgun's 401 also names both region hosts), or the connection error; exit 1
if any failed.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.destinations.mailgun import HINTS as MAILGUN_HINTS
from signal_sync.destinations.mautic import HINTS as MAUTIC_HINTS
from signal_sync.sandbox import mailgun, mautic, start_in_thread
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
    assert lines[0] == f"FAIL mautic-main: HTTP 401: {MAUTIC_HINTS[401]}"
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
        f"FAIL mautic-main: HTTP 401: {MAUTIC_HINTS[401]}",
        f"FAIL mailgun-news: HTTP 404: {MAILGUN_HINTS[404]}",
    ]


def test_403_when_the_mautic_api_is_disabled(tmp_path: Path) -> None:
    with start_in_thread(mautic.create_app(username="signal", password=PASSWORD, api_enabled=False)) as crm:
        code, lines = run(
            write_config(tmp_path, crm.url, "http://127.0.0.1:9"), "--integration", "mautic-main"
        )
    assert (code, lines) == (1, [f"FAIL mautic-main: HTTP 403: {MAUTIC_HINTS[403]}"])


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
