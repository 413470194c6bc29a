"""Sending one batch: bulk calls within the destination's entry limit, in order, with fallback, and
per-item answers (final, or sent again alone with the contact's later items)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signal_sync.destinations import DESTINATIONS
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.batch_send import item_result, make_send_batch
from signal_sync.engine.batcher import Group
from signal_sync.engine.gate import IntegrationGate
from tests.unit.factories import mautic

CONTACT_BATCH = "/api/contacts/batch/new"


class RecordingSender:
    """Answers like Mautic: a bulk call gets 201 with one status per item (or ``bulk_status``)."""

    def __init__(self, bulk_status: int = 201) -> None:
        self.bulk_status = bulk_status
        self.calls: list[tuple[str, list[str]]] = []

    async def deliver(self, integration: Any, request: Request, watch: Any = None) -> DeliveryResult:
        bodies = request.json if isinstance(request.json, list) else [request.json]
        kind = "bulk" if request.url.endswith(CONTACT_BATCH) else "single"
        self.calls.append((kind, [body["email"] + "#" + body["n"] for body in bodies]))
        if kind == "bulk" and self.bulk_status >= 300:
            return DeliveryResult("failed", self.bulk_status, None, 1, f"http_{self.bulk_status}", None, None)
        status = 201 if kind == "bulk" else 200
        reply = orjson.dumps({"statusCodes": [200] * len(bodies)}) if kind == "bulk" else b"{}"
        return DeliveryResult("delivered", status, None, 1, None, None, None, reply=reply)


def groups() -> list[Group]:
    busy = Group("a", items=[{"email": "a@x.io", "n": str(n)} for n in range(5)])
    other = Group("b", items=[{"email": "b@x.io", "n": str(n)} for n in range(2)])
    return [busy, other]


async def test_entries_go_out_in_order_in_calls_of_at_most_the_limit() -> None:
    sender = RecordingSender()
    send_batch = make_send_batch(sender, IntegrationGate("m"), mautic(), max_entries=3)  # type: ignore[arg-type]
    results = await send_batch(groups())
    assert sender.calls == [
        ("bulk", ["a@x.io#0", "a@x.io#1", "a@x.io#2"]),
        ("bulk", ["a@x.io#3", "a@x.io#4", "b@x.io#0"]),
        ("single", ["b@x.io#1"]),
    ]
    assert [len(r) for r in results] == [5, 2]
    assert all(r.status == "delivered" for group in results for r in group)


async def test_a_failed_call_falls_back_to_each_contacts_entries_alone_in_order() -> None:
    sender = RecordingSender(bulk_status=500)
    send_batch = make_send_batch(sender, IntegrationGate("m"), mautic(), max_entries=3)  # type: ignore[arg-type]
    results = await send_batch(groups())
    singles = [entries[0] for kind, entries in sender.calls if kind == "single"]
    assert [e for e in singles if e.startswith("a")] == [f"a@x.io#{n}" for n in range(5)]
    assert [e for e in singles if e.startswith("b")] == ["b@x.io#0", "b@x.io#1"]
    assert [len(r) for r in results] == [5, 2]
    assert all(r.status == "delivered" and r.http_status == 200 for group in results for r in group)


WHOLE = DeliveryResult("delivered", 201, True, 1, None, None, None, reply=b"{...}")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (201, ("delivered", 201, True, None)),
        (200, ("delivered", 200, False, None)),
        (400, ("failed", 400, None, "http_400")),
        (422, ("failed", 422, None, "http_422")),
    ],
)
def test_final_item_answers(status: int, expected: tuple) -> None:
    result = item_result(WHOLE, status, "email: jane@example.com is bad", DESTINATIONS["mautic"])
    assert result is not None
    assert (result.status, result.http_status, result.created, result.reason) == expected
    assert result.reply == b""
    if result.status == "failed":
        assert result.error == "email: <email> is bad" and result.attempts == 1


@pytest.mark.parametrize("status", [None, 408, 420, 425, 429, 500, 503, 401, 403, 404])
def test_items_to_retry_or_that_signal_a_fault_are_sent_again(status: int | None) -> None:
    assert item_result(WHOLE, status, None, DESTINATIONS["mautic"]) is None


RESEND = {None, 408, 420, 425, 429, 500, 503, 401, 403, 404}


class ItemSender:
    """Answers a bulk call 201 with each item's scripted status, and every single request 200."""

    def __init__(self, statuses: dict[str, int | None]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, list[str]]] = []

    async def deliver(self, integration: Any, request: Request, watch: Any = None) -> DeliveryResult:
        bodies = request.json if isinstance(request.json, list) else [request.json]
        marks = [body["email"] + "#" + body["n"] for body in bodies]
        if request.url.endswith(CONTACT_BATCH):
            self.calls.append(("bulk", marks))
            reply = orjson.dumps({"statusCodes": [self.statuses[mark] for mark in marks]})
            return DeliveryResult("delivered", 201, True, 1, None, None, None, reply=reply)
        self.calls.append(("single", marks))
        return DeliveryResult("delivered", 200, False, 1, None, None, None)


