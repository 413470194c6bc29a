"""Destination registry: what the pipeline needs to know about each destination type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signal_sync.config import MailgunIntegration, MauticIntegration
from signal_sync.destinations import mailgun, mailgun_privacy, mautic, mautic_privacy, mautic_segments
from signal_sync.destinations.base import Request
from signal_sync.destinations.operations import State, Steps, Upsert
from signal_sync.identity import ResolvedEvent

Integration = MauticIntegration | MailgunIntegration


@dataclass(frozen=True, slots=True)
class BatchFormat:
    """How a destination batches: coalescing, requests, per-item answers."""

    max_items: int
    coalesce: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    """A contact's items in one batch → the entries to send for them, in order (one, or one each)."""
    single_request: Callable[[Any, dict[str, Any]], Request]
    batch_request: Callable[[Any, list[dict[str, Any]]], Request]
    item_results: Callable[[Any, int], list[tuple[int | None, str | None]]] | None
    """Per-item (status, error message) as the batch answer reports them, unread (None where an
    item has no readable status); ``classify`` decides what they mean. None: every item shares
    the call's status."""
    item_answers: Callable[[Any, int], list[Any]] | None = None
    """Per item, its own part of the batch answer (Mautic: the contact with its id), if any."""


@dataclass(frozen=True, slots=True)
class SegmentFormat:
    """How a destination adds a contact to its segments after a delivered upsert (Mautic)."""

    wanted: Callable[[Any, str | None], tuple[int, ...]]
    """(integration, event name) → the segment ids the event's upsert adds to, in order."""
    contact_of: Callable[[Any], int | None]
    """A delivered upsert's ``DeliveryResult`` → the contact id it answered, if any."""
    single_request: Callable[[Any, int, int], Request]
    """(integration, segment, contact) → the add of one contact."""
    bulk_request: Callable[[Any, int, list[int]], Request]
    """(integration, segment, contacts) → the add of several contacts in one call."""
    members_added: Callable[[bytes, list[int]], list[bool | None]]
    """A bulk add's answer → per contact sent, its flag unread (``classify_member`` decides)."""
    hint: Callable[[str | None, int], str | None]
    """(reason, segment) → what to do about a failed add; None: the status's own hint."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination type: its mapped events, hints, what its replies report, how it batches,
    and its operations on one contact with the contact's remembered state."""

    name: str
    mapped_events: frozenset[str]
    hints: Mapping[int, str]
    build: Callable[[ResolvedEvent, Any, Mapping[str, Any] | None], Request]
    """The single upsert request of an event (preview; the seeds' examples)."""
    reports_created: bool
    """Whether a 2xx tells a created record (201) from an updated one (200)."""
    batch: BatchFormat
    upsert: Callable[[ResolvedEvent, Any, State], Upsert]
    withdraw: Callable[[ResolvedEvent, Any, State], Steps]
    restore: Callable[[ResolvedEvent, Any, State], Steps]
    erase: Callable[[ResolvedEvent, Any, State], Steps]
    settle: Callable[[State, Any], State]
    """The state after a delivered upsert, read from its answer (``DeliveryResult``)."""
    load_state: Callable[[Any], State]
    """A stored ``destination-state`` value (None when there is none) as the operations read it."""
    dump_state: Callable[[State], Any]
    """What is stored for a state."""
    segments: SegmentFormat | None = None
    """How it adds contacts to segments; None: it has none."""


DESTINATIONS: dict[str, Destination] = {
    "mautic": Destination(
        name=mautic.NAME,
        mapped_events=mautic.MAPPED_EVENTS,
        hints=mautic.HINTS,
        build=lambda resolved, integration, _state: mautic.build_request(resolved, integration),
        reports_created=True,
        batch=BatchFormat(
            max_items=mautic.BATCH_MAX_ITEMS,
            coalesce=list,  # every request is recorded (visitor IP, tag changes): one item per event
            single_request=mautic.single_request,
            batch_request=mautic.build_batch_request,
            item_results=mautic.batch_item_results,
            item_answers=mautic.batch_item_contacts,
        ),
        upsert=mautic_privacy.upsert,
        withdraw=mautic_privacy.withdraw,
        restore=mautic_privacy.restore,
        erase=mautic_privacy.erase,
        settle=mautic_privacy.settle,
        load_state=mautic_privacy.load_state,
        dump_state=mautic_privacy.dump_state,
        segments=SegmentFormat(
            wanted=mautic_segments.wanted,
            contact_of=mautic_privacy.upserted_id,
            single_request=mautic_segments.single_add_request,
            bulk_request=mautic_segments.bulk_add_request,
            members_added=mautic_segments.members_added,
            hint=mautic_segments.hint,
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
            coalesce=lambda members: [mailgun.merge_members(members)],
            single_request=mailgun.single_request,
            batch_request=mailgun.build_batch_request,
            item_results=None,
        ),
        upsert=mailgun_privacy.upsert,
        withdraw=mailgun_privacy.withdraw,
        restore=mailgun_privacy.restore,
        erase=mailgun_privacy.erase,
        settle=mailgun_privacy.settle,
        load_state=mailgun_privacy.load_state,
        dump_state=mailgun_privacy.dump_state,
    ),
}


def destination_of(integration: Integration) -> Destination:
    """The destination an integration delivers to."""
    return DESTINATIONS[integration.type]
