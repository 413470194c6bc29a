"""Mailgun mailing-list member API emulator, as strict as Mailgun on the calls Signal makes.

* ``POST /v3/lists/{list}/members``: form-encoded (urlencoded or multipart); a JSON body
  has no form, so no ``address`` and a 400, exactly what Mailgun answers.
* ``GET /v3/lists/{list}`` and ``GET /v3/lists/{list}/members/{address}``: read-only calls,
  handy for a connection test and for checks.
* Basic auth user must be ``api`` and the password the key; anything else is a 401 whose
  body is the plain text ``Forbidden`` (not JSON), as Mailgun sends it.
* ``subscribed``/``upsert`` take yes/no/true/false; ``vars`` must be a JSON object string
  and *replaces* the stored vars; without ``upsert=true`` an existing member is a 400.
* Addresses (members and lists) match case-insensitively.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from signal_sync.sandbox.faults import FaultInjector, Faults, add_fault_routes, fault_middleware
from signal_sync.sandbox.journal import (
    FORM_TYPES,
    Journal,
    add_sandbox_routes,
    credentials_match,
    journal_middleware,
    json_response,
)

KIND = "mailgun"
API_USER = "api"
LISTS_PREFIX = "/v3/lists/"
DEFAULT_LISTS = ("newsletter@mg.example.com",)
MSG_CREATED = "Mailing list member has been created"
MSG_UPDATED = "Mailing list member has been updated"
_BOOLS = {"yes": True, "true": True, "no": False, "false": False}
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


def message_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Mailgun's JSON error/info body: ``{"message": ...}``."""
    return json_response({"message": message}, status=status, headers=headers)


def forbidden() -> web.Response:
    """Mailgun's answer to bad credentials: 401 with a plain-text body."""
    return web.Response(status=401, text="Forbidden", content_type="text/plain")


class MailgunDialect:
    """How faults are worded by Mailgun: ``{"message"}`` JSON, plain ``Forbidden``, Retry-After."""

    def error(self, status: int, message: str | None = None) -> web.Response:
        if status == 401 and message is None:
            return forbidden()
        return message_response(status, message or HTTPStatus(status).phrase)

    def rate_limited(self, retry_after_s: int, reset_at: float) -> web.Response:
        return message_response(
            429, "Too many requests", headers={"Retry-After": str(math.ceil(retry_after_s))}
        )


class BadRequest(Exception):
    """A form Mailgun would refuse with 400; the message is Mailgun's wording."""


@dataclass
class Member:
    """One list member as Mailgun stores it."""

    address: str
    name: str = ""
    subscribed: bool = True
    vars: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "name": self.name, "subscribed": self.subscribed, "vars": self.vars}


@dataclass
class MailingList:
    """A list that exists in the account; members keyed by lowercased address."""

    address: str
    created_at: str
    members: dict[str, Member] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "access_level": "readonly",
            "address": self.address,
            "created_at": self.created_at,
            "description": "",
            "members_count": len(self.members),
            "name": "",
            "reply_preference": "list",
        }


def _rfc2822_now() -> str:
    return datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S -0000")


