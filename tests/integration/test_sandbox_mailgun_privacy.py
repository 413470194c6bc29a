"""The Mailgun emulator's calls for consent withdrawal and erasure, over real HTTP.

``PUT`` and ``DELETE /v3/lists/{list}/members/{address}`` (update or remove an existing member,
never create one) and the sending domain's unsubscribe list (``/v3/{domain}/unsubscribes``),
with Mailgun's answers; docs/destinations-api.md has the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from signal_sync.sandbox import RunningServer, mailgun
from tests.support.sandbox import request

pytestmark = pytest.mark.integration

KEY = "key-0123456789abcdef"
LIST = "newsletter@mg.example.com"
DOMAIN = "mg.example.com"
AUTH = {"Authorization": aiohttp.encode_basic_auth("api", KEY)}
MEMBERS = f"/v3/lists/{LIST}/members"
UNSUBSCRIBES = f"/v3/{DOMAIN}/unsubscribes"
JANE = {
    "address": "jane@example.com",
    "name": "Jane Doe",
    "subscribed": "yes",
    "upsert": "yes",
    "vars": orjson.dumps({"plan": "pro"}).decode(),
}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    return lambda **options: serve(mailgun.create_app(**({"api_key": KEY} | options)))


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


async def members(http: aiohttp.ClientSession, server: RunningServer) -> list[dict[str, Any]]:
    _, state = await call(http, "GET", server.url + "/_sandbox/members", headers={})
    return state["members"][LIST]


async def unsubscribes(http: aiohttp.ClientSession, server: RunningServer) -> dict[str, Any]:
    _, state = await call(http, "GET", server.url + "/_sandbox/unsubscribes", headers={})
    return state["unsubscribes"]


def member_url(server: RunningServer, address: str, list_address: str = LIST) -> str:
    return f"{server.url}/v3/lists/{list_address}/members/{quote(address, safe='@')}"


# --- update a member ------------------------------------------------------------------------


async def test_put_unsubscribes_an_existing_member_and_keeps_the_rest(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    status, body = await call(http, "PUT", member_url(server, "Jane@Example.com"), data={"subscribed": "no"})
    assert status == 200
    assert body == {
        "member": {
            "address": "jane@example.com",
            "name": "Jane Doe",
            "subscribed": False,
            "vars": {"plan": "pro"},
        },
        "message": "Mailing list member has been updated",
    }
    for value, expected in (("yes", True), ("false", False), ("True", True)):
        status, body = await call(
            http, "PUT", member_url(server, "jane@example.com"), data={"subscribed": value}
        )
        assert status == 200 and body["member"]["subscribed"] is expected


async def test_put_of_an_address_that_is_not_a_member_is_404_and_creates_nothing(http, server):
    status, body = await call(
        http, "PUT", member_url(server, "nobody@example.com"), data={"subscribed": "no"}
    )
    assert status == 404
    assert body == {"message": f"Member nobody@example.com of list {LIST} not found"}
    assert await members(http, server) == []
    _, listing = await call(http, "GET", f"{server.url}/v3/lists/{LIST}")
    assert listing["list"]["members_count"] == 0


async def test_put_on_an_unknown_list_is_the_list_404(http, server):
    status, body = await call(
        http, "PUT", member_url(server, "jane@example.com", "other@mg.example.com"), data={"subscribed": "no"}
    )
    assert status == 404 and body == {"message": "Mailing list other@mg.example.com not found"}


async def test_put_fields_vars_name_and_rename(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    await call(http, "POST", server.url + MEMBERS, data={"address": "bob@example.com"})
    url = member_url(server, "jane@example.com")
    status, body = await call(http, "PUT", url, data={"vars": '{"plan": "team"}', "name": "J"})
    assert status == 200 and body["member"]["vars"] == {"plan": "team"} and body["member"]["name"] == "J"
    status, body = await call(http, "PUT", url, data={"subscribed": "maybe"})
    assert status == 400 and body == {
        "message": "'subscribed' parameter must be one of: yes, no, true, false"
    }
    status, body = await call(http, "PUT", url, data={"vars": "[1]"})
    assert status == 400
    status, body = await call(http, "PUT", url, data={"address": "bob@example.com"})
    assert status == 400 and body == {"message": "Address already exists 'bob@example.com'"}
    status, body = await call(http, "PUT", url, data={"address": "jane.doe@example.com"})
    assert status == 200 and body["member"]["address"] == "jane.doe@example.com"
    assert [m["address"] for m in await members(http, server)] == ["bob@example.com", "jane.doe@example.com"]


async def test_put_with_a_json_body_changes_nothing(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    status, body = await call(http, "PUT", member_url(server, "jane@example.com"), json={"subscribed": "no"})
    assert status == 200 and body["member"]["subscribed"] is True  # no form, no field, nothing changed


async def test_put_an_address_with_a_plus_percent_encoded(http, server):
    await call(http, "POST", server.url + MEMBERS, data={"address": "jane+news@example.com"})
    status, body = await call(
        http, "PUT", member_url(server, "jane+news@example.com"), data={"subscribed": "no"}
    )
    assert status == 200 and body["member"]["subscribed"] is False


# --- delete a member ------------------------------------------------------------------------


async def test_delete_member_twice_is_404_the_second_time(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    url = member_url(server, "JANE@example.com")
    status, body = await call(http, "DELETE", url)
    assert status == 200
    assert body == {
        "member": {"address": "jane@example.com"},
        "message": "Mailing list member has been deleted",
    }
    status, body = await call(http, "DELETE", url)
    assert status == 404 and body == {"message": f"Member JANE@example.com of list {LIST} not found"}
    status, _ = await call(http, "GET", url)
    assert status == 404
    assert await members(http, server) == []
    status, body = await call(http, "POST", server.url + MEMBERS, data={"address": "jane@example.com"})
    assert status == 200 and body["message"] == "Mailing list member has been created"
    assert body["member"]["vars"] == {} and body["member"]["name"] == ""


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"{MEMBERS}/jane@example.com"),
        ("DELETE", f"{MEMBERS}/jane@example.com"),
        ("POST", UNSUBSCRIBES),
        ("GET", f"{UNSUBSCRIBES}/jane@example.com"),
        ("DELETE", f"{UNSUBSCRIBES}/jane@example.com"),
        ("GET", "/v3/unknown.example.com/unsubscribes/jane@example.com"),
    ],
)
async def test_bad_key_is_plain_text_forbidden_before_any_lookup(http, server, method, path):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    headers = {"Authorization": aiohttp.encode_basic_auth("api", "key-wrong")}
    async with http.request(
        method, server.url + path, headers=headers, data={"address": "jane@example.com"}
    ) as resp:
        assert resp.status == 401 and resp.content_type == "text/plain"
        assert await resp.text() == "Forbidden"
    assert [m["subscribed"] for m in await members(http, server)] == [True]
    assert await unsubscribes(http, server) == {DOMAIN: []}


# --- domain unsubscribes --------------------------------------------------------------------


async def test_unsubscribe_add_lookup_and_remove(http, server):
    status, body = await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com"})
    assert status == 200
    assert body == {
        "message": "Address has been added to the unsubscribes table",
        "address": "jane@example.com",
    }
    url = f"{server.url}{UNSUBSCRIBES}/{quote('Jane@Example.com', safe='@')}"
    status, body = await call(http, "GET", url)
    assert status == 200 and set(body) == {"address", "tags", "created_at"}
    assert body["address"] == "jane@example.com" and body["tags"] == ["*"]
    assert body["created_at"].endswith(" UTC")
    status, body = await call(http, "DELETE", url)
    assert status == 200 and body == {
        "message": "Unsubscribe event has been removed",
        "address": "jane@example.com",
    }
    for method in ("GET", "DELETE"):
        status, body = await call(http, method, url)
        assert status == 404 and body == {"message": "Address not found in unsubscribers table"}


async def test_unsubscribe_tags_created_at_and_removing_one_tag(http, server):
    form = {
        "address": "jane@example.com",
        "tag": "newsletter",
        "created_at": "Thu, 13 Oct 2011 18:02:00 +0200",
    }
    await call(http, "POST", server.url + UNSUBSCRIBES, data=form)
    await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com", "tag": "*"})
    url = f"{server.url}{UNSUBSCRIBES}/jane@example.com"
    _, body = await call(http, "GET", url)
    assert body["tags"] == ["newsletter", "*"]
    status, _ = await call(http, "DELETE", url + "?tag=newsletter")
    assert status == 200
    assert (await call(http, "GET", url))[1]["tags"] == ["*"]
    status, _ = await call(http, "DELETE", url + "?tag=newsletter")
    assert status == 404
    status, body = await call(
        http, "POST", server.url + UNSUBSCRIBES, data=form | {"created_at": "yesterday"}
    )
    assert status == 400 and "created_at" in body["message"]
    status, _ = await call(
        http, "POST", server.url + UNSUBSCRIBES, data=form | {"created_at": "Thu, 13 Oct 2011"}
    )
    assert status == 400


async def test_unsubscribe_json_records_all_or_nothing(http, server):
    records = [{"address": "a@example.com", "tags": ["x"]}, {"address": "b@example.com"}]
    status, body = await call(http, "POST", server.url + UNSUBSCRIBES, json=records)
    assert status == 200 and body == {"message": "2 addresses have been added to the unsubscribes table"}
    status, body = await call(
        http, "POST", server.url + UNSUBSCRIBES, json=[{"address": "c@example.com"}, {}]
    )
    assert status == 400 and body["message"].startswith("[1]: ")
    state = await unsubscribes(http, server)
    assert [(r["address"], r["tags"]) for r in state[DOMAIN]] == [
        ("a@example.com", ["x"]),
        ("b@example.com", ["*"]),
    ]


@pytest.mark.parametrize(
    "form", [{}, {"address": ""}, {"address": "not-an-email"}, {"address": "Jane <jane@example.com>"}]
)
async def test_unsubscribe_needs_a_valid_address(http, server, form):
    status, body = await call(http, "POST", server.url + UNSUBSCRIBES, data=form)
    assert status == 400 and "'address' parameter" in body["message"]
    assert await unsubscribes(http, server) == {DOMAIN: []}


async def test_unknown_domain_is_404_and_domains_are_configurable(http, start):
    server = start(domains=("news.example.org",))
    status, body = await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com"})
    assert status == 404 and body == {"message": f"Domain not found: {DOMAIN}"}
    status, _ = await call(
        http, "POST", server.url + "/v3/News.Example.org/unsubscribes", data={"address": "jane@example.com"}
    )
    assert status == 200
    state = await unsubscribes(http, server)
    assert list(state) == ["news.example.org"]
    assert [r["address"] for r in state["news.example.org"]] == ["jane@example.com"]


async def test_domain_unsubscribe_and_list_membership_are_independent(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com"})
    assert [m["subscribed"] for m in await members(http, server)] == [True]
    await call(http, "DELETE", member_url(server, "jane@example.com"))
    assert [r["address"] for r in (await unsubscribes(http, server))[DOMAIN]] == ["jane@example.com"]


async def test_reset_clears_unsubscribes_and_the_log_shows_each_change(http, server):
    await call(http, "POST", server.url + MEMBERS, data=JANE)
    await call(http, "PUT", member_url(server, "jane@example.com"), data={"subscribed": "no"})
    await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com"})
    await call(http, "DELETE", member_url(server, "jane@example.com"))
    await call(http, "DELETE", f"{server.url}{UNSUBSCRIBES}/jane@example.com")
    _, log = await call(http, "GET", server.url + "/_sandbox/log/jane@example.com", headers={})
    applied = log["applied"]
    assert [e["action"] for e in applied] == [
        "created",
        "updated",
        "unsubscribed",
        "deleted",
        "unsubscribe_removed",
    ]
    assert applied[1]["changes"] == {"subscribed": False} and applied[1]["details"] == {"list": LIST}
    assert applied[2]["details"] == {"domain": DOMAIN} and applied[2]["state"]["tags"] == ["*"]
    await call(http, "POST", server.url + UNSUBSCRIBES, data={"address": "jane@example.com"})
    async with http.post(server.url + "/_sandbox/reset") as resp:
        assert resp.status == 200
    assert await unsubscribes(http, server) == {DOMAIN: []}
