"""The emulators' email rules over real HTTP: an address Mautic or Mailgun would refuse, or that
Mautic would silently rewrite into another contact, gets their 400, on the single call and inside
a batch, and is never applied."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from signal_sync.sandbox import RunningServer, mailgun, mautic, start_in_thread
from tests.support.emails import BOTH_ACCEPT, MAUTIC_ONLY_REFUSES, NOT_AN_ADDRESS

pytestmark = pytest.mark.integration

USER, PASSWORD, KEY = "signal", "pw", "key-1"
LIST = "newsletter@mg.example.com"
MAUTIC_AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
MAILGUN_AUTH = {"Authorization": aiohttp.encode_basic_auth("api", KEY)}


@pytest.fixture
def servers() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        start_in_thread(mautic.create_app(username=USER, password=PASSWORD)) as crm,
        start_in_thread(mailgun.create_app(api_key=KEY, lists=(LIST,))) as mg,
    ):
        yield crm, mg


@pytest.fixture
def http_timeout_s() -> float:
    return 10.0


async def call(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers, **kwargs) as reply:
        return reply.status, await reply.json(content_type=None)


async def mautic_single(http: aiohttp.ClientSession, crm: RunningServer, email: str) -> tuple[int, Any]:
    return await call(http, "POST", crm.url + "/api/contacts/new", MAUTIC_AUTH, json={"email": email})


async def mailgun_single(http: aiohttp.ClientSession, mg: RunningServer, address: str) -> tuple[int, Any]:
    url = f"{mg.url}/v3/lists/{LIST}/members"
    return await call(http, "POST", url, MAILGUN_AUTH, data={"address": address, "upsert": "yes"})


async def stored(http: aiohttp.ClientSession, crm: RunningServer, mg: RunningServer) -> tuple[int, int]:
    _, contacts = await call(http, "GET", crm.url + "/_sandbox/contacts", {})
    _, members = await call(http, "GET", mg.url + "/_sandbox/members", {})
    return len(contacts["contacts"]), len(members["members"][LIST])


@pytest.mark.parametrize("email", NOT_AN_ADDRESS + MAUTIC_ONLY_REFUSES)
async def test_mautic_refuses_an_address_it_would_not_store_as_given(http, servers, email):
    crm, mg = servers
    status, body = await mautic_single(http, crm, email)
    assert status == 400
    assert body["errors"][0]["details"] == {"email": ["A valid email is required."]}
    assert await stored(http, crm, mg) == (0, 0)


@pytest.mark.parametrize("address", NOT_AN_ADDRESS)
async def test_mailgun_refuses_an_address_it_cannot_read_as_given(http, servers, address):
    crm, mg = servers
    status, body = await mailgun_single(http, mg, address)
    assert status == 400 and "not a valid email address" in body["message"]
    assert await stored(http, crm, mg) == (0, 0)


@pytest.mark.parametrize("address", MAUTIC_ONLY_REFUSES)
async def test_mailgun_takes_what_only_mautic_refuses(http, servers, address):
    _, mg = servers
    status, _ = await mailgun_single(http, mg, address)
    assert status == 200


async def test_both_accept_plain_addresses(http, servers):
    crm, mg = servers
    for email in BOTH_ACCEPT:
        assert (await mautic_single(http, crm, email))[0] in (200, 201), email
        assert (await mailgun_single(http, mg, email))[0] == 200, email
    assert await stored(http, crm, mg) == (len(BOTH_ACCEPT) - 1, len(BOTH_ACCEPT) - 1)  # Jane twice


async def test_mautic_batch_refuses_each_bad_item_and_applies_the_others(http, servers):
    crm, mg = servers
    items = [{"email": "ok@example.com"}, *({"email": bad} for bad in NOT_AN_ADDRESS + MAUTIC_ONLY_REFUSES)]
    status, body = await call(http, "POST", crm.url + "/api/contacts/batch/new", MAUTIC_AUTH, json=items)
    assert status == 201
    assert body["statusCodes"] == [201] + [400] * (len(items) - 1)
    refused = {"email": ["A valid email is required."]}
    assert all(body["errors"][str(i)]["details"] == refused for i in range(1, len(items)))
    assert await stored(http, crm, mg) == (1, 0)


async def test_mailgun_bulk_with_one_bad_address_fails_whole_and_applies_nothing(http, servers):
    crm, mg = servers
    url = f"{mg.url}/v3/lists/{LIST}/members.json"
    for bad in NOT_AN_ADDRESS:
        members = orjson.dumps([{"address": "ok@example.com"}, {"address": bad}]).decode()
        status, body = await call(http, "POST", url, MAILGUN_AUTH, data={"members": members, "upsert": "yes"})
        assert status == 400 and body["message"].startswith("members[1]: "), bad
    assert await stored(http, crm, mg) == (0, 0)
