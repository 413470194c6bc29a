"""Mailgun: mailing-list member upsert over ``POST {base_url}/v3/lists/{list}/members`` (seed 001).

Mailgun *replaces* a member's ``vars`` when they are sent, so a page view that only
knows ``last_page_url`` would wipe ``plan``. ``member_entry`` therefore merges the new
vars into the contact's last known vars (kept by the caller per integration and contact);
the merged vars are the state to keep once the upsert succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from signal_sync.config import MailgunIntegration
from signal_sync.destinations.base import Request, basic_auth, first_text, text
from signal_sync.field_mapping import CompiledMapping
from signal_sync.identity import ResolvedEvent

NAME = "mailgun"
MAPPED_EVENTS = frozenset({"page", "Signed Up", "Identified", "Order Completed"})

# The seed's troubleshooting table, by HTTP status.
HINTS = {
    401: "Wrong key, wrong username, or wrong region: confirm the key is the Private key and the "
    "Base URL matches the key's region (US vs EU).",
    404: "List does not exist, or wrong Base URL: create the mailing list in Mailgun first; verify "
    "the Mailing List Address and region host.",
    400: "Missing or malformed email: ensure events carry $traits.email; anonymous events have no "
    "address to upsert.",
}


def members_path(list_address: str) -> str:
    """``/v3/lists/{list}/members`` with the list address kept readable (``@`` unescaped)."""
    return f"/v3/lists/{quote(list_address, safe='@')}/members"


def list_path(list_address: str) -> str:
    """``/v3/lists/{list}``, the harmless call test-connection makes."""
    return f"/v3/lists/{quote(list_address, safe='@')}"


def event_vars(resolved: ResolvedEvent) -> dict[str, Any]:
    """The custom variables this event sets, per the seed's event table."""
    event, traits, props = resolved.event, resolved.traits, resolved.event.properties
    found: dict[str, Any] = {}
    if resolved.name == "Identified":
        for key in ("first_name", "last_name", "plan", "company"):
            found[key] = text(traits.get(key))
    elif resolved.name == "page":
        found["last_page_url"] = event.context.page.url or text(props.get("url"))
    elif resolved.name == "Signed Up":
        found["signup_method"] = first_text(props, "method")
    elif resolved.name == "Order Completed":
        found["last_order_id"] = text(props.get("order_id"))
        revenue = props.get("revenue")
        found["last_order_revenue"] = revenue if isinstance(revenue, int | float) else text(revenue)
        found["last_order_currency"] = text(props.get("currency"))
    if event.anonymous_id:
        found["anonymous_id"] = event.anonymous_id
    return {key: value for key, value in found.items() if value is not None}


def member_name(traits: Mapping[str, Any]) -> str | None:
    """Trait ``name``, else first and last name joined."""
    name = text(traits.get("name"))
    if name:
        return name
    parts = [text(traits.get("first_name")), text(traits.get("last_name"))]
    return " ".join(p for p in parts if p) or None


def var_value(value: Any) -> Any:
    """A custom variable's value: numbers and booleans stay JSON values (as the revenue does),
    anything else is sent as text (``text``: objects, lists and blanks left out)."""
    return value if isinstance(value, int | float) else text(value)


def member_entry(
    resolved: ResolvedEvent, known_vars: Mapping[str, Any] | None, mapping: CompiledMapping | None = None
) -> dict[str, Any]:
    """The member an event upserts (a bulk call's entry): its vars merged into ``known_vars``.
    ``mapping`` (an integration's ``mapping`` and ``events`` blocks) changes ``name`` and this
    event's vars; a var it drops or finds nothing for keeps the value the member holds."""
    member: dict[str, Any] = {"address": resolved.email or ""}
    name = member_name(resolved.traits)
    found = event_vars(resolved)
    if mapping is not None and not mapping.default:
        for edit in mapping.edits_for(resolved.name):
            value = edit.get(resolved) if edit.get is not None else None
            if edit.field == "name":
                name = text(value)
            elif value is None:
                found.pop(edit.key, None)
            else:
                found[edit.key] = var_value(value)
    if name:
        member["name"] = name
    marketing = resolved.event.context.consent.canonical.get("marketing")
    if marketing is not None:
        member["subscribed"] = marketing
    member["vars"] = {**(known_vars or {}), **found}
    return member


def build_request(
    resolved: ResolvedEvent, integration: MailgunIntegration, known_vars: Mapping[str, Any] | None
) -> Request:
    """The member upsert for an event that passed the gate; ``state`` is the merged vars."""
    return single_request(integration, member_entry(resolved, known_vars, integration.field_mapping))


# --- batching: POST /v3/lists/{list}/members.json -------------------------------------

BATCH_MAX_ITEMS = 100  # more is processed asynchronously by Mailgun, with no per-member result


def members_json_path(list_address: str) -> str:
    """``/v3/lists/{list}/members.json``, the bulk upsert."""
    return members_path(list_address) + ".json"


def merge_members(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Several upserts of one member as one: later fields win (vars are already merged in order)."""
    merged: dict[str, Any] = {}
    for member in members:
        merged.update(member)
    return merged


def single_request(integration: MailgunIntegration, member: dict[str, Any]) -> Request:
    """The one-member upsert (form-encoded, ``upsert=true`` always) of one event's member entry or
    several merged; ``state`` is the vars the member holds once it succeeds."""
    form: dict[str, str] = {"address": member["address"]}
    if "name" in member:
        form["name"] = member["name"]
    if "subscribed" in member:
        form["subscribed"] = "true" if member["subscribed"] else "false"
    form["upsert"] = "true"
    form["vars"] = orjson.dumps(member.get("vars", {})).decode()
    return Request(
        method="POST",
        url=integration.base_url + members_path(integration.list_address),
        headers={
            "Authorization": basic_auth(*integration.credentials()),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        form=form,
        state=member.get("vars", {}),
    )


def build_batch_request(integration: MailgunIntegration, members: list[dict[str, Any]]) -> Request:
    """One bulk upsert of at most ``BATCH_MAX_ITEMS`` members (synchronous, order-safe)."""
    return Request(
        method="POST",
        url=integration.base_url + members_json_path(integration.list_address),
        headers={
            "Authorization": basic_auth(*integration.credentials()),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        form={"members": orjson.dumps(members).decode(), "upsert": "true"},
        contacts=len(members),
    )
