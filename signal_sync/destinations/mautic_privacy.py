"""Mautic: the contact's state, and consent withdrawal and re-grant as pure steps.

State per contact (``destination-state`` table): ``{"id": N}``, the contact id Mautic answered
the last upsert with (a single call's ``contact.id``, a batch item's ``contacts[i].id``); after
a withdrawal also ``"withdrawn": true`` and ``"dnc": {"<contact id>": <entry id>}``, the
do-not-contact entries signal-sync itself created.

A withdrawal sends only what honours it (docs/design.md, Privacy; the API facts are in
docs/destinations-api.md):

1. which contacts: the kept id; without one, or when Mautic answers that id with ``Item was not
   found.``, the exact lookup ``where[0][col]=email&where[0][expr]=in&where[0][val]=<address>``
   (never ``search=email:``, a LIKE that matches other addresses, and never ``total``, cached for
   5 s), keeping the contacts whose email equals the address (case-insensitive). Mautic's email
   is not a unique key, so every exact match is withdrawn. None: ``dropped`` / ``consent_denied``,
   and nothing is created;
2. ``PATCH /api/contacts/{id}/edit`` with ``{"tags": ["-signal-marketing-consent"]}`` (never PUT,
   which creates a contact for an unknown id and blanks the fields it is not sent);
3. ``POST /api/contacts/{id}/dnc/email/add`` with reason 1 (unsubscribed) and ``DNC_COMMENT``,
   only when the contact, as the edit answered it, has no email entry: an add rewrites a bounce or
   an admin's entry in place, which would then read as ours. The entry the add creates is ours and
   its id is kept. An entry with reason 1 and ``DNC_COMMENT`` is ours too (an earlier try of the
   same withdrawal that ended before its state was written).

A re-grant is the normal upsert, then, for each contact with an entry of ours, a read of the
contact and ``…/dnc/email/remove`` only when its first email entry is still ours (same id,
reason 1): the remove deletes the channel's first entry whatever its reason, so a bounce or the
person's own unsubscribe is never removed. Between that read and the remove another entry could
appear; Mautic offers no conditional remove.

An erasure deletes every contact of the person: ``DELETE /api/contacts/{id}/delete`` for the
kept id and the contacts of the do-not-contact entries kept, then for every exact match of the
lookup (Mautic's email is not a unique key, and a contact may have been made outside
signal-sync). ``Item was not found.`` is a contact already gone: done. Deleting removes the
contact's do-not-contact entries with it (cascade). The state is forgotten.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from signal_sync.config import MauticIntegration
from signal_sync.destinations.base import Request
from signal_sync.destinations.mautic import CONSENT_TAG, CONTACT_LIST_PATH, contact_body, single_request
from signal_sync.destinations.mautic_auth import static_headers
from signal_sync.destinations.operations import Finish, State, Steps, Upsert
from signal_sync.identity import ResolvedEvent

DNC_CHANNEL = "email"
DNC_UNSUBSCRIBED = 1
DNC_COMMENT = "signal-sync: marketing consent withdrawn"
"""Letters, digits, spaces and ``-:`` only: Mautic's input cleaning keeps it exactly as sent."""
NOT_FOUND_MESSAGE = "Item was not found."
"""Mautic's answer for a contact id it does not have (``mautic.core.error.notfound``)."""


def contact_path(contact: int | str) -> str:
    return f"{CONTACT_LIST_PATH}/{contact}"


