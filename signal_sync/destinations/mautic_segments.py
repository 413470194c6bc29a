"""Mautic segments: which segments an event adds its contact to, and the segment calls, pure.

A Mautic integration's ``segments`` block (``{<event name or "*">: <segment id>}``) adds the
contact of every delivered upsert of that event to the segment, with the contact id the upsert
answered. The calls (docs/destinations-api.md, "Mautic segments"):

* ``POST /api/segments/{id}/contact/{contactId}/add``: one contact; ``200 {"success": 1}``;
* ``POST /api/segments/{id}/contacts/add`` with ``{"ids": [...]}``: several contacts of one batch;
  ``200 {"success": 1, "details": {"<contact id>": {"success": true|false}}}``, ``false`` for a
  contact deleted since its upsert or one the API user may not edit;
* ``GET /api/segments/{id}``: ``{"list": {..., "isPublished": ...}}``, the start and
  ``test-connection`` check.

A segment call's 403 or 404 names what it is about in its body: ``Item was not found.`` is the
segment, ``Contact not found.`` the contact, ``You do not have access to the requested
area/action.`` an unpublished segment (or a user who may not edit the contact). ``refusal`` reads
that text into the event's reason; ``classify`` decides what the status means.
"""

from __future__ import annotations

import orjson

from signal_sync.config import MauticIntegration
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import MEMBER_REFUSED
from signal_sync.destinations.mautic_auth import static_headers

SEGMENT_PATH = "/api/segments/{segment}"
SINGLE_ADD_PATH = "/api/segments/{segment}/contact/{contact}/add"
BULK_ADD_PATH = "/api/segments/{segment}/contacts/add"

SEGMENT_NOT_FOUND = "segment_not_found"
SEGMENT_FORBIDDEN = "segment_forbidden"
SEGMENT_CONTACT_NOT_FOUND = "segment_contact_not_found"
SEGMENT_ADD_REFUSED = MEMBER_REFUSED
SEGMENT_NO_CONTACT_ID = "segment_no_contact_id"
REASONS = frozenset(
    {
        SEGMENT_NOT_FOUND,
        SEGMENT_FORBIDDEN,
        SEGMENT_CONTACT_NOT_FOUND,
        SEGMENT_ADD_REFUSED,
        SEGMENT_NO_CONTACT_ID,
    }
)
"""The outcome reasons of a failed segment add."""

_REFUSALS = {
    "Item was not found.": SEGMENT_NOT_FOUND,
    "Contact not found.": SEGMENT_CONTACT_NOT_FOUND,
    "You do not have access to the requested area/action.": SEGMENT_FORBIDDEN,
}
"""Mautic's error messages on a segment call, by the event's reason they stand for."""


def wanted(integration: MauticIntegration, event: str | None) -> tuple[int, ...]:
    """The segments an upsert of ``event`` adds its contact to (none for most configs)."""
    return integration.segment_plan.get(event or "", ())


def _headers(integration: MauticIntegration, *, body: bool) -> dict[str, str]:
    headers = {**static_headers(integration), "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def _error_message(body: bytes) -> str | None:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    message = errors[0].get("message")
    return message if isinstance(message, str) else None


def refusal(body: bytes) -> str | None:
    """The event's reason when a segment call's answer names the segment or the contact as missing
    or out of reach; None for any other body (a route Mautic does not have, an HTML page)."""
    message = _error_message(body)
    return _REFUSALS.get(message) if message is not None else None


def single_add_request(integration: MauticIntegration, segment: int, contact: int) -> Request:
    path = SINGLE_ADD_PATH.format(segment=segment, contact=contact)
    return Request("POST", integration.base_url + path, _headers(integration, body=False), refused=refusal)


def bulk_add_request(integration: MauticIntegration, segment: int, contacts: list[int]) -> Request:
    return Request(
        "POST",
        integration.base_url + BULK_ADD_PATH.format(segment=segment),
        _headers(integration, body=True),
        json={"ids": contacts},
        refused=refusal,
    )


def segment_request(integration: MauticIntegration, segment: int) -> Request:
    """The segment itself (exists, ``isPublished``): a read, for the start and test-connection check."""
    return Request(
        "GET",
        integration.base_url + SEGMENT_PATH.format(segment=segment),
        _headers(integration, body=False),
        refused=refusal,
    )


def members_added(reply: bytes, contacts: list[int]) -> list[bool | None]:
    """Per contact id sent in a bulk add, its ``details`` entry's ``success`` as Mautic wrote it;
    None where the answer has no readable entry for the id."""
    try:
        data = orjson.loads(reply) if reply else None
    except orjson.JSONDecodeError:
        data = None
    details = data.get("details") if isinstance(data, dict) else None
    if not isinstance(details, dict):
        return [None] * len(contacts)
    found: list[bool | None] = []
    for contact in contacts:
        entry = details.get(str(contact))
        success = entry.get("success") if isinstance(entry, dict) else None
        found.append(success if isinstance(success, bool) else None)
    return found


def published(reply: bytes) -> bool | None:
    """``isPublished`` of a ``GET /api/segments/{id}`` answer; None when it does not say."""
    try:
        data = orjson.loads(reply) if reply else None
    except orjson.JSONDecodeError:
        return None
    segment = data.get("list") if isinstance(data, dict) else None
    value = segment.get("isPublished") if isinstance(segment, dict) else None
    return value if isinstance(value, bool) else None


def hint(reason: str | None, segment: int) -> str | None:
    """What to do about a segment add that failed for ``reason``; None: the status's own hint."""
    if reason == SEGMENT_NOT_FOUND:
        return (
            f"Mautic has no segment {segment} (deleted, or a wrong id): create it or correct the "
            "integration's segments config, then replay the dead letters."
        )
    if reason == SEGMENT_FORBIDDEN:
        return (
            f"Mautic refused segment {segment}: it is unpublished, or the API user may not edit "
            "contacts. Publish the segment (or fix the role, or the segments config), then replay "
            "the dead letters."
        )
    if reason in (SEGMENT_CONTACT_NOT_FOUND, SEGMENT_ADD_REFUSED):
        return (
            f"Mautic did not add the contact to segment {segment}: the contact was deleted since its "
            "upsert, or the API user may not edit it. Replaying the dead letter upserts it again."
        )
    if reason == SEGMENT_NO_CONTACT_ID:
        return f"The upsert's answer carried no contact id, so nothing was added to segment {segment}."
    return None
