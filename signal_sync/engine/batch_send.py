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


def make_send_batch(
    sender: Sender, gate: IntegrationGate, integration: Integration, max_entries: int
) -> SendBatch:
    """The ``send_batch`` a ``Batcher`` calls for ``integration``: one result per event of each group.

    A batch's entries go out in bulk calls of at most ``max_entries`` (the destination's limit:
    Mautic answers 500 above its ``api_batch_max_limit``), one call after the other, so a busy
    contact's many Mautic entries keep their order even when they span calls.
    """
    destination = destination_of(integration)
    fmt = destination.batch
    hints = dict(destination.hints)

    async def send_single(entry: dict) -> DeliveryResult:  # type: ignore[type-arg]
        return await send_through_gate(sender, gate, integration, fmt.single_request(integration, entry))

    async def send_alone(entries: list[dict]) -> list[DeliveryResult]:  # type: ignore[type-arg]
        return [await send_single(entry) for entry in entries]  # one contact: strictly in order

    async def send_bulk(entries: list[dict]) -> list[DeliveryResult]:  # type: ignore[type-arg]
        """One call for (contact-ordered) entries; one result per entry."""
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

    async def send_chunk(chunk: list[tuple[int, dict]]) -> list[DeliveryResult]:  # type: ignore[type-arg]
        """(group index, entry) pairs in order → one result each; a failed call falls back to single
        requests, each contact's in order, so one bad contact fails alone."""
        try:
            return await send_bulk([entry for _, entry in chunk])
        except _WholeBatchFailed:
            by_group: dict[int, list[dict]] = {}  # type: ignore[type-arg]
            for index, entry in chunk:
                by_group.setdefault(index, []).append(entry)
            alone = await asyncio.gather(*(send_alone(entries) for entries in by_group.values()))
            answers = {index: iter(results) for index, results in zip(by_group, alone, strict=True)}
            return [next(answers[index]) for index, _ in chunk]

    async def send_batch(groups: list[Group]) -> list[list[DeliveryResult]]:
        per_group = [fmt.coalesce(group.items) for group in groups]
        results: list[list[DeliveryResult]] = [[] for _ in groups]
        flat: list[tuple[int, dict]] = []  # type: ignore[type-arg]
        for index, entries in enumerate(per_group):
            problem = next((p for entry in entries if (p := fmt.invalid(entry)) is not None), None)
            if problem is not None:
                results[index] = [rejected(problem, hints.get(400))] * len(entries)
            else:
                flat.extend((index, entry) for entry in entries)
        for start in range(0, len(flat), max_entries):
            chunk = flat[start : start + max_entries]
            for (index, _), result in zip(chunk, await send_chunk(chunk), strict=True):
                results[index].append(result)
        return [spread(group, entries) for group, entries in zip(groups, results, strict=True)]

    return send_batch


class _WholeBatchFailed(Exception):
    """The bulk call itself failed (not per item): fall back to single requests."""


def spread(group: Group, results: list[DeliveryResult]) -> list[DeliveryResult]:
    """One result per event: entries map one to one, or one coalesced entry serves every event."""
    if len(results) == len(group.items):
        return results
    return results * len(group.items)
