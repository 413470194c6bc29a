"""Mautic: contact upsert over ``POST {base_url}/api/contacts/new`` (seed 000).

Mautic merges on email, so every mapped event is the same upsert with different data.
Personal data goes in plaintext (it is the customer's own CRM); the visitor IP goes in
both ``ipAddress`` and ``X-Forwarded-For`` so Mautic's geo lookup sees the visitor, not us.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from signal_sync.config import MauticIntegration
from signal_sync.destinations.base import Request, first_text, text
from signal_sync.destinations.mautic_auth import static_headers
from signal_sync.identity import ResolvedEvent
from signal_sync.streams.records import usable_ip

NAME = "mautic"
CONTACT_UPSERT_PATH = "/api/contacts/new"
CONTACT_LIST_PATH = "/api/contacts"
MAPPED_EVENTS = frozenset({"page", "Identified", "Signed Up", "Lead Captured"})
CONSENT_TAG = "signal-marketing-consent"
LAST_ACTIVE_FORMAT = "%Y-%m-%d %H:%M:%S"

# Signal trait → Mautic field alias, in the order the seed's table lists them.
TRAIT_FIELDS = (
    ("first_name", "firstname"),
    ("last_name", "lastname"),
    ("phone", "phone"),
    ("company", "company"),
    ("city", "city"),
    ("state", "state"),
    ("postal_code", "zipcode"),
    ("country", "country"),
)
ADDRESS_TRAITS = frozenset({"city", "state", "postal_code", "country"})
UTM_FIELDS = (
    ("source", "utm_source"),
    ("medium", "utm_medium"),
    ("name", "utm_campaign"),
    ("content", "utm_content"),
    ("term", "utm_term"),
)

# The seed's troubleshooting table, by HTTP status.
HINTS = {
    401: "Basic Authentication is not enabled in Mautic, the credentials are wrong, or the API itself is "
    "disabled. Re-check Settings > Configuration > API Settings.",
    403: "The API user lacks permission to create/edit contacts. Adjust the user's role.",
    404: "base_url is wrong or has a trailing slash. It must be the bare instance root, "
    "e.g. https://mautic.example.com.",
}


def _trait(traits: dict[str, Any], key: str) -> str | None:
    value = text(traits.get(key))
    if value is None and key in ADDRESS_TRAITS and isinstance(traits.get("address"), dict):
        value = text(traits["address"].get(key))
    return value


def utm_parameters(resolved: ResolvedEvent) -> dict[str, str]:
    """UTM from ``context.campaign``; when it has none, from the page URL's ``utm_*`` query."""
    campaign = resolved.event.context.campaign
    found = {field: text(getattr(campaign, attr)) for attr, field in UTM_FIELDS}
    if not any(found.values()):
        url = resolved.event.context.page.url or text(resolved.event.properties.get("url"))
        query = parse_qs(_query_of(url)) if url else {}
        found = {field: text(query.get(field, [None])[0]) for _, field in UTM_FIELDS}
    return {field: value for field, value in found.items() if value}


def _query_of(url: str) -> str:
    """The URL's query; none for a URL ``urlsplit`` refuses (``http://[::1``: an unclosed IPv6 host)."""
    try:
        return urlsplit(url).query
    except ValueError:
        return ""


def contact_fields(resolved: ResolvedEvent) -> dict[str, Any]:
    """The flat Contact body; empty fields are omitted so they never blank stored data."""
    event, traits = resolved.event, resolved.traits
    body: dict[str, Any] = {"email": resolved.email}
    for trait, alias in TRAIT_FIELDS:
        value = _trait(traits, trait)
        if value is not None:
            body[alias] = value
    if event.context.ip:  # normalized at decode; an unusable IP is None there
        body["ipAddress"] = event.context.ip
    if event.timestamp is not None:  # UTC and within Mautic's DATETIME range since decode
        body["lastActive"] = event.timestamp.strftime(LAST_ACTIVE_FORMAT)
    body.update(utm_parameters(resolved))
    if resolved.name == "Signed Up" and (method := first_text(event.properties, "method")):
        body["signal_signup_method"] = method
    if resolved.name == "Lead Captured" and (source := first_text(event.properties, "lead_source", "source")):
        body["signal_lead_source"] = source
    marketing = event.context.consent.canonical.get("marketing")
    if marketing is not None:
        body["tags"] = [CONSENT_TAG if marketing else f"-{CONSENT_TAG}"]
    return body


