"""Mailgun: the member's state, and consent withdrawal and re-grant as pure steps.

State per contact (``destination-state`` table): the merged ``vars`` the member holds. A contact
with nothing else to remember is stored as the vars object itself (the form every stored value
had before withdrawals existed, so those read back unchanged); one that withdrew is stored as
``{"vars": {...}, "withdrawn": true}``, plus ``"unsubscribed": "<domain>"`` when signal-sync put
the address on that domain's unsubscribe list. A vars object never has a ``vars`` key (its keys
are the seed's variables), so the two forms cannot be confused.

A withdrawal sends only what honours it (docs/design.md, Privacy; the API facts are in
docs/destinations-api.md):

1. ``PUT /v3/lists/{list}/members/{address}`` with the form ``subscribed=no`` and nothing else:
   an update never creates a member. A 404 means "not a member" only if the list exists (the
   wording is not documented), so ``GET /v3/lists/{list}`` decides: 200 → ``dropped`` /
   ``consent_denied``, nothing created; its own 404 is a fault (the list is gone), which pauses
   the integration;
2. with ``unsubscribe_domain``: ``GET /v3/{domain}/unsubscribes/{address}``, and only when the
   address is not there, ``POST /v3/{domain}/unsubscribes`` (``address``, ``tag=*``); the domain
   is remembered, so the re-grant removes only an unsubscribe that signal-sync added. One already
   there (the person's own, a complaint, an admin's) is left alone, now and at the re-grant.

A re-grant is the normal member upsert (``subscribed`` from the event), then
``DELETE /v3/{domain}/unsubscribes/{address}`` for the domain remembered.

An erasure is ``DELETE /v3/lists/{list}/members/{address}``: a 404 is "already gone" once
``GET /v3/lists/{list}`` says the list exists (a 404 there is a fault, as for a withdrawal). A
domain unsubscribe stays: that list exists to stop sending to the address. The state is forgotten.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from signal_sync.config import MailgunIntegration
from signal_sync.destinations.base import Request, basic_auth
from signal_sync.destinations.mailgun import list_path, member_entry, members_path, single_request
from signal_sync.destinations.operations import Finish, State, Steps, Upsert
from signal_sync.identity import ResolvedEvent

ALL_TAGS = "*"
STATE_KEYS = frozenset({"vars", "withdrawn", "unsubscribed"})
DOMAIN_NOT_FOUND = "Domain not found"


def address_path(address: str) -> str:
    """An address as one path segment, percent-encoded as Mailgun's SDKs do (``+`` as ``%2B``)."""
    return quote(address, safe="@")


def unsubscribes_path(domain: str) -> str:
    return f"/v3/{quote(domain, safe='')}/unsubscribes"


def _headers(integration: MailgunIntegration, *, form: bool) -> dict[str, str]:
    headers = {"Authorization": basic_auth(*integration.credentials())}
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return headers


def _message(body: bytes) -> str | None:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None


def member_missing(body: bytes) -> bool:
    """A 404 with Mailgun's JSON message: the member, or the list (``GET`` of the list decides)."""
    return _message(body) is not None


def unsubscribe_missing(body: bytes) -> bool:
    """A 404 for an address not on the list, as opposed to ``Domain not found`` (a fault)."""
    message = _message(body)
    return message is not None and not message.startswith(DOMAIN_NOT_FOUND)


def withdraw_member_request(integration: MailgunIntegration, address: str) -> Request:
    """``subscribed=no`` on an existing member, nothing else (``subscribed`` is always sent: the
    current reference says it defaults to true)."""
    return Request(
        "PUT",
        f"{integration.base_url}{members_path(integration.list_address)}/{address_path(address)}",
        _headers(integration, form=True),
        form={"subscribed": "no"},
        absent=member_missing,
    )


def delete_member_request(integration: MailgunIntegration, address: str) -> Request:
    """The member removed from the list; a 404 with Mailgun's message: not a member (or no list)."""
    return Request(
        "DELETE",
        f"{integration.base_url}{members_path(integration.list_address)}/{address_path(address)}",
        _headers(integration, form=False),
        absent=member_missing,
    )


