"""The Mautic emulator over real HTTP: every rule the worker relies on has a test here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from harness import free_port

from signal_sync.sandbox import RunningServer, mautic, start_in_thread
from tests.support.sandbox import get, read_body, wait_until_serving

USER = "signal"
PASSWORD = "s3cret-pw"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
NEW = "/api/contacts/new"

# The "Signed Up" example from the Mautic integration spec, verbatim.
SIGNED_UP = {
    "email": "jane.doe@example.com",
    "firstname": "Jane",
    "lastname": "Doe",
    "ipAddress": "203.0.113.50",
    "lastActive": "2026-06-06 14:32:10",
    "utm_source": "newsletter",
    "utm_medium": "email",
    "signal_signup_method": "email",
    "tags": ["signal-marketing-consent"],
}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    """Start Mautic emulators with given options; all are stopped after the test."""
    return lambda **options: serve(mautic.create_app(**({"username": USER, "password": PASSWORD} | options)))


async def post(
    http: aiohttp.ClientSession,
    server: RunningServer,
    body: Any,
    *,
    path: str = NEW,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST JSON with valid credentials unless ``headers`` says otherwise."""
    async with http.post(server.url + path, json=body, headers=AUTH if headers is None else headers) as resp:
        return resp.status, await read_body(resp)


def error_message(body: Any) -> str:
    """The message of Mautic's errors JSON (``returnError``, or the auth checks' without ``details``),
    asserting the shape on the way."""
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    (error,) = body["errors"]
    assert set(error) in ({"code", "message", "details", "type"}, {"code", "message", "type"})
    return error["message"]


# --- upsert ---------------------------------------------------------------------------------


async def test_seed_signed_up_payload_creates_then_updates(http, server):
    status, body = await post(http, server, SIGNED_UP)
    assert status == 201
    contact = body["contact"]
    assert isinstance(contact["id"], int)
    fields = contact["fields"]["all"]
    assert fields["email"] == "jane.doe@example.com"
    assert fields["firstname"] == "Jane" and fields["lastname"] == "Doe"
    assert fields["signal_signup_method"] == "email"
    assert contact["tags"] == [{"id": 1, "tag": "signal-marketing-consent"}]
    assert contact["lastActive"] == "2026-06-06T14:32:10+00:00"
    assert "203.0.113.50" in contact["ipAddresses"]
    assert contact["utmtags"][0]["utmSource"] == "newsletter"
    assert {"dateAdded", "dateModified"} <= set(contact)

    status, again = await post(http, server, SIGNED_UP)
    assert status == 200
    assert again["contact"]["id"] == contact["id"]
    _, state = await get(http, server.url + "/_sandbox/contacts")
    assert len(state["contacts"]) == 1


async def test_email_match_is_case_insensitive(http, server):
    _, first = await post(http, server, {"email": "Jane.Doe@Example.com"})
    status, second = await post(http, server, {"email": "jane.doe@example.COM", "city": "London"})
    assert status == 200
    assert second["contact"]["id"] == first["contact"]["id"]
    assert second["contact"]["fields"]["all"]["city"] == "London"


async def test_blank_values_never_wipe_stored_values(http, server):
    await post(http, server, {"email": "a@example.com", "firstname": "Ann", "phone": "+44 1"})
    status, body = await post(http, server, {"email": "a@example.com", "firstname": "", "phone": None})
    assert status == 200
    fields = body["contact"]["fields"]["all"]
    assert fields["firstname"] == "Ann" and fields["phone"] == "+44 1"


async def test_tags_add_remove_and_persist_across_updates(http, server):
    await post(http, server, {"email": "t@example.com", "tags": ["signal-marketing-consent", "vip"]})
    _, body = await post(http, server, {"email": "t@example.com", "firstname": "T"})
    assert [t["tag"] for t in body["contact"]["tags"]] == ["signal-marketing-consent", "vip"]
    _, body = await post(http, server, {"email": "t@example.com", "tags": ["-signal-marketing-consent"]})
    assert [t["tag"] for t in body["contact"]["tags"]] == ["vip"]
    _, body = await post(http, server, {"email": "t@example.com", "tags": "alpha, -vip,beta"})
    assert [t["tag"] for t in body["contact"]["tags"]] == ["alpha", "beta"]


