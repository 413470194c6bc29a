"""Sending one integration's batch: one bulk call, per-item outcomes, single-request fallback.

Coalesced groups are validated first (one bad Mailgun member would fail a synchronous bulk
call for everyone), a batch of one goes to the single endpoint, and a batch that fails as a
whole falls back to single requests so one bad contact cannot fail the others.
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
    """The ``send_batch`` a ``Batcher`` calls for ``integration``."""
    destination = destination_of(integration)
    fmt = destination.batch
    hints = dict(destination.hints)

    async def send_single(item: dict) -> DeliveryResult:  # type: ignore[type-arg]
        return await send_through_gate(sender, gate, integration, fmt.single_request(integration, item))

    async def send_batch(groups: list[Group]) -> list[DeliveryResult]:
        merged = [fmt.merge(group.items) for group in groups]
        results: list[DeliveryResult | None] = [None] * len(groups)
        sendable = []
        for index, item in enumerate(merged):
            problem = fmt.invalid(item)
            if problem is not None:
                results[index] = rejected(problem, hints.get(400))
            else:
                sendable.append(index)
        if len(sendable) == 1:
            results[sendable[0]] = await send_single(merged[sendable[0]])
        elif sendable:
            items = [merged[index] for index in sendable]
            whole = await send_through_gate(sender, gate, integration, fmt.batch_request(integration, items))
            if whole.status == "delivered":
                if fmt.item_results is None:
                    answers = [(whole.http_status or 200, None)] * len(items)
                else:
                    try:
                        reply = orjson.loads(whole.reply or b"null")
                    except orjson.JSONDecodeError:
                        reply = None
                    answers = fmt.item_results(reply, len(items))
                for index, (status, error) in zip(sendable, answers, strict=True):
                    results[index] = per_item(whole, status, error, hints)
            else:  # the call failed as a whole: try each contact on its own
                singles = await asyncio.gather(*(send_single(merged[index]) for index in sendable))
                for index, result in zip(sendable, singles, strict=True):
                    results[index] = result
        return [result for result in results if result is not None]

    return send_batch
