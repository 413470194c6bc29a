"""The Mautic emulator's segments, over real HTTP.

Adding one contact and several, removing, listing, a contact's segments, and the answers for an
unknown segment or contact, an unpublished segment and a user who may not edit contacts, in the
order Mautic checks them. docs/destinations-api.md has the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from signal_sync.sandbox import RunningServer, mautic
from signal_sync.sandbox.mautic_oauth import new_client
from tests.support.sandbox import request

pytestmark = pytest.mark.integration

USER = "signal"
PASSWORD = "s3cret-pw"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
SEGMENTS = [
    "Newsletter",
    {"name": "Trial users", "alias": "trial"},
    {"name": "Archive", "isPublished": False},
]
NEWSLETTER, TRIAL, ARCHIVE = 1, 2, 3


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    base = {"username": USER, "password": PASSWORD, "segments": SEGMENTS}
    return lambda **options: serve(mautic.create_app(**(base | options)))


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    status, body, _ = await request(http, method, url, AUTH if headers is None else headers, **kwargs)
    return status, body


async def contact(http, server, email: str) -> int:
    status, body = await call(http, "POST", server.url + "/api/contacts/new", json={"email": email})
    assert status in (200, 201), body
    return body["contact"]["id"]


async def add(http, server, segment: Any, contact_id: Any, **kwargs: Any) -> tuple[int, Any]:
    return await call(http, "POST", f"{server.url}/api/segments/{segment}/contact/{contact_id}/add", **kwargs)


async def remove(http, server, segment: Any, contact_id: Any) -> tuple[int, Any]:
    return await call(http, "POST", f"{server.url}/api/segments/{segment}/contact/{contact_id}/remove")


async def add_many(http, server, segment: Any, **kwargs: Any) -> tuple[int, Any]:
    return await call(http, "POST", f"{server.url}/api/segments/{segment}/contacts/add", **kwargs)


async def segments_of(http, server, contact_id: int) -> tuple[int, Any]:
    return await call(http, "GET", f"{server.url}/api/contacts/{contact_id}/segments")


async def members(http, server) -> dict[int, list[int]]:
    _, body = await call(http, "GET", server.url + "/_sandbox/segments", headers={})
    return {s["id"]: s["members"] for s in body["segments"]}


def error(body: Any) -> dict[str, Any]:
    """The one error of a controller's answer (``returnError``)."""
    (only,) = body["errors"]
    assert set(only) == {"code", "message", "details", "type"}, body
    return only


# --- one contact ----------------------------------------------------------------------------