def _headers(integration: MauticIntegration, *, body: bool) -> dict[str, str]:
    headers = {**static_headers(integration), "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def contact_missing(body: bytes) -> bool:
    """Whether a 404's body is Mautic's answer for an unknown contact id, rather than a path it has
    no route for (``Requested URL not found``) or an HTML page (a base URL with a path)."""
    data = _json(body)
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return False
    return errors[0].get("message") == NOT_FOUND_MESSAGE


def lookup_request(integration: MauticIntegration, email: str) -> Request:
    """Every contact whose email is exactly ``email`` (case-insensitive), with its DNC entries."""
    query = urlencode(
        [("where[0][col]", "email"), ("where[0][expr]", "in"), ("where[0][val]", email), ("limit", "0")]
    )
    return Request(
        "GET", f"{integration.base_url}{CONTACT_LIST_PATH}?{query}", _headers(integration, body=False)
    )


def contact_request(integration: MauticIntegration, contact: int | str) -> Request:
    return Request(
        "GET",
        integration.base_url + contact_path(contact),
        _headers(integration, body=False),
        absent=contact_missing,
    )


def withdraw_tag_request(integration: MauticIntegration, contact: int | str) -> Request:
    """The consent tag removed; PATCH changes only what it is sent and never creates a contact."""
    return Request(
        "PATCH",
        integration.base_url + contact_path(contact) + "/edit",
        _headers(integration, body=True),
        json={"tags": [f"-{CONSENT_TAG}"]},
        absent=contact_missing,
    )


def dnc_add_request(integration: MauticIntegration, contact: int | str) -> Request:
    return Request(
        "POST",
        integration.base_url + contact_path(contact) + f"/dnc/{DNC_CHANNEL}/add",
        _headers(integration, body=True),
        json={"reason": DNC_UNSUBSCRIBED, "comments": DNC_COMMENT},
        absent=contact_missing,
    )


def delete_request(integration: MauticIntegration, contact: int | str) -> Request:
    """The contact deleted; ``Item was not found.`` (already gone) is an answer, not a fault."""
    return Request(
        "DELETE",
        integration.base_url + contact_path(contact) + "/delete",
        _headers(integration, body=False),
        absent=contact_missing,
    )


def dnc_remove_request(integration: MauticIntegration, contact: int | str) -> Request:
    return Request(
        "POST",
        integration.base_url + contact_path(contact) + f"/dnc/{DNC_CHANNEL}/remove",
        _headers(integration, body=False),
        absent=contact_missing,
    )


# --- reading answers ------------------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _id(value: Any) -> int | None:
    """A contact or entry id as Mautic writes it (an int; a digit string is read too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def answered_contact(body: bytes) -> dict[str, Any] | None:
    """The ``contact`` of a single-contact answer (upsert, get, edit, DNC), if it has an id."""
    data = _json(body)
    contact = data.get("contact") if isinstance(data, dict) else None
    return contact if isinstance(contact, dict) and _id(contact.get("id")) is not None else None


def _values(value: Any) -> list[Any]:
    """A PHP array as JSON: a list, or an object keyed by index or id."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return []


def channel_entries(contact: dict[str, Any]) -> list[dict[str, Any]]:
    """The contact's do-not-contact entries on the email channel, in Mautic's order."""
    return [
        entry
        for entry in _values(contact.get("doNotContact"))
        if isinstance(entry, dict) and entry.get("channel") == DNC_CHANNEL
    ]


def blocking_entries(contact: dict[str, Any]) -> list[dict[str, Any]]:
    """Email entries that make the contact not contactable (any reason but 0)."""
    return [entry for entry in channel_entries(contact) if entry.get("reason") not in (0, "0", None)]


def is_ours(entry: dict[str, Any]) -> bool:
    """An unsubscribed entry with signal-sync's comment: one a withdrawal of ours created."""
    return _id(entry.get("reason")) == DNC_UNSUBSCRIBED and entry.get("comments") == DNC_COMMENT


def exact_matches(body: bytes, email: str) -> list[dict[str, Any]]:
    """The contacts of a list answer whose email equals ``email`` (case-insensitive), by id."""
    data = _json(body)
    contacts = _values(data.get("contacts")) if isinstance(data, dict) else []
    found = []
    for contact in contacts:
        if not isinstance(contact, dict) or _id(contact.get("id")) is None:
            continue
        fields = contact.get("fields")
        every = fields.get("all") if isinstance(fields, dict) else None
        address = every.get("email") if isinstance(every, dict) else None
        if isinstance(address, str) and address.strip().lower() == email:
            found.append(contact)
    return sorted(found, key=lambda contact: _id(contact["id"]) or 0)


# --- state ------------------------------------------------------------------------------------


def load_state(stored: Any) -> State:
    return dict(stored) if isinstance(stored, dict) else {}


def dump_state(state: State) -> Any:
    return state


def upserted_id(result: Any) -> int | None:
    """The contact id a delivered upsert answered (a batch item's ``contacts[i]``, else a single
    call's ``contact``), None when the answer has none."""
    item = getattr(result, "item", None)
    contact = item if isinstance(item, dict) else answered_contact(getattr(result, "reply", b""))
    return _id(contact.get("id")) if contact is not None else None


def settle(state: State, result: Any) -> State:
    """The state after a delivered upsert: the contact id from its answer (``upserted_id``), when
    it has one."""
    found = upserted_id(result)
    if found is None or state.get("id") == found:
        return state
    return {**state, "id": found}


# --- operations -----------------------------------------------------------------------------


def upsert(resolved: ResolvedEvent, integration: MauticIntegration, state: State) -> Upsert:
    return Upsert(contact_body(resolved, integration), state)


def withdraw(resolved: ResolvedEvent, integration: MauticIntegration, state: State) -> Steps:
    """Consent tag off and do-not-contact on email, on every contact Mautic has for the address."""
    email = resolved.email or ""
    edited: list[dict[str, Any]] = []
    known = _id(state.get("id"))
    if known is not None:
        answer = yield withdraw_tag_request(integration, known)
        contact = answered_contact(answer.reply) if answer.status == "delivered" else None
        if contact is not None:
            edited.append(contact)
    if not edited:
        found = yield lookup_request(integration, email)
        for match in exact_matches(found.reply, email):
            answer = yield withdraw_tag_request(integration, match["id"])
            contact = answered_contact(answer.reply) if answer.status == "delivered" else None
            if contact is not None:
                edited.append(contact)
    if not edited:  # unknown to Mautic: nothing to withdraw, and nothing is created
        forgotten = {key: value for key, value in state.items() if key not in ("id", "dnc")}
        return Finish("dropped", "consent_denied", state={**forgotten, "withdrawn": True})
    ours: dict[str, int] = {}
    for contact in edited:
        contact_id = _id(contact["id"])
        assert contact_id is not None
        blocking = blocking_entries(contact)
        if blocking:
            if is_ours(blocking[0]) and (entry_id := _id(blocking[0].get("id"))) is not None:
                ours[str(contact_id)] = entry_id
            continue
        before = {_id(entry.get("id")) for entry in channel_entries(contact)}
        answer = yield dnc_add_request(integration, contact_id)
        added = answered_contact(answer.reply) if answer.status == "delivered" else None
        for entry in blocking_entries(added or {}):  # an entry that appeared since the edit stays theirs
            entry_id = _id(entry.get("id"))
            if entry_id is not None and entry_id not in before and is_ours(entry):
                ours[str(contact_id)] = entry_id
                break
    withdrawn: State = {"id": _id(edited[0]["id"]), "withdrawn": True}
    if ours:
        withdrawn["dnc"] = ours
    return Finish("delivered", state=withdrawn)


def restore(resolved: ResolvedEvent, integration: MauticIntegration, state: State) -> Steps:
    """The upsert of the re-granting event, then the do-not-contact entries of ours removed where
    they are still the contact's first email entry."""
    answer = yield single_request(integration, contact_body(resolved, integration))
    restored = settle({key: value for key, value in state.items() if key == "id"}, answer)
    for key, entry_id in dict(state.get("dnc") or {}).items():
        read = yield contact_request(integration, key)
        contact = answered_contact(read.reply) if read.status == "delivered" else None
        entries = channel_entries(contact) if contact is not None else []
        if entries and _id(entries[0].get("id")) == entry_id and is_ours(entries[0]):
            assert contact is not None
            yield dnc_remove_request(integration, contact["id"])
    return Finish("delivered", state=restored, shown=answer)


def erase(resolved: ResolvedEvent, integration: MauticIntegration, state: State) -> Steps:
    """Every contact Mautic has for the person deleted: the ids kept, then each exact match."""
    email = resolved.email or ""
    deleted: set[int] = set()
    known = [_id(state.get("id")), *(_id(key) for key in dict(state.get("dnc") or {}))]
    for contact_id in dict.fromkeys(found for found in known if found is not None):
        yield delete_request(integration, contact_id)  # delivered or absent: gone either way
        deleted.add(contact_id)
    found = yield lookup_request(integration, email)
    for match in exact_matches(found.reply, email):
        contact_id = _id(match["id"])
        if contact_id is not None and contact_id not in deleted:
            yield delete_request(integration, contact_id)
            deleted.add(contact_id)
    return Finish("delivered", forget=True)