def expected_calls(flat: list[str], statuses: dict[str, int | None], max_entries: int) -> list[list[tuple]]:
    """Per chunk: its bulk call, then the entries sent again alone (a contact's first entry to send
    again and every later entry of that contact in the chunk)."""
    chunks = []
    for start in range(0, len(flat), max_entries):
        chunk = flat[start : start + max_entries]
        if len(chunk) == 1:
            chunks.append([("single", chunk)])
            continue
        again, resent = [], set()
        for mark in chunk:
            contact = mark.split("#")[0]
            if statuses[mark] in RESEND or contact in resent:
                resent.add(contact)
                again.append(("single", [mark]))
        chunks.append([("bulk", chunk), *again])
    return chunks


@settings(max_examples=60, deadline=None)
@given(
    contacts=st.lists(
        st.lists(st.sampled_from([200, 201, 400, 422, 429, 503, 401, None]), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    ),
    max_entries=st.integers(min_value=1, max_value=8),
)
def test_items_sent_again_keep_each_contacts_order_and_every_event_gets_one_result(
    contacts: list[list[int | None]], max_entries: int
) -> None:
    statuses = {
        f"c{c}@x.io#{n}": status for c, items in enumerate(contacts) for n, status in enumerate(items)
    }
    groups = [
        Group(f"c{c}", items=[{"email": f"c{c}@x.io", "n": str(n)} for n in range(len(items))])
        for c, items in enumerate(contacts)
    ]
    sender = ItemSender(statuses)

    async def run() -> list[list[DeliveryResult]]:
        send_batch = make_send_batch(sender, IntegrationGate("m"), mautic(), max_entries)  # type: ignore[arg-type]
        return await send_batch(groups)

    results = asyncio.run(run())
    flat = [mark for group in groups for mark in (g["email"] + "#" + g["n"] for g in group.items)]
    expected = expected_calls(flat, statuses, max_entries)
    calls = iter(sender.calls)
    for chunk in expected:
        got = [next(calls) for _ in chunk]
        assert got[0] == chunk[0]
        for contact in {mark.split("#")[0] for _, marks in chunk for mark in marks}:
            mine = [c for c in got[1:] if c[1][0].startswith(contact + "#")]
            assert mine == [c for c in chunk[1:] if c[1][0].startswith(contact + "#")], "contact order"
    assert next(calls, None) is None
    assert [len(r) for r in results] == [len(items) for items in contacts]
    sent_alone = {mark for chunk in expected for kind, marks in chunk if kind == "single" for mark in marks}
    for c, items in enumerate(contacts):
        for n, status in enumerate(items):
            result = results[c][n]
            if f"c{c}@x.io#{n}" in sent_alone:
                assert (result.status, result.http_status) == ("delivered", 200)
            elif status in (400, 422):
                assert (result.status, result.reason) == ("failed", f"http_{status}")
            else:
                assert (result.status, result.http_status) == ("delivered", status)