class MailgunStore:
    """The account's mailing lists; only lists given at creation exist (Signal never creates lists)."""

    def __init__(self, lists: Iterable[str]) -> None:
        self.list_addresses = tuple(lists)
        self.clear()

    def clear(self) -> None:
        now = _rfc2822_now()
        self.lists = {a.lower(): MailingList(address=a, created_at=now) for a in self.list_addresses}

    def get_list(self, address: str) -> MailingList | None:
        return self.lists.get(address.lower())

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Members of every list, in insertion order."""
        return {ml.address: [m.to_json() for m in ml.members.values()] for ml in self.lists.values()}


MAILGUN_STORE = web.AppKey("mailgun_store", MailgunStore)


def parse_bool(form: Mapping[str, str], name: str) -> bool | None:
    """yes/no/true/false in any case; None when absent; ``BadRequest`` otherwise."""
    raw = form.get(name)
    if raw is None:
        return None
    value = _BOOLS.get(raw.strip().lower())
    if value is None:
        raise BadRequest(f"'{name}' parameter must be one of: yes, no, true, false")
    return value


def parse_vars(form: Mapping[str, str]) -> dict[str, Any] | None:
    """``vars`` as a dict; None when absent; ``BadRequest`` unless it is a JSON object."""
    raw = form.get("vars")
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Failed to decode 'vars' parameter: it must be a valid JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("Failed to decode 'vars' parameter: it must be a valid JSON object")
    return value


def parse_address(form: Mapping[str, str]) -> str:
    """The member address, exactly as sent; ``BadRequest`` when missing or malformed."""
    address = form.get("address")
    if address is None or address == "":
        raise BadRequest("'address' parameter is missing")
    if not _ADDRESS.match(address):
        raise BadRequest(f"'address' parameter is not a valid email address: '{address}'")
    return address


async def read_form(request: web.Request) -> Mapping[str, str]:
    """Form fields (first value of each, text only); non-form bodies have none."""
    if request.content_type not in FORM_TYPES:
        return {}
    try:
        form = await request.post()
    except web.HTTPException:
        raise
    except Exception:  # malformed multipart: Mailgun reads no form either
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _routes(api_key: str, store: MailgunStore, journal: Journal) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def lookup(request: web.Request) -> MailingList | web.Response:
        if not credentials_match(request.headers.get("Authorization"), API_USER, api_key):
            return forbidden()
        address = request.match_info["list_address"]
        mailing_list = store.get_list(address)
        if mailing_list is None:
            return message_response(404, f"Mailing list {address} not found")
        return mailing_list

    @routes.post(LISTS_PREFIX + "{list_address}/members")
    async def add_member(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        form = await read_form(request)
        try:
            address = parse_address(form)
            subscribed = parse_bool(form, "subscribed")
            upsert = parse_bool(form, "upsert") or False
            new_vars = parse_vars(form)
        except BadRequest as exc:
            return message_response(400, str(exc))
        key = address.lower()
        member = found.members.get(key)
        if member is not None and not upsert:
            return message_response(400, f"Address already exists '{address}'")
        created = member is None
        if member is None:
            member = found.members[key] = Member(address=address)
        changes: dict[str, Any] = {}
        if "name" in form:
            member.name = changes["name"] = form["name"]
        if subscribed is not None:
            member.subscribed = changes["subscribed"] = subscribed
        if new_vars is not None:
            member.vars = changes["vars"] = new_vars
        journal.record_applied(
            key,
            request=request,
            action="created" if created else "updated",
            status=200,
            changes=changes,
            state=member.to_json(),
            details={"list": found.address},
        )
        return json_response({"member": member.to_json(), "message": MSG_CREATED if created else MSG_UPDATED})

    @routes.get(LISTS_PREFIX + "{list_address}")
    async def get_list(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        return json_response({"list": found.to_json()})

    @routes.get(LISTS_PREFIX + "{list_address}/members/{address}")
    async def get_member(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        address = request.match_info["address"]
        member = found.members.get(address.lower())
        if member is None:
            return message_response(404, f"Member {address} of list {found.address} not found")
        return json_response({"member": member.to_json()})

    return routes


async def not_found(request: web.Request) -> web.Response:
    """Anything not emulated, including a base URL that carries a path."""
    return message_response(404, "Not Found")


def create_app(
    *,
    api_key: str,
    lists: Iterable[str] = DEFAULT_LISTS,
    faults: Faults | Mapping[str, Any] | None = None,
) -> web.Application:
    """A Mailgun emulator app with the given existing lists; serve with ``server.*``."""
    store = MailgunStore(lists)
    journal = Journal()
    injector = FaultInjector(faults)
    app = web.Application(
        middlewares=[journal_middleware(journal), fault_middleware(injector, MailgunDialect())]
    )
    app[MAILGUN_STORE] = store

    def reset() -> None:
        store.clear()
        injector.restore()

    add_sandbox_routes(
        app, kind=KIND, journal=journal, state_name="members", snapshot=store.snapshot, reset=reset
    )
    add_fault_routes(app, injector)
    app.add_routes(_routes(api_key, store, journal))
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