async def test_unknown_aliases_and_uncreated_custom_fields_are_ignored(http, start):
    server = start(custom_fields=())
    status, body = await post(http, server, SIGNED_UP | {"favourite_colour": "teal"})
    assert status == 201
    fields = body["contact"]["fields"]["all"]
    assert "signal_signup_method" not in fields and "favourite_colour" not in fields
    _, log = await get(http, server.url + "/_sandbox/log/jane.doe@example.com")
    assert log["applied"][0]["details"]["ignored"] == ["favourite_colour", "signal_signup_method"]


async def test_custom_field_is_stored_when_it_exists(http, start):
    server = start(custom_fields=("signal_lead_source",))
    _, body = await post(http, server, {"email": "l@example.com", "signal_lead_source": "webinar"})
    assert body["contact"]["fields"]["all"]["signal_lead_source"] == "webinar"


async def test_ip_address_and_forwarded_for_are_recorded(http, server):
    headers = AUTH | {"X-Forwarded-For": "198.51.100.7, 10.0.0.1"}
    _, body = await post(
        http, server, {"email": "ip@example.com", "ipAddress": "203.0.113.50"}, headers=headers
    )
    assert list(body["contact"]["ipAddresses"]) == ["203.0.113.50", "198.51.100.7"]
    _, body = await post(http, server, {"email": "ip@example.com", "ipAddress": "192.0.2.1"})
    assert list(body["contact"]["ipAddresses"]) == ["203.0.113.50", "198.51.100.7", "192.0.2.1"]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"firstname": "No Email"}, "email"),
        ({"email": ""}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "x@example.com", "lastActive": "2026-06-06T14:32:10Z"}, "lastActive"),
        ({"email": "x@example.com", "lastActive": "2026-6-6 14:32:10"}, "lastActive"),
        ({"email": "x@example.com", "lastActive": "2026-13-06 14:32:10"}, "lastActive"),
        ({"email": "x@example.com", "firstname": {"nested": 1}}, "firstname"),
        (["email", "x@example.com"], "object"),
    ],
)
async def test_invalid_payload_is_400(http, server, body, needle):
    status, answer = await post(http, server, body)
    assert status == 400
    assert needle in error_message(answer)
    _, state = await get(http, server.url + "/_sandbox/contacts")
    assert state["contacts"] == []


async def test_body_must_be_json(http, server):
    form = {"email": "x@example.com"}
    async with http.post(server.url + NEW, data=form, headers=AUTH) as resp:
        assert resp.status == 400
        assert "application/json" in error_message(await resp.json())
    headers = AUTH | {"Content-Type": "application/json"}
    async with http.post(server.url + NEW, data=b"{not json", headers=headers) as resp:
        assert resp.status == 400
        assert "not valid JSON" in error_message(await resp.json())


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, mautic.MSG_AUTH_DENIED),
        ({"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}, mautic.MSG_BASIC_INVALID),
        ({"Authorization": aiohttp.encode_basic_auth("someone", PASSWORD)}, mautic.MSG_BASIC_INVALID),
        ({"Authorization": "Bearer abc"}, "The access token provided is invalid."),
        ({"Authorization": "Basic !!!notbase64"}, mautic.MSG_BASIC_INVALID),
    ],
)
async def test_bad_or_missing_credentials_are_401(http, server, headers, message):
    status, body = await post(http, server, SIGNED_UP, headers=headers)
    assert status == 401
    assert error_message(body) == message
    status, _ = await get(http, server.url + "/api/contacts", headers=headers)
    assert status == 401


@pytest.mark.parametrize(
    ("options", "status", "needle"),
    [
        ({"api_enabled": False}, 403, "API disabled. You need to enable the API"),
        ({"basic_auth_enabled": False}, 403, "basic auth"),
        ({"can_edit_contacts": False}, 403, "You do not have access to the requested area/action."),
    ],
)
async def test_instance_configuration_refusals(http, start, options, status, needle):
    server = start(**options)
    got, body = await post(http, server, SIGNED_UP)
    assert got == status
    assert needle in error_message(body)
    _, state = await get(http, server.url + "/_sandbox/contacts")
    assert state["contacts"] == []


async def test_user_without_edit_permission_can_still_list(http, start):
    server = start(can_edit_contacts=False)
    status, body = await get(http, server.url + "/api/contacts?limit=1", headers=AUTH)
    assert status == 200 and body == {"total": 0, "contacts": {}}


# --- paths ----------------------------------------------------------------------------------


async def test_unknown_api_path_is_mautic_404(http, server):
    status, body = await post(http, server, SIGNED_UP, path="/api/contacts/neww")
    assert status == 404
    assert error_message(body) == "Requested URL not found: /api/contacts/neww"


