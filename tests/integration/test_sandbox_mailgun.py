"""The Mailgun emulator over real HTTP: every rule the worker relies on has a test here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from harness import free_port

from signal_sync.sandbox import RunningServer, mailgun
from tests.support.sandbox import get, read_body, wait_until_serving

KEY = "key-0123456789abcdef"
LIST = "newsletter@mg.example.com"
AUTH = {"Authorization": aiohttp.encode_basic_auth("api", KEY)}
MEMBERS = f"/v3/lists/{LIST}/members"

# The "Identified" example from the Mailgun integration spec, verbatim.
IDENTIFIED_VARS = {
    "first_name": "Jane",
    "last_name": "Doe",
    "plan": "pro",
    "company": "Acme Ltd",
    "anonymous_id": "a1b2c3",
}
IDENTIFIED = {
    "address": "jane@example.com",
    "name": "Jane Doe",
    "subscribed": "true",
    "upsert": "true",
    "vars": orjson.dumps(IDENTIFIED_VARS).decode(),
}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    """Start Mailgun emulators with given options; all are stopped after the test."""
    return lambda **options: serve(mailgun.create_app(**({"api_key": KEY} | options)))


async def post(
    http: aiohttp.ClientSession,
    server: RunningServer,
    form: dict[str, str] | aiohttp.FormData | None = None,
    *,
    path: str = MEMBERS,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """POST a form (urlencoded by default) with valid credentials unless ``headers`` differ."""
    async with http.post(
        server.url + path, data=form, headers=AUTH if headers is None else headers, **kwargs
    ) as resp:
        return resp.status, await read_body(resp)


async def members(http: aiohttp.ClientSession, server: RunningServer) -> list[dict[str, Any]]:
    _, state = await get(http, server.url + "/_sandbox/members")
    return state["members"][LIST]


# --- upsert ---------------------------------------------------------------------------------


async def test_seed_identified_example_creates_member_with_vars(http, server):
    status, body = await post(http, server, IDENTIFIED)
    assert status == 200
    assert body == {
        "member": {
            "address": "jane@example.com",
            "name": "Jane Doe",
            "subscribed": True,
            "vars": IDENTIFIED_VARS,
        },
        "message": "Mailing list member has been created",
    }
    status, body = await get(http, server.url + f"{MEMBERS}/jane@example.com", headers=AUTH)
    assert status == 200 and body["member"]["vars"] == IDENTIFIED_VARS


async def test_second_upsert_replaces_vars_instead_of_merging(http, server):
    await post(http, server, IDENTIFIED)
    status, body = await post(http, server, IDENTIFIED | {"vars": '{"signup_method": "email"}'})
    assert status == 200
    assert body["message"] == "Mailing list member has been updated"
    assert body["member"]["vars"] == {"signup_method": "email"}
    assert [m["vars"] for m in await members(http, server)] == [{"signup_method": "email"}]


async def test_fields_not_sent_are_left_as_they_are(http, server):
    await post(http, server, IDENTIFIED | {"subscribed": "false"})
    status, body = await post(http, server, {"address": "jane@example.com", "upsert": "yes"})
    assert status == 200
    assert body["member"] == {
        "address": "jane@example.com",
        "name": "Jane Doe",
        "subscribed": False,
        "vars": IDENTIFIED_VARS,
    }
    _, body = await post(http, server, {"address": "jane@example.com", "upsert": "yes", "name": "J. Doe"})
    assert body["member"]["name"] == "J. Doe"


async def test_subscribed_defaults_to_true_and_is_updated_when_sent(http, server):
    _, body = await post(http, server, {"address": "s@example.com"})
    assert body["member"]["subscribed"] is True and body["member"]["vars"] == {}
    _, body = await post(http, server, {"address": "s@example.com", "upsert": "True", "subscribed": "NO"})
    assert body["member"]["subscribed"] is False


async def test_addresses_match_case_insensitively(http, server):
    await post(http, server, IDENTIFIED)
    status, body = await post(http, server, IDENTIFIED | {"address": "JANE@Example.com", "name": "Upper"})
    assert status == 200 and body["message"].endswith("updated")
    assert [m["name"] for m in await members(http, server)] == ["Upper"]


async def test_existing_member_without_upsert_is_400(http, server):
    await post(http, server, IDENTIFIED)
    for upsert in (None, "false", "no"):
        form = {k: v for k, v in IDENTIFIED.items() if k != "upsert"}
        if upsert is not None:
            form["upsert"] = upsert
        status, body = await post(http, server, form | {"name": "Changed"})
        assert status == 400
        assert body == {"message": "Address already exists 'jane@example.com'"}
    assert [m["name"] for m in await members(http, server)] == ["Jane Doe"]


async def test_multipart_form_is_accepted(http, server):
    form = aiohttp.FormData(IDENTIFIED, default_to_multipart=True)
    status, body = await post(http, server, form)
    assert status == 200 and body["member"]["vars"] == IDENTIFIED_VARS
    _, requests = await get(http, server.url + "/_sandbox/requests")
    assert requests["requests"][0]["content_type"].startswith("multipart/form-data")


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "No Address"}, "'address' parameter is missing"),
        ({"address": ""}, "'address' parameter is missing"),
        ({"address": "not-an-email"}, None),
        ({"address": " jane@example.com"}, None),
        ({"address": "jane@example.com", "subscribed": "maybe"}, None),
        ({"address": "jane@example.com", "upsert": "1"}, None),
        ({"address": "jane@example.com", "vars": "{not json"}, None),
        ({"address": "jane@example.com", "vars": '["a", "b"]'}, None),
        ({"address": "jane@example.com", "vars": ""}, None),
    ],
)
async def test_invalid_form_is_400(http, server, form, message):
    status, body = await post(http, server, form)
    assert status == 400
    assert set(body) == {"message"}
    if message is not None:
        assert body["message"] == message
    assert await members(http, server) == []


async def test_json_body_has_no_address(http, server):
    payload = {k: v for k, v in IDENTIFIED.items()}
    async with http.post(server.url + MEMBERS, json=payload, headers=AUTH) as resp:
        assert resp.status == 400
        assert await resp.json() == {"message": "'address' parameter is missing"}


# --- access and paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth("api", "key-wrong")},
        {"Authorization": aiohttp.encode_basic_auth("API", KEY)},
        {"Authorization": aiohttp.encode_basic_auth("user", KEY)},
        {"Authorization": f"Bearer {KEY}"},
    ],
)
async def test_bad_credentials_are_plain_text_forbidden(http, server, headers):
    async with http.post(server.url + MEMBERS, data=IDENTIFIED, headers=headers) as resp:
        assert resp.status == 401
        assert resp.content_type == "text/plain"
        assert await resp.text() == "Forbidden"
    status, _ = await get(http, server.url + f"/v3/lists/{LIST}", headers=headers)
    assert status == 401
    assert await members(http, server) == []


async def test_unknown_list_is_404(http, server):
    status, body = await post(http, server, IDENTIFIED, path="/v3/lists/other@mg.example.com/members")
    assert status == 404
    assert body == {"message": "Mailing list other@mg.example.com not found"}
    status, _ = await get(http, server.url + "/v3/lists/other@mg.example.com", headers=AUTH)
    assert status == 404


async def test_only_configured_lists_exist(http, start):
    server = start(lists=("a@mg.example.com", "B@mg.example.com"))
    assert (await post(http, server, IDENTIFIED, path="/v3/lists/b@mg.example.com/members"))[0] == 200
    assert (await post(http, server, IDENTIFIED))[0] == 404


@pytest.mark.parametrize("path", [f"/mailgun/v3/lists/{LIST}/members", f"//v3/lists/{LIST}/members", "/v2/x"])
async def test_wrong_base_url_path_is_404(http, server, path):
    status, _ = await post(http, server, IDENTIFIED, path=path)
    assert status == 404


async def test_list_info_and_member_lookup(http, server):
    await post(http, server, IDENTIFIED)
    status, body = await get(http, server.url + f"/v3/lists/{LIST}", headers=AUTH)
    assert status == 200
    assert body["list"]["address"] == LIST and body["list"]["members_count"] == 1
    status, body = await get(http, server.url + f"{MEMBERS}/JANE@example.com", headers=AUTH)
    assert status == 200 and body["member"]["name"] == "Jane Doe"
    status, _ = await get(http, server.url + f"{MEMBERS}/nobody@example.com", headers=AUTH)
    assert status == 404


# --- journal and control --------------------------------------------------------------------


async def test_journal_redacts_key_and_decodes_form(http, server):
    await post(http, server, IDENTIFIED)
    async with http.get(server.url + "/_sandbox/requests?limit=1") as resp:
        raw = await resp.text()
        (entry,) = (await resp.json())["requests"]
    assert KEY not in raw and AUTH["Authorization"].split()[1] not in raw
    assert entry["authorization"] == "Basic <redacted>"
    assert entry["body"] == IDENTIFIED and entry["status"] == 200


async def test_applied_log_keeps_per_member_order(http, server):
    for plan in ("free", "pro", "team"):
        await post(http, server, IDENTIFIED | {"vars": orjson.dumps({"plan": plan}).decode()})
    await post(http, server, IDENTIFIED | {"vars": "[]"})  # rejected: not applied
    _, log = await get(http, server.url + "/_sandbox/log/Jane@Example.com")
    applied = log["applied"]
    assert [e["changes"]["vars"]["plan"] for e in applied] == ["free", "pro", "team"]
    assert [e["action"] for e in applied] == ["created", "updated", "updated"]
    assert applied[0]["details"]["list"] == LIST
    assert applied[-1]["state"]["vars"] == {"plan": "team"}


async def test_reset_clears_members(http, server):
    await post(http, server, IDENTIFIED)
    async with http.post(server.url + "/_sandbox/reset") as resp:
        assert resp.status == 200
    assert await members(http, server) == []
    assert (await post(http, server, IDENTIFIED))[1]["message"].endswith("created")


# --- CLI ------------------------------------------------------------------------------------


async def test_cli_serves_lists_with_env_key_and_stops_on_sigint(http):
    port = free_port()
    env = os.environ | {"MAILGUN_API_KEY": "env-key"}
    cmd = [sys.executable, "-m", "signal_sync.cli.main", "emulator", "mailgun", "--port", str(port)]
    cmd += ["--list", "a@mg.example.com", "--list", "b@mg.example.com"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(http, url, proc)
        headers = {"Authorization": aiohttp.encode_basic_auth("api", "env-key")}
        for list_address in ("a@mg.example.com", "b@mg.example.com"):
            status, _ = await get(http, f"{url}/v3/lists/{list_address}", headers=headers)
            assert status == 200
        status, _ = await get(http, f"{url}/v3/lists/{LIST}", headers=headers)
        assert status == 404
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
