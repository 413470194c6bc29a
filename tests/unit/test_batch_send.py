"""Sending one batch: bulk calls within the destination's entry limit, in order, with fallback."""

from __future__ import annotations

from typing import Any

import orjson

from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import Group
from signal_sync.engine.gate import IntegrationGate
from tests.unit.factories import mautic

CONTACT_BATCH = "/api/contacts/batch/new"


class RecordingSender:
    """Answers like Mautic: a bulk call gets 201 with one status per item (or ``bulk_status``)."""

    def __init__(self, bulk_status: int = 201) -> None:
        self.bulk_status = bulk_status
        self.calls: list[tuple[str, list[str]]] = []

    async def deliver(self, integration: Any, request: Request) -> DeliveryResult:
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
