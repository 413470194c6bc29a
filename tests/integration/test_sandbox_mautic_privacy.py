"""The Mautic emulator's calls for consent withdrawal and erasure, over real HTTP.

Get, edit (PATCH/PUT), delete and do-not-contact add/remove, with Mautic's answers and state
rules: an edit of an unknown id never creates with PATCH but does with PUT, a DNC add rewrites
a bounce entry but never an unsubscribe, a remove takes whatever entry is there, a delete frees
the email for a new contact with a new id. docs/destinations-api.md has the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from signal_sync.sandbox import RunningServer, mautic
from tests.support.sandbox import request

pytestmark = pytest.mark.integration

USER = "signal"
PASSWORD = "s3cret-pw"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
CONSENT = "signal-marketing-consent"
COMMENT = "signal-sync: marketing consent withdrawn"
JANE = {"email": "jane@example.com", "firstname": "Jane", "tags": [CONSENT, "vip"]}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    return lambda **options: serve(mautic.create_app(**({"username": USER, "password": PASSWORD} | options)))


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    return await request(http, method, url, AUTH if headers is None else headers, **kwargs)


async def create(
    http: aiohttp.ClientSession, server: RunningServer, payload: dict[str, Any]
) -> dict[str, Any]:
    status, body, _ = await call(http, "POST", server.url + "/api/contacts/new", json=payload)
    assert status in (200, 201), body
    return body["contact"]


async def dnc_add(http, server, contact_id: int, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    url = f"{server.url}/api/contacts/{contact_id}/dnc/email/add"
    status, answer, _ = await call(http, "POST", url, json=body, **kwargs)
    return status, answer


async def contacts(http, server) -> list[dict[str, Any]]:
    _, state, _ = await call(http, "GET", server.url + "/_sandbox/contacts", headers={})
    return state["contacts"]


def error(body: Any) -> dict[str, Any]:
    (only,) = body["errors"]
    assert set(only) == {"code", "message", "details", "type"}
    return only


# --- contact ids in the upsert answers ------------------------------------------------------


async def test_upsert_answers_carry_the_contact_id_single_and_batch(http, server):
    status, body, resp = await call(http, "POST", server.url + "/api/contacts/new", json=JANE)
    assert status == 201
    contact_id = body["contact"]["id"]
    assert resp.headers["Location"] == f"{server.url}/api/contacts/{contact_id}"
    assert body["contact"]["fields"]["all"]["id"] == contact_id
    status, batch, _ = await call(
        http,
        "POST",
        server.url + "/api/contacts/batch/new",
        json=[{"email": "JANE@example.com"}, {"email": "bob@example.com"}],
    )
    assert status == 201 and batch["statusCodes"] == [200, 201]
    assert batch["contacts"][0]["id"] == contact_id
    bob_id = batch["contacts"][1]["id"]
    status, got, _ = await call(http, "GET", f"{server.url}/api/contacts/{bob_id}")
    assert status == 200 and got["contact"]["fields"]["all"]["email"] == "bob@example.com"


# --- get ------------------------------------------------------------------------------------


async def test_get_contact_shows_tags_and_an_empty_dnc_list(http, server):
    contact = await create(http, server, JANE)
    status, body, _ = await call(http, "GET", f"{server.url}/api/contacts/{contact['id']}")
    assert status == 200
    assert [t["tag"] for t in body["contact"]["tags"]] == [CONSENT, "vip"]
    assert body["contact"]["doNotContact"] == []


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/contacts/999", 404, "Item was not found."),
        ("PATCH", "/api/contacts/999/edit", 404, "Item was not found."),
        ("DELETE", "/api/contacts/999/delete", 404, "Item was not found."),
        ("POST", "/api/contacts/999/dnc/email/add", 404, "Item was not found."),
        ("POST", "/api/contacts/999/dnc/email/remove", 404, "Item was not found."),
        ("GET", "/api/contacts/abc", 404, "Requested URL not found: /api/contacts/abc"),
        ("POST", "/api/contacts/1/edit", 405, "Method POST is not allowed for /api/contacts/1/edit"),
        ("GET", "/api/contacts/1/delete", 405, "Method GET is not allowed for /api/contacts/1/delete"),
        (
            "GET",
            "/api/contacts/1/dnc/email/add",
            405,
            "Method GET is not allowed for /api/contacts/1/dnc/email/add",
        ),
    ],
)
async def test_unknown_ids_and_wrong_methods(http, server, method, path, status, message):
    got, body, _ = await call(http, method, server.url + path, json={})
    assert got == status
    assert error(body)["message"] == message
    assert await contacts(http, server) == []


# --- edit -----------------------------------------------------------------------------------


async def test_patch_of_an_unknown_id_is_404_and_creates_nothing(http, server):
    status, body, _ = await call(
        http, "PATCH", f"{server.url}/api/contacts/1/edit", json={"tags": [f"-{CONSENT}"]}
    )
    assert status == 404 and error(body)["code"] == 404
    await create(http, server, {"email": "other@example.com"})
    status, _, _ = await call(http, "PATCH", f"{server.url}/api/contacts/2/edit", json={"firstname": "X"})
    assert status == 404
    assert [c["fields"]["all"]["email"] for c in await contacts(http, server)] == ["other@example.com"]


async def test_patch_removes_the_consent_tag_and_keeps_everything_else(http, server):
    contact = await create(http, server, JANE | {"city": "London"})
    url = f"{server.url}/api/contacts/{contact['id']}/edit"
    status, body, _ = await call(http, "PATCH", url, json={"tags": [f"-{CONSENT}"]})
    assert status == 200
    edited = body["contact"]
    assert edited["id"] == contact["id"]
    assert [t["tag"] for t in edited["tags"]] == ["vip"]
    assert edited["fields"]["all"] | {"city": "London", "firstname": "Jane"} == edited["fields"]["all"]
    status, body, _ = await call(http, "PATCH", url, json={"tags": [f"-{CONSENT}"]})  # idempotent
    assert status == 200 and [t["tag"] for t in body["contact"]["tags"]] == ["vip"]


async def test_put_of_an_unknown_id_creates_a_new_contact(http, server):
    await create(http, server, {"email": "first@example.com"})
    status, body, resp = await call(http, "PUT", f"{server.url}/api/contacts/500/edit", json={"tags": ["x"]})
    assert status == 201
    assert body["contact"]["id"] == 2  # the next id, not the one in the path
    assert resp.headers["Location"].endswith("/api/contacts/2")
    assert [c["fields"]["all"]["email"] for c in await contacts(http, server)] == ["first@example.com", None]


async def test_put_of_a_known_id_clears_what_it_does_not_send(http, server):
    contact = await create(http, server, JANE | {"city": "London"})
    url = f"{server.url}/api/contacts/{contact['id']}/edit"
    status, body, _ = await call(http, "PUT", url, json={"email": "jane@example.com", "lastname": "Doe"})
    assert status == 200
    fields = body["contact"]["fields"]["all"]
    assert (fields["firstname"], fields["city"], fields["lastname"]) == (None, None, "Doe")
    assert [t["tag"] for t in body["contact"]["tags"]] == [CONSENT, "vip"]  # tags are kept


async def test_edit_validates_what_it_is_sent_and_refuses_a_merge(http, server):
    jane = await create(http, server, JANE)
    await create(http, server, {"email": "bob@example.com"})
    url = f"{server.url}/api/contacts/{jane['id']}/edit"
    status, body, _ = await call(http, "PATCH", url, json={"email": "not-an-email"})
    assert status == 400 and error(body)["details"] == {"email": ["A valid email is required."]}
    status, body, _ = await call(http, "PATCH", url, json={"email": "BOB@example.com"})
    assert status == 400 and "merge" in error(body)["message"]
    status, body, _ = await call(http, "PATCH", url, data={"tags": "x"})
    assert status == 400 and "JSON" in error(body)["message"]
    status, body, _ = await call(http, "PATCH", url, json={"email": "jane.doe@example.com"})
    assert status == 200
    status, found, _ = await call(
        http, "GET", server.url + "/api/contacts?search=email:%2Bjane.doe@example.com"
    )
    assert list(found["contacts"]) == [str(jane["id"])]


# --- do not contact -------------------------------------------------------------------------


async def test_dnc_add_defaults_to_manual_and_refuses_reason_zero(http, server):
    contact = await create(http, server, JANE)
    status, body = await dnc_add(http, server, contact["id"], {"reason": 0})
    assert status == 400
    assert error(body)["message"] == "Invalid reason code given"
    assert error(body)["details"] == ["Reason code needs to be an integer and higher than 0."]
    status, body = await dnc_add(http, server, contact["id"], {"reason": "none"})
    assert status == 400
    status, body = await dnc_add(http, server, contact["id"], {"reason": [1]})
    assert status == 400 and "non-scalar" in error(body)["message"]
    status, body = await dnc_add(http, server, contact["id"])
    assert status == 200
    (entry,) = body["contact"]["doNotContact"]
    assert (entry["reason"], entry["channel"], entry["comments"], entry["channelId"]) == (
        3,
        "email",
        "",
        None,
    )


async def test_dnc_add_unsubscribed_is_visible_on_the_contact(http, server):
    contact = await create(http, server, JANE)
    status, body = await dnc_add(http, server, contact["id"], {"reason": 1, "comments": COMMENT})
    assert status == 200 and set(body) == {"contact"}
    status, got, _ = await call(http, "GET", f"{server.url}/api/contacts/{contact['id']}")
    (entry,) = got["contact"]["doNotContact"]
    assert set(entry) == {"id", "dateAdded", "reason", "comments", "channel", "channelId"}
    assert (entry["reason"], entry["comments"], entry["channel"]) == (1, COMMENT, "email")
    assert entry["dateAdded"].endswith("+00:00")


async def test_dnc_add_takes_a_form_and_cleans_comments(http, server):
    contact = await create(http, server, JANE)
    url = f"{server.url}/api/contacts/{contact['id']}/dnc/email/add"
    status, body, _ = await call(http, "POST", url, data={"reason": "1", "comments": "a & <b>b</b>"})
    assert status == 200
    assert body["contact"]["doNotContact"][0]["comments"] == "a &#38; &#60;b&#62;b&#60;/b&#62;"


async def test_dnc_add_on_a_bounce_entry_rewrites_it(http, server):
    contact = await create(http, server, JANE | {"doNotContact": [{"channel": "email", "reason": 2}]})
    (bounce,) = contact["doNotContact"]
    assert bounce["reason"] == 2
    status, body = await dnc_add(http, server, contact["id"], {"reason": 1, "comments": COMMENT})
    assert status == 200
    (entry,) = body["contact"]["doNotContact"]
    assert entry["id"] == bounce["id"]  # the same row: the bounce is gone, the entry reads as ours
    assert (entry["reason"], entry["comments"]) == (1, COMMENT)


async def test_dnc_add_leaves_an_unsubscribe_entry_alone(http, server):
    contact = await create(http, server, JANE)
    await dnc_add(http, server, contact["id"], {"reason": 1, "comments": "clicked unsubscribe"})
    (before,) = (await call(http, "GET", f"{server.url}/api/contacts/{contact['id']}"))[1]["contact"][
        "doNotContact"
    ]
    for reason in (1, 3):
        status, body = await dnc_add(http, server, contact["id"], {"reason": reason, "comments": COMMENT})
        assert status == 200
        assert body["contact"]["doNotContact"] == [before]


async def test_dnc_add_with_a_channel_id_never_rewrites(http, server):
    contact = await create(http, server, JANE | {"doNotContact": [{"reason": 2}]})
    status, body = await dnc_add(http, server, contact["id"], {"reason": 1, "channelId": 26})
    assert status == 200
    assert [e["reason"] for e in body["contact"]["doNotContact"]] == [2]


async def test_dnc_remove_takes_any_entry_and_reports_whether_there_was_one(http, server):
    contact = await create(http, server, JANE | {"doNotContact": [{"reason": 2, "comments": "bounced"}]})
    url = f"{server.url}/api/contacts/{contact['id']}/dnc/email/remove"
    status, body, _ = await call(http, "POST", url)
    assert status == 200
    assert body["recordFound"] is True and body["contact"]["doNotContact"] == []
    status, body, _ = await call(http, "POST", url)
    assert status == 200 and body["recordFound"] is False


async def test_dnc_in_a_payload_adds_and_reason_zero_removes(http, server):
    contact = await create(http, server, JANE)
    updated = await create(http, server, {"email": "jane@example.com", "doNotContact": [{"reason": 1}]})
    assert [e["reason"] for e in updated["doNotContact"]] == [1]
    url = f"{server.url}/api/contacts/{contact['id']}/edit"
    status, body, _ = await call(
        http, "PATCH", url, json={"doNotContact": [{"channel": "email", "reason": 0}]}
    )
    assert status == 200 and body["contact"]["doNotContact"] == []
    status, body, _ = await call(http, "PATCH", url, json={"doNotContact": ["email"]})
    assert status == 400


# --- delete ---------------------------------------------------------------------------------


async def test_delete_answers_the_contact_without_id_and_frees_the_email(http, server):
    contact = await create(http, server, JANE | {"doNotContact": [{"reason": 1}]})
    url = f"{server.url}/api/contacts/{contact['id']}/delete"
    status, body, _ = await call(http, "DELETE", url)
    assert status == 200
    assert body["contact"]["id"] is None and body["contact"]["fields"]["all"]["email"] == "jane@example.com"
    status, body, _ = await call(http, "DELETE", url)
    assert status == 404 and error(body)["message"] == "Item was not found."
    status, _, _ = await call(http, "GET", f"{server.url}/api/contacts/{contact['id']}")
    assert status == 404
    assert await contacts(http, server) == []
    status, body, _ = await call(
        http, "POST", server.url + "/api/contacts/new", json={"email": "jane@example.com"}
    )
    assert status == 201 and body["contact"]["id"] != contact["id"]
    assert body["contact"]["tags"] == [] and body["contact"]["doNotContact"] == []


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", "/edit"),
        ("DELETE", "/delete"),
        ("POST", "/dnc/email/add"),
        ("POST", "/dnc/email/remove"),
    ],
)
async def test_bad_credentials_are_401_before_the_lookup(http, server, method, suffix):
    contact = await create(http, server, JANE)
    for path in (f"/api/contacts/{contact['id']}{suffix}", f"/api/contacts/999{suffix}"):
        headers = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
        status, body, _ = await call(http, method, server.url + path, headers=headers, json={})
        assert status == 401 and body["errors"][0]["message"] == mautic.MSG_BASIC_INVALID


async def test_permissions_are_checked_after_the_lookup(http, start):
    server = start(can_edit_contacts=False, can_delete_contacts=False)
    app_store = server.app[mautic.MAUTIC_STORE]
    app_store.upsert({"email": "jane@example.com", "tags": [CONSENT]}, None)
    for method, suffix in [("PATCH", "/edit"), ("DELETE", "/delete"), ("POST", "/dnc/email/add")]:
        status, _, _ = await call(http, method, f"{server.url}/api/contacts/999{suffix}", json={})
        assert status == 404
        status, body, _ = await call(http, method, f"{server.url}/api/contacts/1{suffix}", json={})
        assert status == 403
        assert error(body)["message"] == "You do not have access to the requested area/action."
    status, body, _ = await call(http, "PUT", f"{server.url}/api/contacts/999/edit", json={})
    assert status == 403
    (contact,) = await contacts(http, server)
    assert contact["doNotContact"] == [] and [t["tag"] for t in contact["tags"]] == [CONSENT]


async def test_only_delete_permission_missing(http, start):
    server = start(can_delete_contacts=False)
    contact = await create(http, server, JANE)
    status, _, _ = await call(http, "DELETE", f"{server.url}/api/contacts/{contact['id']}/delete")
    assert status == 403
    status, _ = await dnc_add(http, server, contact["id"], {"reason": 1})
    assert status == 200


# --- journal --------------------------------------------------------------------------------


async def test_applied_log_shows_withdrawal_regrant_and_erasure_in_order(http, server):
    contact = await create(http, server, JANE)
    base = f"{server.url}/api/contacts/{contact['id']}"
    await call(http, "PATCH", base + "/edit", json={"tags": [f"-{CONSENT}"]})
    await dnc_add(http, server, contact["id"], {"reason": 1, "comments": COMMENT})
    await create(http, server, {"email": "jane@example.com", "tags": [CONSENT]})
    await call(http, "POST", base + "/dnc/email/remove")
    await call(http, "POST", base + "/dnc/email/remove")
    await call(http, "DELETE", base + "/delete")
    _, log, _ = await call(http, "GET", server.url + "/_sandbox/log/Jane@Example.com", headers={})
    applied = log["applied"]
    assert [e["action"] for e in applied] == [
        "created",
        "updated",
        "dnc_added",
        "updated",
        "dnc_removed",
        "dnc_not_found",
        "deleted",
    ]
    assert all(e["details"]["contact_id"] == contact["id"] for e in applied)
    assert applied[1]["details"]["method"] == "PATCH" and applied[1]["changes"] == {"tags": [f"-{CONSENT}"]}
    assert applied[2]["changes"]["doNotContact"]["comments"] == COMMENT
    assert applied[-1]["state"]["id"] is None
    _, requests, _ = await call(http, "GET", server.url + "/_sandbox/requests", headers={})
    assert [r["method"] for r in requests["requests"]] == [
        "POST",
        "PATCH",
        "POST",
        "POST",
        "POST",
        "POST",
        "DELETE",
    ]
