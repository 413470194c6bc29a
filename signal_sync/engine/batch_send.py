"""Sending one integration's batch: one bulk call, per-item outcomes, single-request fallback.

Each contact's events become its entries in the bulk call: Mailgun's coalesce into one member
(exact: vars are chained, the last name/subscription wins); Mautic's stay one item per event,
in order, because Mautic records every request's visitor IP and tag change. A batch of one
entry goes to the single endpoint. A bulk call that does not succeed as a whole (a Mailgun
member the destination refuses fails a synchronous bulk call for everyone) falls back to
single requests, each contact's in order, so one bad entry fails alone.

Inside a bulk call accepted as a whole, each item's own status goes through ``classify``:
delivered and per-event rejections are final; an item to retry, or one that signals an
integration fault, is sent again on its own through the gate (retries, pause, probing), and
after it, in order, every later item of the same contact in that call, so the contact ends in
its last event's state (re-sending an upsert that was already applied is harmless).

An exception while building or sending one entry's request becomes that entry's failed
result; it never reaches the entries beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from signal_sync.destinations import Destination, Integration, destination_of
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Verdict, classify_exception, classify_item
from signal_sync.destinations.delivery import DeliveryResult, Sender, exception_text, short_text
from signal_sync.engine.batcher import Group, SendBatch
from signal_sync.engine.gate import IntegrationGate, send_through_gate

log = logging.getLogger(__name__)

Entry = dict[str, Any]


def item_result(
    whole: DeliveryResult,
    status: int | None,
    message: str | None,
    destination: Destination,
    item: Any = None,
) -> DeliveryResult | None:
    """One item's result inside a bulk call the destination accepted as a whole (``item``: its own
    part of the answer); None when the item must be sent again on its own (to retry, or to let the
    gate see an integration fault)."""
    decision = classify_item(status, reports_created=destination.reports_created)
    if decision.verdict is Verdict.DELIVERED:  # ``whole`` with the item's own status, answer and ``created``
        return DeliveryResult(
            whole.status,
            status,
            decision.created,
            whole.attempts,
            whole.reason,
            whole.error,
            whole.hint,
            whole.fault,
            b"",
            whole.destination_down,
            whole.retry_after_s,
            item,
        )
    if decision.verdict is Verdict.FAILED:
        error = short_text(message or f"item answered {status}")
        hint = destination.hints.get(status) if status is not None else None
        return DeliveryResult("failed", status, None, whole.attempts, decision.reason, error, hint)
    return None


def exception_result(exc: Exception) -> DeliveryResult:
    """An entry whose request could not be built or sent: a failed result for it alone."""
    decision = classify_exception(exc)
    return DeliveryResult("failed", None, None, 0, decision.reason, exception_text(exc), None)


def log_failure(what: str, integration_id: str, exc: Exception) -> None:
    """Warn that ``what`` happened for the integration, naming the exception's type only: its text
    may quote the event (an email address)."""
    error_type = type(exc).__name__
    log.warning(
        "%s: integration=%s error_type=%s",
        what,
        integration_id,
        error_type,
        extra={"integration": integration_id, "error_type": error_type},
    )


def guarded_send(
    sender: Sender, gate: IntegrationGate, integration: Integration
) -> Callable[[Request], Awaitable[DeliveryResult]]:
    """Sends one request through the gate; an exception while sending it is its failed result."""

    async def send(request: Request) -> DeliveryResult:
        try:
            return await send_through_gate(sender, gate, integration, request)
        except Exception as exc:
            log_failure("request could not be sent", integration.id, exc)
            return exception_result(exc)

    return send


def make_send_batch(
    sender: Sender, gate: IntegrationGate, integration: Integration, max_entries: int
) -> SendBatch:
    """Sends groups of upsert entries (each contact's in order) for ``integration``: one result per
    entry of each group (``engine.jobs`` plans the entries and calls it for a batch's upserts).

    A batch's entries go out in bulk calls of at most ``max_entries`` (the destination's limit:
    Mautic answers 500 above its ``api_batch_max_limit``), one call after the other, so a busy
    contact's many Mautic entries keep their order even when they span calls.
    """
    destination = destination_of(integration)
    fmt = destination.batch

    async def send_single(entry: Entry) -> DeliveryResult:
        """One entry on its own, through the gate; never raises for this entry's own trouble."""
        try:
            return await send_through_gate(sender, gate, integration, fmt.single_request(integration, entry))
        except Exception as exc:
            log_failure("entry could not be sent", integration.id, exc)
            return exception_result(exc)

    async def send_in_order(entries: list[Entry]) -> list[DeliveryResult]:
        return [await send_single(entry) for entry in entries]  # one contact: strictly in order

    async def send_alone(chunk: list[tuple[int, Entry]], positions: list[int]) -> list[DeliveryResult]:
        """The entries at ``positions`` on their own: each contact's in order, contacts at once."""
        by_group: dict[int, list[int]] = {}
        for position in positions:
            by_group.setdefault(chunk[position][0], []).append(position)
        alone = await asyncio.gather(
            *(send_in_order([chunk[p][1] for p in group]) for group in by_group.values())
        )
        results: dict[int, DeliveryResult] = {}
        for group, group_results in zip(by_group.values(), alone, strict=True):
            results.update(zip(group, group_results, strict=True))
        return [results[position] for position in positions]

    async def send_bulk(chunk: list[tuple[int, Entry]]) -> list[DeliveryResult] | None:
        """One call for (contact-ordered) entries and one result per entry; None when the call did
        not succeed as a whole."""
        try:
            request = fmt.batch_request(integration, [entry for _, entry in chunk])
        except Exception as exc:
            log_failure("bulk request could not be built", integration.id, exc)
            return None
        whole = await send_through_gate(sender, gate, integration, request, hold=False)
        if whole.status != "delivered":
            return None
        if fmt.item_results is None:
            return [dataclasses.replace(whole, reply=b"")] * len(chunk)
        try:
            reply = orjson.loads(whole.reply or b"null")
        except orjson.JSONDecodeError:
            reply = None
        answers = fmt.item_results(reply, len(chunk))
        items = fmt.item_answers(reply, len(chunk)) if fmt.item_answers is not None else [None] * len(chunk)
        results = [
            item_result(whole, status, message, destination, item)
            for (status, message), item in zip(answers, items, strict=True)
        ]
        # A contact's first item to send again, and every later item of that contact, go again in order.
        again: list[int] = []
        resent_groups: set[int] = set()
        for position, ((group, _), result) in enumerate(zip(chunk, results, strict=True)):
            if result is None or group in resent_groups:
                resent_groups.add(group)
                again.append(position)
        for position, result in zip(again, await send_alone(chunk, again), strict=True):
            results[position] = dataclasses.replace(result, attempts=result.attempts + whole.attempts)
        return [result for result in results if result is not None]  # every None was sent again

    async def send_chunk(chunk: list[tuple[int, Entry]]) -> list[DeliveryResult]:
        """(group index, entry) pairs in order → one result each."""
        if len(chunk) == 1:
            return [await send_single(chunk[0][1])]
        results = await send_bulk(chunk)
        if results is None:
            results = await send_alone(chunk, list(range(len(chunk))))
        return results

    async def send_batch(groups: list[Group]) -> list[list[DeliveryResult]]:
        flat = [(index, entry) for index, group in enumerate(groups) for entry in fmt.coalesce(group.items)]
        results: list[list[DeliveryResult]] = [[] for _ in groups]
        for start in range(0, len(flat), max_entries):
            chunk = flat[start : start + max_entries]
            for (index, _), result in zip(chunk, await send_chunk(chunk), strict=True):
                results[index].append(result)
        return [spread(group, entries) for group, entries in zip(groups, results, strict=True)]

    return send_batch


def spread(group: Group, results: list[DeliveryResult]) -> list[DeliveryResult]:
    """One result per event: entries map one to one, or one coalesced entry serves every event."""
    if len(results) == len(group.items):
        return results
    return results * len(group.items)
