"""Finding a Mautic contact by email through ``GET /api/contacts``, with Mautic's quirks.

The worker needs a contact's id to withdraw consent when it has none stored. Mautic's list
call can give it, but ``search`` is a LIKE with wildcards and a parser that rewrites ``!``,
``where[..][expr]=eq`` HTML-encodes the value, and the total is cached for a few seconds
(with an empty page while a cached total is 0). These tests pin each of those.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from signal_sync.sandbox import RunningServer, mautic

pytestmark = pytest.mark.integration

USER, PASSWORD = "signal", "s3cret-pw"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}


@pytest.fixture
def start(serve) -> Callable[..., RunningServer]:
    defaults = {"username": USER, "password": PASSWORD, "count_cache_ttl_s": 0}
    return lambda **options: serve(mautic.create_app(**(defaults | options)))


async def create(http: aiohttp.ClientSession, server: RunningServer, **payload: Any) -> int:
    async with http.post(server.url + "/api/contacts/new", json=payload, headers=AUTH) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["contact"]["id"]


async def listing(http: aiohttp.ClientSession, server: RunningServer, **query: str) -> tuple[int, Any]:
    async with http.get(f"{server.url}/api/contacts?{urlencode(query)}", headers=AUTH) as resp:
        return resp.status, await resp.json()


def emails(body: dict[str, Any]) -> list[str]:
    return [c["fields"]["all"]["email"] for c in body["contacts"].values()]


def where_email(expr: str, value: str) -> dict[str, str]:
    return {"where[0][col]": "email", "where[0][expr]": expr, "where[0][val]": value}


async def test_strict_email_search_and_its_prefix_and_wildcard_matches(http, server):
    for email in ("jane@example.com", "jane@example.com.au", "a_b@example.com", "axb@example.com"):
        await create(http, server, email=email)
    _, body = await listing(http, server, search="email:+jane@example.com")
    assert emails(body) == ["jane@example.com"] and body["total"] == 1
    _, body = await listing(http, server, search="email:jane@example.com")
    assert sorted(emails(body)) == ["jane@example.com", "jane@example.com.au"]
    _, body = await listing(http, server, search="email:+A_B@EXAMPLE.COM")
    assert sorted(emails(body)) == ["a_b@example.com", "axb@example.com"]  # "_" is a LIKE wildcard


async def test_strict_search_of_an_address_with_a_bang_turns_into_a_negation(http, server):
    for email in ("ab!c@example.com", "b!c@example.com", "other@example.com"):
        await create(http, server, email=email)
    _, body = await listing(http, server, search="email:+ab!c@example.com")
    # Mautic drops "+a" and searches NOT LIKE "b!c@example.com"
    assert sorted(emails(body)) == ["ab!c@example.com", "other@example.com"]
    _, body = await listing(http, server, **where_email("in", "ab!c@example.com"))
    assert emails(body) == ["ab!c@example.com"]


async def test_where_in_is_exact_where_eq_misses_an_apostrophe(http, server):
    await create(http, server, email="o'brien@example.com")
    await create(http, server, email="obrien@example.com")
    _, body = await listing(http, server, **where_email("eq", "o'brien@example.com"))
    assert body == {"total": 0, "contacts": {}}
    _, body = await listing(http, server, **where_email("in", "O'Brien@Example.com"))
    assert emails(body) == ["o'brien@example.com"]
    _, body = await listing(http, server, **where_email("eq", "obrien@example.com"))
    assert emails(body) == ["obrien@example.com"]


async def test_minimal_leaves_out_tags_and_dnc(http, server):
    contact_id = await create(http, server, email="jane@example.com", tags=["vip"])
    _, full = await listing(http, server, search="email:+jane@example.com")
    _, minimal = await listing(http, server, search="email:+jane@example.com", minimal="1")
    assert {"tags", "doNotContact", "ipAddresses"} <= set(full["contacts"][str(contact_id)])
    assert set(minimal["contacts"][str(contact_id)]) == {
        "id",
        "isPublished",
        "dateAdded",
        "dateModified",
        "points",
        "fields",
    }
    _, not_minimal = await listing(http, server, search="email:+jane@example.com", minimal="0")
    assert "tags" in not_minimal["contacts"][str(contact_id)]


async def test_order_limit_and_refusals(http, server):
    for i, active in enumerate(["2026-01-01 00:00:00", None, "2026-03-01 00:00:00"]):
        await create(http, server, email=f"u{i}@example.com", **({"lastActive": active} if active else {}))
    _, body = await listing(http, server)
    assert emails(body) == ["u2@example.com", "u0@example.com", "u1@example.com"]  # last active first
    _, body = await listing(http, server, orderBy="id", orderByDir="desc", limit="2")
    assert emails(body) == ["u2@example.com", "u1@example.com"] and body["total"] == 3
    _, body = await listing(http, server, limit="0", start="2")
    assert len(body["contacts"]) == 3  # no limit at all, and then no start either
    for query in ({"search": "tag:vip"}, {"search": '"a b"'}, {"orderBy": "points"}, where_email("lt", "x")):
        status, body = await listing(http, server, **query)
        assert status == 400 and "not emulated" in body["errors"][0]["message"]


async def test_total_count_is_cached_and_a_cached_zero_hides_a_new_contact(http, start):
    server = start(count_cache_ttl_s=60.0)
    _, body = await listing(http, server, search="email:+late@example.com")
    assert body == {"total": 0, "contacts": {}}
    await create(http, server, email="late@example.com")
    _, body = await listing(http, server, search="email:+late@example.com")
    assert body == {"total": 0, "contacts": {}}  # the count of the same search is reused
    _, body = await listing(http, server, **where_email("in", "late@example.com"))
    assert emails(body) == ["late@example.com"]  # another filter is another cache entry


async def test_cached_count_expires(http, start):
    server = start(count_cache_ttl_s=0.2)
    _, body = await listing(http, server, search="email:+late@example.com")
    assert body["total"] == 0
    await create(http, server, email="late@example.com")
    deadline = time.monotonic() + 5
    while True:
        _, body = await listing(http, server, search="email:+late@example.com")
        if body["total"] == 1:
            break
        assert time.monotonic() < deadline, "the cached count never expired"
        await asyncio.sleep(0.05)
    assert emails(body) == ["late@example.com"]