def contact_body(resolved: ResolvedEvent, integration: MauticIntegration) -> dict[str, Any]:
    """The Contact body of an integration: the seed's fields (``contact_fields``) changed by its
    ``mapping`` and ``events`` blocks. A mapped value is sent as text, as every default field is
    (``text``: numbers and booleans as their text, objects, lists and blanks left out); a source
    that finds nothing leaves its field out. ``tags`` stays last."""
    body = contact_fields(resolved)
    mapping = integration.field_mapping
    if mapping.default:
        return body
    edits = mapping.edits_for(resolved.name)
    for edit in edits:
        value = text(edit.get(resolved)) if edit.get is not None else None
        if value is None:
            body.pop(edit.key, None)
        else:
            body[edit.key] = value
    if edits and "tags" in body:
        body["tags"] = body.pop("tags")
    return body


def build_request(resolved: ResolvedEvent, integration: MauticIntegration) -> Request:
    """The upsert request for an event that passed the gate."""
    return single_request(integration, contact_body(resolved, integration))


# --- batching: POST /api/contacts/batch/new ---------------------------------------------

CONTACT_BATCH_PATH = "/api/contacts/batch/new"
BATCH_MAX_ITEMS = 200  # Mautic's default api_batch_max_limit; more answers HTTP 500


def single_request(integration: MauticIntegration, body: dict[str, Any]) -> Request:
    """The one-contact upsert of a Contact body (one event's, or several merged); the visitor IP
    is also sent as ``X-Forwarded-For`` so Mautic's geo lookup sees the visitor, not us. Only an IP
    address in its normalized form goes into the header: nothing else a body holds can reach it."""
    headers = {
        **static_headers(integration),
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    ip = body.get("ipAddress")
    if isinstance(ip, str) and usable_ip(ip) == ip:
        headers["X-Forwarded-For"] = ip
    return Request(method="POST", url=integration.base_url + CONTACT_UPSERT_PATH, headers=headers, json=body)


def build_batch_request(integration: MauticIntegration, bodies: list[dict[str, Any]]) -> Request:
    """One batch upsert; visitor IPs travel in each body's ``ipAddress`` (a header cannot be per item)."""
    return Request(
        method="POST",
        url=integration.base_url + CONTACT_BATCH_PATH,
        headers={
            **static_headers(integration),
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        json=bodies,
        contacts=len(bodies),
    )


def _by_index(value: Any, count: int) -> list[Any]:
    """Mautic writes per-item arrays as lists or as objects keyed by index (PHP json_encode)."""
    if isinstance(value, list):
        return (value + [None] * count)[:count]
    if isinstance(value, dict):
        return [value.get(str(index)) for index in range(count)]
    return [None] * count


def _item_status(code: Any) -> int | None:
    """An item's status code as Mautic writes it (an int; a numeric string is read too)."""
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None


def _item_message(error: Any) -> str | None:
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message else None
    return str(error) if error else None


def batch_item_results(reply: Any, count: int) -> list[tuple[int | None, str | None]]:
    """Per item, from a batch answer (201 as a whole): its status code and error message as Mautic
    reports them in ``statusCodes`` and ``errors``; None where the answer has no readable one."""
    if not isinstance(reply, dict):
        return [(None, None)] * count
    codes = _by_index(reply.get("statusCodes"), count)
    errors = _by_index(reply.get("errors"), count)
    return [(_item_status(code), _item_message(error)) for code, error in zip(codes, errors, strict=True)]


def batch_item_contacts(reply: Any, count: int) -> list[dict[str, Any] | None]:
    """Per item, from a batch answer: the contact Mautic answered for it (``contacts[i]``, which
    carries its ``id``), None where there is none."""
    if not isinstance(reply, dict):
        return [None] * count
    return [item if isinstance(item, dict) else None for item in _by_index(reply.get("contacts"), count)]
