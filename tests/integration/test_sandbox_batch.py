"""The emulators' batch endpoints over real HTTP: limits, response shapes, per-item errors, auth.

Mautic ``POST /api/contacts/batch/new`` and Mailgun ``POST /v3/lists/{list}/members.json``
are what a batching worker relies on, so their rules are pinned here: Mautic answers 201
for the whole call and reports each item in ``statusCodes``/``errors`` keyed by index
(a list or an index-keyed object, as PHP encodes it), refuses more than
``api_batch_max_limit`` items with a 500; Mailgun applies up to 100 entries synchronously
and all-or-nothing, and more in the background with no per-member result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from signal_sync.sandbox import RunningServer, mailgun, mautic
from tests.support.sandbox import read_body

pytestmark = pytest.mark.integration

USER, PASSWORD = "signal", "s3cret-pw"
KEY = "key-0123456789abcdef"
LIST = "newsletter@mg.example.com"
MAUTIC_AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
MAILGUN_AUTH = {"Authorization": aiohttp.encode_basic_auth("api", KEY)}
BATCH = "/api/contacts/batch/new"
BULK = f"/v3/lists/{LIST}/members.json"


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    """Start emulators (``kind`` is ``mautic`` or ``mailgun``); all are stopped after the test."""

    def _start(kind: str, **options: Any) -> RunningServer:
        if kind == "mautic":
            return serve(mautic.create_app(**({"username": USER, "password": PASSWORD} | options)))
        return serve(mailgun.create_app(**({"api_key": KEY} | options)))

    return _start


@pytest.fixture
def crm(start: Callable[..., RunningServer]) -> RunningServer:
    return start("mautic")


@pytest.fixture
def mg(start: Callable[..., RunningServer]) -> RunningServer:
    return start("mailgun")


@pytest.fixture
def http_timeout_s() -> float:
    return 10.0


async def batch(
    http: aiohttp.ClientSession, server: RunningServer, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(
        server.url + BATCH, json=body, headers=MAUTIC_AUTH if headers is None else headers
    ) as resp:
        return resp.status, await read_body(resp)


async def bulk(
    http: aiohttp.ClientSession,
    server: RunningServer,
    members: Any,
    upsert: str | None = "true",
    headers: dict[str, str] | None = None,
    path: str = BULK,
) -> tuple[int, Any]:
    form: dict[str, str] = {
        "members": members if isinstance(members, str) else orjson.dumps(members).decode()
    }
    if upsert is not None:
        form["upsert"] = upsert
    async with http.post(
        server.url + path, data=form, headers=MAILGUN_AUTH if headers is None else headers
    ) as r:
        return r.status, await read_body(r)


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


def contacts_by_email(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["fields"]["all"]["email"].lower(): c for c in state["contacts"]}


def members_of(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["address"].lower(): m for m in state["members"][LIST]}


# --- Mautic ---------------------------------------------------------------------------------------


async def test_mautic_batch_creates_and_updates_with_per_item_status_codes(http, crm):
    await batch(http, crm, [{"email": "old@example.com", "firstname": "Old"}])
    status, body = await batch(
        http,
        crm,
        [
            {"email": "new@example.com", "firstname": "Ann", "tags": ["signal-marketing-consent"]},
            {"email": "OLD@example.com", "city": "Leeds"},
        ],
    )
    assert status == 201
    assert set(body) == {"contacts", "statusCodes"}  # no "errors" key when nothing failed
    assert body["statusCodes"] == [201, 200]
    assert isinstance(body["contacts"], list) and len(body["contacts"]) == 2
    assert body["contacts"][0]["fields"]["all"]["firstname"] == "Ann"
    assert body["contacts"][0]["tags"] == [{"id": 1, "tag": "signal-marketing-consent"}]
    assert body["contacts"][1]["fields"]["all"] == body["contacts"][1]["fields"]["all"] | {
        "firstname": "Old",
        "city": "Leeds",
    }
    state = contacts_by_email(await get_json(http, crm.url + "/_sandbox/contacts"))
    assert set(state) == {"old@example.com", "new@example.com"}


async def test_mautic_batch_items_are_applied_in_order(http, crm):
    status, body = await batch(
        http,
        crm,
        [
            {"email": "jane@example.com", "firstname": "Jane", "tags": ["a"]},
            {"email": "jane@example.com", "lastname": "Doe", "tags": ["-a", "b"]},
        ],
    )
    assert status == 201 and body["statusCodes"] == [201, 200]
    log = (await get_json(http, crm.url + "/_sandbox/log/jane@example.com"))["applied"]
    assert [entry["action"] for entry in log] == ["created", "updated"]
    assert [entry["details"]["batch_index"] for entry in log] == [0, 1]
    assert log[0]["request_seq"] == log[1]["request_seq"]  # one request
    final = log[-1]["state"]
    assert final["fields"]["all"]["firstname"] == "Jane" and final["fields"]["all"]["lastname"] == "Doe"
    assert [t["tag"] for t in final["tags"]] == ["b"]


async def test_mautic_batch_failed_items_do_not_fail_the_others(http, crm):
    status, body = await batch(
        http,
        crm,
        [
            {"email": "not-an-email"},
            {"email": "ok@example.com"},
            {"email": "x@example.com", "lastActive": "yesterday"},
            "not an object",
        ],
    )
    assert status == 201  # the whole call succeeds even though items failed
    assert body["statusCodes"] == [400, 201, 400, 400]
    # Index-keyed PHP arrays with gaps are JSON objects keyed by the index.
    assert set(body["contacts"]) == {"1"}
    assert body["contacts"]["1"]["fields"]["all"]["email"] == "ok@example.com"
    errors = body["errors"]
    assert isinstance(errors, dict) and set(errors) == {"0", "2", "3"}
    for error in errors.values():
        assert set(error) == {"code", "message", "details", "type"} and error["code"] == 400
    assert errors["0"]["details"] == {"email": ["A valid email is required."]}
    assert "lastActive" in errors["2"]["message"]
    state = contacts_by_email(await get_json(http, crm.url + "/_sandbox/contacts"))
    assert set(state) == {"ok@example.com"}


async def test_mautic_batch_errors_become_a_list_when_they_run_from_index_zero(http, crm):
    status, body = await batch(http, crm, [{"email": ""}, {"email": "ok@example.com"}])
    assert status == 201
    assert isinstance(body["errors"], list) and body["errors"][0]["code"] == 400
    assert body["contacts"] == {"1": body["contacts"]["1"]}
    assert body["statusCodes"] == [400, 201]


async def test_mautic_batch_limit_is_api_batch_max_limit(http, start):
    default = start("mautic")
    items = [{"email": f"c{i}@example.com"} for i in range(201)]
    status, body = await batch(http, default, items[:200])
    assert status == 201 and len(body["statusCodes"]) == 200
    status, body = await batch(http, default, items)
    assert status == 500
    (error,) = body["errors"]
    assert error["code"] == 500 and "200" in error["message"]
    assert len((await get_json(http, default.url + "/_sandbox/contacts"))["contacts"]) == 200

    small = start("mautic", api_batch_max_limit=3)
    status, _ = await batch(http, small, items[:3])
    assert status == 201
    status, body = await batch(http, small, items[:4])
    assert status == 500 and "3" in body["errors"][0]["message"]


async def test_mautic_batch_empty_array_and_bad_bodies(http, crm):
    assert await batch(http, crm, []) == (201, {"contacts": [], "statusCodes": []})
    status, body = await batch(http, crm, {"email": "jane@example.com"})
    assert status == 400 and "array" in body["errors"][0]["message"]
    async with http.post(
        crm.url + BATCH, data="[", headers=MAUTIC_AUTH | {"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400 and "not valid JSON" in (await r.json())["errors"][0]["message"]
    async with http.post(crm.url + BATCH, data={"email": "a@example.com"}, headers=MAUTIC_AUTH) as r:
        assert r.status == 400
    async with http.get(crm.url + BATCH, headers=MAUTIC_AUTH) as r:
        assert r.status == 405


async def test_mautic_batch_checks_access_like_the_single_call(http, start):
    server = start("mautic")
    wrong = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
    status, body = await batch(http, server, [{"email": "a@example.com"}], headers=wrong)
    assert status == 401 and body["errors"][0]["message"] == mautic.MSG_BASIC_INVALID
    status, _ = await batch(http, server, [{"email": "a@example.com"}], headers={})
    assert status == 401
    status, body = await batch(http, start("mautic", can_edit_contacts=False), [{"email": "a@example.com"}])
    assert status == 403 and body["errors"][0]["message"] == mautic.MSG_ACCESS_DENIED
    status, body = await batch(http, start("mautic", api_enabled=False), [{"email": "a@example.com"}])
    assert status == 403 and body["errors"][0]["message"] == mautic.MSG_API_DISABLED
    assert (await get_json(http, server.url + "/_sandbox/contacts"))["contacts"] == []


async def test_mautic_batch_is_faulted_and_journaled_as_one_request(http, start):
    server = start("mautic", faults={"force_status": 503})
    status, _ = await batch(http, server, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    assert status == 503
    (record,) = (await get_json(http, server.url + "/_sandbox/requests"))["requests"]
    assert record["path"] == BATCH and record["fault"] == "force_status"
    assert record["body"] == [{"email": "a@example.com"}, {"email": "b@example.com"}]
    assert (await get_json(http, server.url + "/_sandbox/contacts"))["contacts"] == []


# --- Mailgun --------------------------------------------------------------------------------------


async def test_mailgun_bulk_upserts_up_to_100_synchronously(http, mg):
    members = [
        {
            "address": f"m{i}@example.com",
            "name": f"Member {i}",
            "vars": {"plan": "pro", "i": i},
            "subscribed": i % 2 == 0,
        }
        for i in range(100)
    ]
    status, body = await bulk(http, mg, members)
    assert status == 200
    assert body["message"] == mailgun.MSG_LIST_UPDATED
    assert body["list"]["address"] == LIST and body["list"]["members_count"] == 100
    state = members_of(await get_json(http, mg.url + "/_sandbox/members"))  # applied before the answer
    assert state["m7@example.com"] == {
        "address": "m7@example.com",
        "name": "Member 7",
        "subscribed": False,
        "vars": {"plan": "pro", "i": 7},
    }
    assert state["m8@example.com"]["subscribed"] is True


async def test_mailgun_bulk_accepts_address_strings_and_string_forms(http, mg):
    status, _ = await bulk(
        http,
        mg,
        [
            "plain@example.com",
            {"address": "Jane@Example.com", "vars": '{"plan": "free"}', "subscribed": "no"},
        ],
    )
    assert status == 200
    state = members_of(await get_json(http, mg.url + "/_sandbox/members"))
    assert state["plain@example.com"] == {
        "address": "plain@example.com",
        "name": "",
        "subscribed": True,
        "vars": {},
    }
    assert state["jane@example.com"]["address"] == "Jane@Example.com"
    assert (
        state["jane@example.com"]["vars"] == {"plan": "free"} and not state["jane@example.com"]["subscribed"]
    )


async def test_mailgun_bulk_applies_in_order_replacing_vars_like_the_single_call(http, mg):
    status, _ = await bulk(
        http,
        mg,
        [
            {"address": "jane@example.com", "name": "Jane", "vars": {"plan": "pro", "x": 1}},
            {"address": "JANE@example.com", "vars": {"plan": "team"}},
        ],
    )
    assert status == 200
    log = (await get_json(http, mg.url + "/_sandbox/log/jane@example.com"))["applied"]
    assert [entry["action"] for entry in log] == ["created", "updated"]
    assert [entry["details"]["batch_index"] for entry in log] == [0, 1]
    assert log[-1]["state"] == {
        "address": "jane@example.com",
        "name": "Jane",
        "subscribed": True,
        "vars": {"plan": "team"},
    }


async def test_mailgun_bulk_without_upsert_leaves_existing_members_alone(http, mg):
    await bulk(http, mg, [{"address": "jane@example.com", "name": "Jane"}])
    status, body = await bulk(
        http, mg, [{"address": "jane@example.com", "name": "Changed"}, "new@example.com"], upsert=None
    )
    assert status == 200 and body["list"]["members_count"] == 2
    state = members_of(await get_json(http, mg.url + "/_sandbox/members"))
    assert state["jane@example.com"]["name"] == "Jane"
    status, body = await bulk(http, mg, ["a@example.com"], upsert="maybe")
    assert status == 400 and "upsert" in body["message"]


async def test_mailgun_bulk_one_invalid_entry_fails_a_synchronous_call_whole(http, mg):
    for bad, word in (
        ({"address": "not-an-address"}, "not a valid email address"),
        ({"name": "No Address"}, "missing"),
        ({"address": "a@example.com", "vars": [1, 2]}, "vars"),
        ({"address": "a@example.com", "vars": "{not json"}, "vars"),
        ({"address": "a@example.com", "subscribed": "perhaps"}, "subscribed"),
        (42, "address"),
    ):
        status, body = await bulk(http, mg, ["ok@example.com", bad])
        assert status == 400, bad
        assert body["message"].startswith("members[1]: ") and word in body["message"], body
    assert members_of(await get_json(http, mg.url + "/_sandbox/members")) == {}


async def test_mailgun_bulk_bad_members_field(http, mg):
    async with http.post(mg.url + BULK, data={"upsert": "true"}, headers=MAILGUN_AUTH) as r:
        assert r.status == 400 and (await r.json())["message"] == "'members' parameter is missing"
    status, body = await bulk(http, mg, "{not json")
    assert status == 400 and "JSON array" in body["message"]
    status, body = await bulk(http, mg, {"address": "a@example.com"})
    assert status == 400 and "JSON array" in body["message"]
    async with http.post(mg.url + BULK, json={"members": []}, headers=MAILGUN_AUTH) as r:
        assert r.status == 400  # a JSON body has no form fields, as for the single call
    status, body = await bulk(http, mg, [f"m{i}@example.com" for i in range(1001)])
    assert status == 400 and "1000" in body["message"]
    status, body = await bulk(http, mg, [])
    assert status == 200 and body["message"] == mailgun.MSG_LIST_UPDATED
    assert body["list"]["members_count"] == 0


async def test_mailgun_bulk_over_100_is_asynchronous_without_per_member_result(http, start):
    server = start("mailgun", bulk_async_delay_s=0.3)
    members: list[Any] = [{"address": f"m{i}@example.com", "vars": {"i": i}} for i in range(150)]
    members[10] = {"address": "broken"}  # skipped silently in the background
    status, body = await bulk(http, server, members)
    assert status == 200
    assert body["message"] == mailgun.MSG_BULK_QUEUED
    assert isinstance(body["task-id"], str) and body["task-id"]
    assert "member" not in body and "members" not in body  # no per-member result
    assert body["list"]["members_count"] == 0  # not applied yet
    assert members_of(await get_json(http, server.url + "/_sandbox/members")) == {}
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        state = members_of(await get_json(http, server.url + "/_sandbox/members"))
        if len(state) == 149 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(state) == 149 and "broken" not in state
    log = (await get_json(http, server.url + "/_sandbox/log/m20@example.com"))["applied"]
    assert log[0]["details"]["task_id"] == body["task-id"] and log[0]["state"]["vars"] == {"i": 20}


async def test_mailgun_bulk_queued_upload_is_dropped_by_reset(http, start):
    server = start("mailgun", bulk_async_delay_s=0.3)
    status, _ = await bulk(http, server, [f"m{i}@example.com" for i in range(101)])
    assert status == 200
    async with http.post(server.url + "/_sandbox/reset") as resp:
        assert resp.status == 200
    await asyncio.sleep(0.6)
    assert members_of(await get_json(http, server.url + "/_sandbox/members")) == {}


async def test_mailgun_bulk_auth_and_list_lookup_like_the_single_call(http, mg):
    wrong = {"Authorization": aiohttp.encode_basic_auth("api", "key-wrong")}
    for headers in (wrong, {"Authorization": aiohttp.encode_basic_auth("user", KEY)}, {}):
        async with http.post(mg.url + BULK, data={"members": "[]"}, headers=headers) as resp:
            assert resp.status == 401
            assert resp.content_type == "text/plain" and await resp.text() == "Forbidden"
    status, body = await bulk(
        http, mg, ["a@example.com"], path="/v3/lists/missing@mg.example.com/members.json"
    )
    assert status == 404 and body["message"] == "Mailing list missing@mg.example.com not found"
    assert members_of(await get_json(http, mg.url + "/_sandbox/members")) == {}


async def test_mailgun_bulk_is_faulted_like_other_calls(http, start):
    server = start("mailgun", faults={"rate_limit": {"burst": 1, "retry_after_s": 2}})
    status, body = await bulk(http, server, ["a@example.com"])
    assert status == 429 and body == {"message": "Too many requests"}
    status, _ = await bulk(http, server, ["a@example.com"])
    assert status == 200
    requests = (await get_json(http, server.url + "/_sandbox/requests"))["requests"]
    assert [r["status"] for r in requests] == [429, 200] and requests[0]["fault"] == "rate_limit"