@pytest.mark.parametrize("path", ["//api/contacts/new", "/mautic/api/contacts/new", "/api/contacts/new/"])
async def test_base_url_with_a_path_is_404(http, server, path):
    status, _ = await post(http, server, SIGNED_UP, path=path)
    assert status == 404
    _, state = await get(http, server.url + "/_sandbox/contacts")
    assert state["contacts"] == []


async def test_list_contacts_honours_limit(http, server):
    for i in range(3):
        await post(http, server, {"email": f"u{i}@example.com"})
    status, body = await get(http, server.url + "/api/contacts?limit=2", headers=AUTH)
    assert status == 200
    assert body["total"] == 3 and len(body["contacts"]) == 2
    status, body = await get(http, server.url + "/api/contacts?limit=abc", headers=AUTH)
    assert status == 400


# --- journal and control --------------------------------------------------------------------


async def test_journal_redacts_credentials_and_keeps_decoded_body(http, server):
    await post(http, server, SIGNED_UP, headers=AUTH | {"X-Forwarded-For": "203.0.113.50"})
    async with http.get(server.url + "/_sandbox/requests?limit=5") as resp:
        raw = await resp.text()
        (entry,) = (await resp.json())["requests"]
    assert PASSWORD not in raw and AUTH["Authorization"].split()[1] not in raw
    assert entry["authorization"] == "Basic <redacted>"
    assert entry["x_forwarded_for"] == "203.0.113.50"
    assert entry["method"] == "POST" and entry["path"] == NEW and entry["status"] == 201
    assert entry["body"] == SIGNED_UP and entry["fault"] is None


async def test_applied_log_keeps_per_contact_order(http, server):
    for name in ("One", "Two", "Three"):
        await post(http, server, {"email": "Order@Example.com", "firstname": name})
    await post(http, server, {"email": "bad"})  # rejected: not applied, not logged
    _, log = await get(http, server.url + "/_sandbox/log/order@example.com")
    applied = log["applied"]
    assert [e["action"] for e in applied] == ["created", "updated", "updated"]
    assert [e["changes"]["firstname"] for e in applied] == ["One", "Two", "Three"]
    assert [e["status"] for e in applied] == [201, 200, 200]
    assert applied[-1]["state"]["fields"]["all"]["firstname"] == "Three"
    assert [e["seq"] for e in applied] == sorted(e["seq"] for e in applied)


async def test_reset_clears_state_and_journal(http, server):
    await post(http, server, SIGNED_UP)
    async with http.post(server.url + "/_sandbox/reset") as resp:
        assert resp.status == 200
    _, state = await get(http, server.url + "/_sandbox/contacts")
    _, requests = await get(http, server.url + "/_sandbox/requests")
    assert state["contacts"] == [] and requests["requests"] == []
    status, body = await post(http, server, SIGNED_UP)
    assert status == 201 and body["contact"]["id"] == 1


async def test_control_endpoints_need_no_auth_and_are_not_journaled(http, server):
    status, body = await get(http, server.url + "/_sandbox/health")
    assert status == 200 and body == {"status": "ok", "kind": "mautic"}
    _, requests = await get(http, server.url + "/_sandbox/requests")
    assert requests["requests"] == []


# --- CLI ------------------------------------------------------------------------------------


async def test_cli_serves_with_env_password_and_stops_on_sigterm(http):
    port = free_port()
    env = os.environ | {"MAUTIC_PASSWORD": "from-env"}
    cmd = [
        sys.executable,
        "-m",
        "signal_sync.cli.main",
        "emulator",
        "mautic",
        "--port",
        str(port),
        "--user",
        "u",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(http, url, proc)
        headers = {"Authorization": aiohttp.encode_basic_auth("u", "from-env")}
        async with http.post(url + NEW, json={"email": "cli@example.com"}, headers=headers) as resp:
            assert resp.status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in out.decode()


async def test_all_logs_are_listed_by_contact(http, server):
    await post(http, server, {"email": "b@example.com"})
    await post(http, server, {"email": "A@example.com"})
    _, logs = await get(http, server.url + "/_sandbox/log")
    assert list(logs["contacts"]) == ["b@example.com", "a@example.com"]


def test_start_in_thread_reports_a_busy_port(server):
    with pytest.raises(OSError):
        start_in_thread(mautic.create_app(username=USER, password=PASSWORD), port=server.port)