async def test_add_one_contact_answers_success_1_and_shows_in_the_contacts_segments(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    assert await add(http, server, NEWSLETTER, jane) == (200, {"success": 1})
    status, body = await segments_of(http, server, jane)
    assert status == 200 and body["total"] == 1
    (only,) = body["lists"].values()
    assert list(body["lists"]) == [str(NEWSLETTER)]
    assert set(only) == {"id", "name", "alias", "dateAdded", "manuallyAdded", "manuallyRemoved"}
    assert only | {"dateAdded": None} == {
        "id": NEWSLETTER,
        "name": "Newsletter",
        "alias": "newsletter",
        "dateAdded": None,
        "manuallyAdded": True,
        "manuallyRemoved": False,
    }
    assert only["dateAdded"].endswith("+00:00")
    assert await members(http, server) == {NEWSLETTER: [jane], TRIAL: [], ARCHIVE: []}


async def test_adding_a_member_again_changes_nothing(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    await add(http, server, NEWSLETTER, jane)
    _, before = await segments_of(http, server, jane)
    assert await add(http, server, NEWSLETTER, jane) == (200, {"success": 1})
    _, after = await segments_of(http, server, jane)
    assert after == before
    _, log = await call(http, "GET", server.url + "/_sandbox/log/jane@example.com", headers={})
    actions = [entry["action"] for entry in log["applied"]]
    assert actions == ["created", "segment_added", "segment_unchanged"]
    assert log["applied"][1]["details"] == {"contact_id": jane, "segment_id": NEWSLETTER}
    assert log["applied"][1]["state"] == {"segments": [NEWSLETTER]}


async def test_remove_takes_a_member_out_and_answers_the_same_for_a_non_member(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    await add(http, server, NEWSLETTER, jane)
    await add(http, server, TRIAL, jane)
    assert await remove(http, server, NEWSLETTER, jane) == (200, {"success": 1})
    assert await remove(http, server, NEWSLETTER, jane) == (200, {"success": 1})
    _, body = await segments_of(http, server, jane)
    assert list(body["lists"]) == [str(TRIAL)]
    assert (await members(http, server))[NEWSLETTER] == []


@pytest.mark.parametrize("call_", [add, remove])
async def test_checks_in_mautics_order_segment_contact_then_published(http, start, call_):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    for segment in (99, "abc", "1abc"):
        status, body = await call_(http, server, segment, jane)
        assert status == 404 and error(body)["message"] == "Item was not found."
    status, body = await call_(http, server, 99, 999)  # the segment first
    assert status == 404 and error(body)["message"] == "Item was not found."
    status, body = await call_(http, server, ARCHIVE, 999)  # then the contact, before publication
    assert status == 404 and error(body)["message"] == "Contact not found."
    status, body = await call_(http, server, ARCHIVE, jane)  # unpublished: not the user's segment
    assert status == 403 and error(body)["message"] == "You do not have access to the requested area/action."
    assert await members(http, server) == {NEWSLETTER: [], TRIAL: [], ARCHIVE: []}


async def test_a_contact_id_in_the_path_is_read_as_php_reads_an_int(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    assert await add(http, server, NEWSLETTER, f"{jane}abc") == (200, {"success": 1})
    status, body = await add(http, server, NEWSLETTER, "abc")
    assert status == 404 and error(body)["message"] == "Contact not found."
    assert (await members(http, server))[NEWSLETTER] == [jane]


async def test_without_edit_permission_the_single_calls_are_403(http, start):
    server = start(can_edit_contacts=False)
    server.app[mautic.MAUTIC_STORE].upsert({"email": "jane@example.com"}, None)
    for call_ in (add, remove):
        status, body = await call_(http, server, NEWSLETTER, 1)
        assert (
            status == 403 and error(body)["message"] == "You do not have access to the requested area/action."
        )


async def test_segment_calls_need_credentials_and_take_bearer_tokens(http, start):
    client = new_client()
    server = start(oauth_clients=[client], basic_auth_enabled=False)
    server.app[mautic.MAUTIC_STORE].upsert({"email": "jane@example.com"}, None)
    status, body = await add(http, server, NEWSLETTER, 1, headers={})
    assert status == 401 and body["errors"][0]["message"] == "API authorization denied."
    status, body = await add(http, server, NEWSLETTER, 1)
    assert status == 403 and body["errors"][0]["message"] == mautic.MSG_BASIC_DISABLED
    data = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    _, token, _ = await request(http, "POST", server.url + "/oauth/v2/token", None, data=data)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert await add(http, server, NEWSLETTER, 1, headers=bearer) == (200, {"success": 1})


# --- several contacts -----------------------------------------------------------------------


async def test_add_several_answers_per_contact_keyed_by_id(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    john = await contact(http, server, "john@example.com")
    ann = await contact(http, server, "ann@example.com")
    status, body = await add_many(http, server, TRIAL, json={"ids": [jane, str(john), 999, "abc", f"{ann}x"]})
    assert status == 200
    assert body == {
        "success": 1,
        "details": {
            str(jane): {"success": True},
            str(john): {"success": True},
            "999": {"success": False},
            "abc": {"success": False},
            str(ann): {"success": True},
        },
    }
    assert (await members(http, server))[TRIAL] == [jane, john, ann]
    _, log = await call(http, "GET", server.url + "/_sandbox/log/john@example.com", headers={})
    assert [entry["action"] for entry in log["applied"]] == ["created", "segment_added"]


async def test_add_several_takes_a_form_too(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    john = await contact(http, server, "john@example.com")
    status, body = await add_many(http, server, NEWSLETTER, data=[("ids[]", str(jane)), ("ids[]", str(john))])
    assert status == 200 and body["details"] == {str(jane): {"success": True}, str(john): {"success": True}}


async def test_details_are_written_as_php_writes_arrays(http, start):
    server = start()
    assert await add_many(http, server, NEWSLETTER, json={"ids": []}) == (200, {"success": 1, "details": []})
    status, body = await add_many(http, server, NEWSLETTER, json={"ids": [0]})
    assert (status, body) == (200, {"success": 1, "details": [{"success": False}]})


async def test_add_several_without_ids_is_400_before_the_segment_is_looked_up(http, start):
    server = start()
    for kwargs in ({}, {"json": {"contacts": [1]}}, {"json": [1, 2]}, {"data": "ids"}):
        status, body = await add_many(http, server, 99, **kwargs)
        assert status == 400 and error(body)["message"] == "This is a bad request."
    status, body = await add_many(http, server, NEWSLETTER, json={"ids": "1,2"})
    assert status == 400 and "not emulated" in error(body)["message"]


async def test_add_several_refuses_an_unknown_or_unpublished_segment(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    status, body = await add_many(http, server, 99, json={"ids": [jane]})
    assert status == 404 and error(body)["message"] == "Item was not found."
    status, body = await add_many(http, server, ARCHIVE, json={"ids": [jane]})
    assert status == 403 and error(body)["message"] == "You do not have access to the requested area/action."


async def test_add_several_without_edit_permission_fails_each_contact_not_the_call(http, start):
    server = start(can_edit_contacts=False)
    server.app[mautic.MAUTIC_STORE].upsert({"email": "jane@example.com"}, None)
    status, body = await add_many(http, server, NEWSLETTER, json={"ids": [1]})
    assert (status, body) == (200, {"success": 1, "details": {"1": {"success": False}}})
    assert (await members(http, server))[NEWSLETTER] == []


# --- reading segments -----------------------------------------------------------------------


async def test_list_segments_keyed_by_id(http, start):
    server = start()
    status, body = await call(http, "GET", server.url + "/api/segments")
    assert status == 200 and body["total"] == 3 and list(body["lists"]) == ["1", "2", "3"]
    newsletter = body["lists"]["1"]
    assert set(newsletter) == {
        "isPublished",
        "dateAdded",
        "dateModified",
        "createdBy",
        "createdByUser",
        "modifiedBy",
        "modifiedByUser",
        "id",
        "name",
        "publicName",
        "alias",
        "description",
        "category",
        "filters",
        "isGlobal",
        "isPreferenceCenter",
    }
    assert (newsletter["id"], newsletter["alias"], newsletter["isPublished"]) == (1, "newsletter", True)
    assert (body["lists"]["2"]["alias"], body["lists"]["3"]["isPublished"]) == ("trial", False)


async def test_list_segments_options(http, start):
    server = start()
    _, body = await call(http, "GET", server.url + "/api/segments?published=1")
    assert body["total"] == 2 and list(body["lists"]) == ["1", "2"]
    _, body = await call(http, "GET", server.url + "/api/segments?minimal=1&limit=1&start=1")
    assert body["total"] == 3 and list(body["lists"]) == ["2"]
    assert "filters" not in body["lists"]["2"] and "isGlobal" not in body["lists"]["2"]
    status, body = await call(http, "GET", server.url + "/api/segments?search=trial")
    assert status == 400 and "not emulated" in error(body)["message"]
    status, body = await call(http, "GET", server.url + "/api/segments?limit=x")
    assert status == 400


async def test_no_segments_is_an_empty_object(http, start):
    server = start(segments=())
    assert await call(http, "GET", server.url + "/api/segments") == (200, {"total": 0, "lists": {}})


async def test_get_one_segment_unpublished_too(http, start):
    server = start()
    status, body = await call(http, "GET", f"{server.url}/api/segments/{ARCHIVE}")
    assert status == 200 and body["list"]["name"] == "Archive" and body["list"]["isPublished"] is False
    status, body = await call(http, "GET", f"{server.url}/api/segments/99")
    assert status == 404 and error(body)["message"] == "Item was not found."


async def test_a_contacts_segments_are_an_empty_list_when_none(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    assert await segments_of(http, server, jane) == (200, {"total": 0, "lists": []})
    status, body = await segments_of(http, server, 999)
    assert status == 404 and error(body)["message"] == "Item was not found."


async def test_other_methods_are_405(http, start):
    server = start()
    for method, path in [
        ("GET", "/api/segments/1/contact/1/add"),
        ("DELETE", "/api/segments/1/contact/1/remove"),
        ("GET", "/api/segments/1/contacts/add"),
        ("POST", "/api/segments"),
        ("POST", "/api/contacts/1/segments"),
    ]:
        status, body = await call(http, method, server.url + path)
        assert status == 405, (method, path, body)


# --- segments and contacts change -----------------------------------------------------------


async def test_a_deleted_contact_leaves_its_segments(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    await add(http, server, NEWSLETTER, jane)
    status, _ = await call(http, "DELETE", f"{server.url}/api/contacts/{jane}/delete")
    assert status == 200
    assert (await members(http, server))[NEWSLETTER] == []


async def test_a_segment_deleted_in_mautic_is_a_404_from_then_on(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    await add(http, server, NEWSLETTER, jane)
    status, body = await call(http, "DELETE", f"{server.url}/_sandbox/segments/{NEWSLETTER}", headers={})
    assert (status, body) == (200, {"deleted": NEWSLETTER})
    status, body = await add(http, server, NEWSLETTER, jane)
    assert status == 404 and error(body)["message"] == "Item was not found."
    assert await segments_of(http, server, jane) == (200, {"total": 0, "lists": []})


async def test_segments_are_set_up_and_changed_through_control_routes(http, start):
    server = start(segments=())
    status, body = await call(
        http, "POST", server.url + "/_sandbox/segments", headers={}, json="VIP customers"
    )
    assert status == 201 and (body["segment"]["id"], body["segment"]["alias"]) == (1, "vip-customers")
    status, body = await call(
        http, "POST", server.url + "/_sandbox/segments", headers={}, json={"name": "VIP customers"}
    )
    assert status == 201 and body["segment"]["alias"] == "vip-customers1"  # a taken alias gets a number
    for bad, field in [
        ({"name": ""}, "name"),
        ({"name": "x", "isPublished": "no"}, "isPublished"),
        ({"nom": "x"}, "nom"),
    ]:
        status, body = await call(http, "POST", server.url + "/_sandbox/segments", headers={}, json=bad)
        assert status == 400 and body["error"].startswith(field), body
    status, body = await call(
        http, "PATCH", server.url + "/_sandbox/segments/1", headers={}, json={"isPublished": False}
    )
    assert status == 200 and body["segment"]["isPublished"] is False
    jane = await contact(http, server, "jane@example.com")
    assert (await add(http, server, 1, jane))[0] == 403
    await call(http, "PATCH", server.url + "/_sandbox/segments/1", headers={}, json={"isPublished": True})
    assert (await add(http, server, 1, jane))[0] == 200
    assert (await call(http, "DELETE", server.url + "/_sandbox/segments/7", headers={}))[0] == 404


async def test_reset_restores_the_configured_segments_without_members(http, start):
    server = start()
    jane = await contact(http, server, "jane@example.com")
    await add(http, server, NEWSLETTER, jane)
    await call(http, "DELETE", f"{server.url}/_sandbox/segments/{TRIAL}", headers={})
    await call(http, "POST", server.url + "/_sandbox/reset", headers={})
    assert await members(http, server) == {NEWSLETTER: [], TRIAL: [], ARCHIVE: []}


def test_a_bad_segment_at_creation_names_the_field():
    with pytest.raises(ValueError, match="isGlobal"):
        mautic.create_app(username=USER, password=PASSWORD, segments=[{"name": "x", "isGlobal": 1}])