def list_request(integration: MailgunIntegration) -> Request:
    return Request(
        "GET", integration.base_url + list_path(integration.list_address), _headers(integration, form=False)
    )


def unsubscribe_lookup_request(integration: MailgunIntegration, domain: str, address: str) -> Request:
    return Request(
        "GET",
        f"{integration.base_url}{unsubscribes_path(domain)}/{address_path(address)}",
        _headers(integration, form=False),
        absent=unsubscribe_missing,
    )


def unsubscribe_add_request(integration: MailgunIntegration, domain: str, address: str) -> Request:
    return Request(
        "POST",
        integration.base_url + unsubscribes_path(domain),
        _headers(integration, form=True),
        form={"address": address, "tag": ALL_TAGS},
    )


def unsubscribe_remove_request(integration: MailgunIntegration, domain: str, address: str) -> Request:
    return Request(
        "DELETE",
        f"{integration.base_url}{unsubscribes_path(domain)}/{address_path(address)}",
        _headers(integration, form=False),
        absent=unsubscribe_missing,
    )


# --- state ------------------------------------------------------------------------------------


def load_state(stored: Any) -> State:
    """The stored value as ``{"vars": ..., ...}``: a vars object alone is read as such."""
    if not isinstance(stored, dict):
        return {}
    if isinstance(stored.get("vars"), dict) and STATE_KEYS.issuperset(stored):
        return dict(stored)
    return {"vars": stored}


def dump_state(state: State) -> Any:
    """The vars object alone while there is nothing else to remember (as small as it gets)."""
    if STATE_KEYS.intersection(state) <= {"vars"}:
        return state.get("vars", {})
    return {**state, "vars": state.get("vars", {})}


def settle(state: State, _result: Any) -> State:
    """A delivered member holds the vars sent: the state planned is the state kept."""
    return state


# --- operations -----------------------------------------------------------------------------


def upsert(resolved: ResolvedEvent, integration: MailgunIntegration, state: State) -> Upsert:
    member = member_entry(resolved, state.get("vars"), integration.field_mapping)
    return Upsert(member, {**state, "vars": member["vars"]})


def withdraw(resolved: ResolvedEvent, integration: MailgunIntegration, state: State) -> Steps:
    """``subscribed=no`` on the member (and the domain's unsubscribe list when configured)."""
    address = resolved.email or ""
    answer = yield withdraw_member_request(integration, address)
    if answer.status == "absent":
        yield list_request(integration)  # 200: the list exists, so the address is not a member
        return Finish("dropped", "consent_denied", state={**state, "withdrawn": True}, shown=answer)
    withdrawn: State = {**state, "withdrawn": True}
    domain = integration.unsubscribe_domain
    if domain is not None:
        found = yield unsubscribe_lookup_request(integration, domain, address)
        if found.status == "absent":
            yield unsubscribe_add_request(integration, domain, address)
            withdrawn["unsubscribed"] = domain
    return Finish("delivered", state=withdrawn, shown=answer)


def restore(resolved: ResolvedEvent, integration: MailgunIntegration, state: State) -> Steps:
    """The member upsert of the re-granting event, then the domain unsubscribe signal-sync added."""
    member = member_entry(resolved, state.get("vars"), integration.field_mapping)
    answer = yield single_request(integration, member)
    domain = state.get("unsubscribed")
    if isinstance(domain, str):
        yield unsubscribe_remove_request(integration, domain, resolved.email or "")
    return Finish("delivered", state={"vars": member["vars"]}, shown=answer)


def erase(resolved: ResolvedEvent, integration: MailgunIntegration, state: State) -> Steps:
    """The member deleted from the list; not a member (the list exists) is already done."""
    answer = yield delete_member_request(integration, resolved.email or "")
    if answer.status == "absent":
        yield list_request(integration)  # 200: the list exists, so the address is not a member
    return Finish("delivered", forget=True, shown=answer)
