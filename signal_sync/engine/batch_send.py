"""Sending one integration's batch: one bulk call, per-item outcomes, single-request fallback.

Each contact's events become its entries in the bulk call: Mailgun's coalesce into one member
(exact: vars are chained, the last name/subscription wins); Mautic's stay one item per event,
in order, because Mautic records every request's visitor IP and tag change. Entries are
validated first (one bad Mailgun member would fail a synchronous bulk call for everyone), a
batch of one entry goes to the single endpoint, and a batch that fails as a whole falls back
to single requests so one bad contact cannot fail the others.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson

from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.delivery import DeliveryResult, Sender
from signal_sync.engine.batcher import Group, SendBatch
from signal_sync.engine.gate import IntegrationGate, send_through_gate


def rejected(error: str, hint: str | None) -> DeliveryResult:
    """A group that is not sent because the destination would refuse it (as a 400 would)."""
    return DeliveryResult("failed", None, None, 0, "invalid_member", error, hint)


def per_item(whole: DeliveryResult, status: int, error: str | None, hints: dict[int, str]) -> DeliveryResult:
    """One item's result inside a batch the destination accepted as a whole."""
    if 200 <= status < 300:
        return dataclasses.replace(
            whole,
            http_status=status,
            created={201: True, 200: False}.get(status) if whole.created is not None else None,
            reply=b"",
        )
    return DeliveryResult("failed", status, None, whole.attempts, f"http_{status}", error, hints.get(status))


def make_send_batch(sender: Sender, gate: IntegrationGate, integration: Integration) -> SendBatch:
    """The ``send_batch`` a ``Batcher`` calls for ``integration``: one result per event of each group."""
    destination = destination_of(integration)
    fmt = destination.batch
    hints = dict(destination.hints)

    async def send_single(entry: dict) -> DeliveryResult:  # type: ignore[type-arg]
        return await send_through_gate(sender, gate, integration, fmt.single_request(integration, entry))

    async def send_group_alone(entries: list[dict]) -> list[DeliveryResult]:  # type: ignore[type-arg]
        return [await send_single(entry) for entry in entries]  # one contact: strictly in order

    async def send_entries(entries: list[dict]) -> list[DeliveryResult]:  # type: ignore[type-arg]
        """Send every (contact-ordered) entry; one result per entry."""
        if len(entries) == 1:
            return [await send_single(entries[0])]
        whole = await send_through_gate(sender, gate, integration, fmt.batch_request(integration, entries))
        if whole.status != "delivered":
            raise _WholeBatchFailed
        if fmt.item_results is None:
            answers = [(whole.http_status or 200, None)] * len(entries)
        else:
            try:
                reply = orjson.loads(whole.reply or b"null")
            except orjson.JSONDecodeError:
                reply = None
            answers = fmt.item_results(reply, len(entries))
        return [per_item(whole, status, error, hints) for status, error in answers]

    async def send_batch(groups: list[Group]) -> list[list[DeliveryResult]]:
        per_group = [fmt.coalesce(group.items) for group in groups]
        results: list[list[DeliveryResult]] = [[] for _ in groups]
        sendable: list[int] = []
        for index, entries in enumerate(per_group):
            problem = next((p for entry in entries if (p := fmt.invalid(entry)) is not None), None)
            if problem is not None:
                results[index] = [rejected(problem, hints.get(400))] * len(entries)
            else:
                sendable.append(index)
        flat = [entry for index in sendable for entry in per_group[index]]
        if flat:
            try:
                answers = iter(await send_entries(flat))
                for index in sendable:
                    results[index] = [next(answers) for _ in per_group[index]]
            except _WholeBatchFailed:  # try each contact on its own, so one bad contact fails alone
                alone = await asyncio.gather(*(send_group_alone(per_group[index]) for index in sendable))
                for index, group_results in zip(sendable, alone, strict=True):
                    results[index] = group_results
        return [spread(group, entries) for group, entries in zip(groups, results, strict=True)]

    return send_batch


class _WholeBatchFailed(Exception):
    """The bulk call itself failed (not per item): fall back to single requests."""


def spread(group: Group, results: list[DeliveryResult]) -> list[DeliveryResult]:
    """One result per event: entries map one to one, or one coalesced entry serves every event."""
    if len(results) == len(group.items):
        return results
    return results * len(group.items)
