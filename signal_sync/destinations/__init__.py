"""Destination registry: what the pipeline needs to know about each destination type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signal_sync.config import MailgunIntegration, MauticIntegration
from signal_sync.destinations import mailgun, mautic
from signal_sync.destinations.base import Request
from signal_sync.identity import ResolvedEvent

Integration = MauticIntegration | MailgunIntegration


@dataclass(frozen=True, slots=True)
class BatchFormat:
    """How a destination batches: item shape, coalescing, requests, per-item answers."""

    max_items: int
    item_of: Callable[[Request], dict[str, Any]]
    coalesce: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    """A contact's items in one batch → the entries to send for them, in order (one, or one each)."""
    single_request: Callable[[Any, dict[str, Any]], Request]
    batch_request: Callable[[Any, list[dict[str, Any]]], Request]
    item_results: Callable[[Any, int], list[tuple[int | None, str | None]]] | None
    """Per-item (status, error message) as the batch answer reports them, unread (None where an
    item has no readable status); ``classify`` decides what they mean. None: every item shares
    the call's status."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination type: its mapped events, request builder, hints and what its replies report."""

    name: str
    mapped_events: frozenset[str]
    hints: Mapping[int, str]
    build: Callable[[ResolvedEvent, Any, Mapping[str, Any] | None], Request]
    reports_created: bool
    """Whether a 2xx tells a created record (201) from an updated one (200)."""
    batch: BatchFormat


DESTINATIONS: dict[str, Destination] = {
    "mautic": Destination(
        name=mautic.NAME,
        mapped_events=mautic.MAPPED_EVENTS,
        hints=mautic.HINTS,
        build=lambda resolved, integration, _state: mautic.build_request(resolved, integration),
        reports_created=True,
        batch=BatchFormat(
            max_items=mautic.BATCH_MAX_ITEMS,
            item_of=lambda request: dict(request.json or {}),  # type: ignore[arg-type]
            coalesce=list,  # every request is recorded (visitor IP, tag changes): one item per event
            single_request=mautic.single_request,
            batch_request=mautic.build_batch_request,
            item_results=mautic.batch_item_results,
        ),
    ),
    "mailgun": Destination(
        name=mailgun.NAME,
        mapped_events=mailgun.MAPPED_EVENTS,
        hints=mailgun.HINTS,
        build=mailgun.build_request,
        reports_created=False,
        batch=BatchFormat(
            max_items=mailgun.BATCH_MAX_ITEMS,
            item_of=mailgun.member_of,
            coalesce=lambda members: [mailgun.merge_members(members)],
            single_request=mailgun.single_request,
            batch_request=mailgun.build_batch_request,
            item_results=None,
        ),
    ),
}


def destination_of(integration: Integration) -> Destination:
    """The destination an integration delivers to."""
    return DESTINATIONS[integration.type]
