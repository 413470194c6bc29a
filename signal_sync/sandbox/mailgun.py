"""Mailgun mailing-list member and unsubscribe API emulator, as strict as Mailgun on the calls
Signal makes.

* ``POST /v3/lists/{list}/members``: form-encoded (urlencoded or multipart); a JSON body
  has no form, so no ``address`` and a 400, exactly what Mailgun answers.
* ``GET /v3/lists/{list}`` and ``GET /v3/lists/{list}/members/{address}``: read-only calls,
  handy for a connection test and for checks.
* ``PUT /v3/lists/{list}/members/{address}`` updates an existing member only (form fields
  ``subscribed``, ``name``, ``vars``, ``address``; what is not sent stays); an address that is
  not a member is a 404 and nothing is created. ``DELETE`` the same path removes the member
  (``{"member": {"address"}, "message"}``); a second delete is a 404.
* ``POST /v3/{domain}/unsubscribes`` (a form with ``address`` and ``tag``, default ``*``, and
  ``created_at``; or a JSON array of up to 1,000 ``{address, tags, created_at}``),
  ``GET`` and ``DELETE /v3/{domain}/unsubscribes/{address}``: the sending domain's unsubscribe
  list (``mailgun_unsubscribes``); a domain the account does not have is
  ``404 Domain not found: <domain>``.
* Basic auth user must be ``api`` and the password the key; anything else is a 401 whose
  body is the plain text ``Forbidden`` (not JSON), as Mailgun sends it.
* ``subscribed``/``upsert`` take yes/no/true/false; ``vars`` must be a JSON object string
  and *replaces* the stored vars; without ``upsert=true`` an existing member is a 400.
* Addresses (members and lists) match case-insensitively. A member address must be a bare
  address Mailgun's parser reads as given (``address_accepted``), else 400, for the single call
  and for every entry of a bulk call.
* ``POST /v3/lists/{list}/members.json``: bulk add/upsert. Form field ``members`` is a
  JSON array of addresses or ``{address, name, vars, subscribed}`` objects (at most 1,000),
  plus ``upsert``. Up to 100 entries are applied synchronously, in order, and one invalid
  entry fails the whole call (400, nothing applied). More than 100 are accepted (200, a
  message and a ``task-id``) and applied in the background after ``bulk_async_delay_s``,
  with no per-member result: invalid entries are skipped silently, as Mailgun does.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import idna
import orjson
from aiohttp import web

from signal_sync.sandbox.faults import FaultInjector, Faults, add_fault_routes, fault_middleware
from signal_sync.sandbox.journal import (
    FORM_TYPES,
    SANDBOX_PREFIX,
    Journal,
    add_sandbox_routes,
    credentials_match,
    journal_middleware,
    json_response,
)
from signal_sync.sandbox.mailgun_unsubscribes import BadDate, UnsubscribeStore, rfc2822

KIND = "mailgun"
API_USER = "api"
LISTS_PREFIX = "/v3/lists/"
DEFAULT_LISTS = ("newsletter@mg.example.com",)
MSG_CREATED = "Mailing list member has been created"
MSG_UPDATED = "Mailing list member has been updated"
MSG_DELETED = "Mailing list member has been deleted"
MSG_MEMBER_NOT_FOUND = "Member {address} of list {list} not found"
MSG_DOMAIN_NOT_FOUND = "Domain not found: {domain}"
MSG_UNSUBSCRIBE_ADDED = "Address has been added to the unsubscribes table"
MSG_UNSUBSCRIBES_ADDED = "{count} addresses have been added to the unsubscribes table"
MSG_UNSUBSCRIBE_REMOVED = "Unsubscribe event has been removed"
MSG_UNSUBSCRIBE_NOT_FOUND = "Address not found in unsubscribers table"
UNSUBSCRIBES_MAX_RECORDS = 1000
MSG_LIST_UPDATED = "Mailing list has been updated"
MSG_BULK_QUEUED = "Mailing list upload has been queued; members are applied in the background"
BULK_SYNC_LIMIT = 100
"""Mailgun applies a bulk call of at most this many entries synchronously; more go to a background task."""
BULK_MAX_MEMBERS = 1000
DEFAULT_BULK_ASYNC_DELAY_S = 0.5
_BOOLS = {"yes": True, "true": True, "no": False, "false": False}
MAX_ADDRESS_CHARS = 1024
"""flanker's ``MAX_ADDRESS_LENGTH``: its parser gives up on longer addresses."""
_NON_ASCII = "\u0080-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NON_ASCII}]+"
_LABEL = rf"[A-Za-z0-9{_NON_ASCII}](?:[A-Za-z0-9\-{_NON_ASCII}]*[A-Za-z0-9{_NON_ASCII}])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?P<domain>{_LABEL}(?:\.{_LABEL})+)")
"""A bare address as Mailgun's parser (flanker, its open-source address library) reads one: a
dot-atom local part where any non-ASCII character counts as atext (RFC 6531), and a domain of
letter/digit/hyphen labels (or non-ASCII ones, IDNA-encodable) with at least one dot."""


def address_accepted(address: str) -> bool:
    """Whether Mailgun takes ``address`` as a member address, as given.

    The display-name form ``Name <address>`` that Mailgun also reads is refused here: Signal sends
    bare addresses, and a name in ``address`` would be a client bug. So is anything with spaces,
    CR/LF or a second ``@``."""
    if len(address) > MAX_ADDRESS_CHARS:
        return False
    match = _ADDRESS.fullmatch(address)
    if match is None:
        return False
    domain = match.group("domain")
    if domain.isascii():
        return True
    try:
        idna.encode(domain)
    except idna.IDNAError:
        return False
    return True


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
UNSUBSCRIBE_STORE = web.AppKey("mailgun_unsubscribes", UnsubscribeStore)


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
    if not address_accepted(address):
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


@dataclass
class BulkEntry:
    """One validated entry of a bulk call; ``None`` fields were not sent and stay unchanged."""

    address: str
    name: str | None = None
    subscribed: bool | None = None
    vars: dict[str, Any] | None = None


def parse_bulk_entry(entry: Any, index: int) -> BulkEntry:
    """An address string or a ``{address, name, vars, subscribed}`` object; ``BadRequest`` otherwise."""
    where = f"members[{index}]"
    if isinstance(entry, str):
        entry = {"address": entry}
    if not isinstance(entry, dict):
        raise BadRequest(f"{where}: must be an address or an object with 'address'")
    address = entry.get("address")
    if not isinstance(address, str) or address == "":
        raise BadRequest(f"{where}: 'address' parameter is missing")
    if not address_accepted(address):
        raise BadRequest(f"{where}: 'address' parameter is not a valid email address: '{address}'")
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"{where}: 'name' must be a string")
    subscribed = entry.get("subscribed")
    raw_vars = entry.get("vars")
    try:
        if isinstance(subscribed, str):
            subscribed = parse_bool({"subscribed": subscribed}, "subscribed")
        elif subscribed is not None and not isinstance(subscribed, bool):
            raise BadRequest("'subscribed' parameter must be one of: yes, no, true, false")
        if isinstance(raw_vars, str):  # a JSON string, as the single call takes it
            raw_vars = parse_vars({"vars": raw_vars})
        elif raw_vars is not None and not isinstance(raw_vars, dict):
            raise BadRequest("Failed to decode 'vars' parameter: it must be a valid JSON object")
    except BadRequest as exc:
        raise BadRequest(f"{where}: {exc}") from None
    return BulkEntry(address=address, name=name, subscribed=subscribed, vars=raw_vars)


def parse_bulk_members(form: Mapping[str, str]) -> list[Any]:
    """The ``members`` form field as a JSON array (entries not validated yet)."""
    raw = form.get("members")
    if raw is None or raw == "":
        raise BadRequest("'members' parameter is missing")
    try:
        members = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Failed to decode 'members' parameter: it must be a valid JSON array") from None
    if not isinstance(members, list):
        raise BadRequest("Failed to decode 'members' parameter: it must be a valid JSON array")
    if len(members) > BULK_MAX_MEMBERS:
        raise BadRequest(f"Too many members: at most {BULK_MAX_MEMBERS} per request, got {len(members)}")
    return members


def journal_member(
    journal: Journal,
    request: web.Request | None,
    key: str,
    mailing_list: MailingList,
    action: str,
    changes: dict[str, Any],
    state: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> None:
    """Journal one applied member change (status 200) under ``key``, with the list's address."""
    journal.record_applied(
        key,
        request=request,
        action=action,
        status=200,
        changes=changes,
        state=state,
        details={"list": mailing_list.address, **(details or {})},
    )


def apply_bulk_entry(
    mailing_list: MailingList,
    entry: BulkEntry,
    *,
    upsert: bool,
    journal: Journal,
    request: web.Request | None,
    details: dict[str, Any],
) -> tuple[Member, bool] | None:
    """Apply one entry (single or bulk call); returns the member and whether it was created, or None
    when an existing member is left as is because ``upsert`` is off."""
    key = entry.address.lower()
    member = mailing_list.members.get(key)
    if member is not None and not upsert:
        return None
    created = member is None
    if member is None:
        member = mailing_list.members[key] = Member(address=entry.address)
    changes: dict[str, Any] = {}
    if entry.name is not None:
        member.name = changes["name"] = entry.name
    if entry.subscribed is not None:
        member.subscribed = changes["subscribed"] = entry.subscribed
    if entry.vars is not None:
        member.vars = changes["vars"] = entry.vars
    action = "created" if created else "updated"
    journal_member(journal, request, key, mailing_list, action, changes, member.to_json(), details)
    return member, created


def _routes(
    api_key: str,
    store: MailgunStore,
    journal: Journal,
    background: set[asyncio.Task[None]] | None = None,
    bulk_async_delay_s: float = DEFAULT_BULK_ASYNC_DELAY_S,
) -> web.RouteTableDef:
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
        if not upsert and address.lower() in found.members:
            return message_response(400, f"Address already exists '{address}'")
        entry = BulkEntry(address=address, name=form.get("name"), subscribed=subscribed, vars=new_vars)
        applied = apply_bulk_entry(found, entry, upsert=True, journal=journal, request=request, details={})
        assert applied is not None
        member, created = applied
        return json_response({"member": member.to_json(), "message": MSG_CREATED if created else MSG_UPDATED})

    tasks: set[asyncio.Task[None]] = background if background is not None else set()

    @routes.post(LISTS_PREFIX + "{list_address}/members.json")
    async def bulk_members(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        form = await read_form(request)
        try:
            upsert = parse_bool(form, "upsert") or False
            members = parse_bulk_members(form)
        except BadRequest as exc:
            return message_response(400, str(exc))
        if len(members) > BULK_SYNC_LIMIT:
            task_id = uuid.uuid4().hex
            task = asyncio.create_task(_apply_later(found, members, upsert, request, task_id))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return json_response({"list": found.to_json(), "message": MSG_BULK_QUEUED, "task-id": task_id})
        try:
            entries = [parse_bulk_entry(entry, index) for index, entry in enumerate(members)]
        except BadRequest as exc:  # validated before anything is applied: all or nothing
            return message_response(400, str(exc))
        for index, entry in enumerate(entries):
            apply_bulk_entry(
                found, entry, upsert=upsert, journal=journal, request=request, details={"batch_index": index}
            )
        return json_response({"list": found.to_json(), "message": MSG_LIST_UPDATED})

    async def _apply_later(
        mailing_list: MailingList, members: list[Any], upsert: bool, request: web.Request, task_id: str
    ) -> None:
        await asyncio.sleep(bulk_async_delay_s)
        for index, raw in enumerate(members):
            try:
                entry = parse_bulk_entry(raw, index)
            except BadRequest:
                continue  # no per-member result in the background: a bad entry just is not applied
            details = {"batch_index": index, "task_id": task_id}
            apply_bulk_entry(
                mailing_list, entry, upsert=upsert, journal=journal, request=request, details=details
            )

    @routes.get(LISTS_PREFIX + "{list_address}")
    async def get_list(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        return json_response({"list": found.to_json()})

    def lookup_member(request: web.Request) -> tuple[MailingList, Member] | web.Response:
        """The path's list and member, or the answer to give: the list's errors, then a 404 for an
        address that is not a member."""
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        address = request.match_info["address"]
        member = found.members.get(address.lower())
        if member is None:
            return message_response(404, MSG_MEMBER_NOT_FOUND.format(address=address, list=found.address))
        return found, member

    @routes.get(LISTS_PREFIX + "{list_address}/members/{address}")
    async def get_member(request: web.Request) -> web.Response:
        looked_up = lookup_member(request)
        if isinstance(looked_up, web.Response):
            return looked_up
        _, member = looked_up
        return json_response({"member": member.to_json()})

    @routes.put(LISTS_PREFIX + "{list_address}/members/{address}")
    async def update_member(request: web.Request) -> web.Response:
        looked_up = lookup_member(request)
        if isinstance(looked_up, web.Response):
            return looked_up  # an update never creates a member
        found, member = looked_up
        form = await read_form(request)
        try:
            new_address = parse_address(form) if "address" in form else None
            subscribed = parse_bool(form, "subscribed")
            new_vars = parse_vars(form)
        except BadRequest as exc:
            return message_response(400, str(exc))
        old_key = member.address.lower()
        if new_address is not None and new_address.lower() != old_key:
            if new_address.lower() in found.members:
                return message_response(400, f"Address already exists '{new_address}'")
            del found.members[old_key]
            found.members[new_address.lower()] = member
        changes: dict[str, Any] = {}
        if new_address is not None and new_address != member.address:
            member.address = changes["address"] = new_address
        if "name" in form:
            member.name = changes["name"] = form["name"]
        if subscribed is not None:
            member.subscribed = changes["subscribed"] = subscribed
        if new_vars is not None:
            member.vars = changes["vars"] = new_vars
        journal_member(journal, request, old_key, found, "updated", changes, member.to_json())
        return json_response({"member": member.to_json(), "message": MSG_UPDATED})

    @routes.delete(LISTS_PREFIX + "{list_address}/members/{address}")
    async def delete_member(request: web.Request) -> web.Response:
        looked_up = lookup_member(request)
        if isinstance(looked_up, web.Response):
            return looked_up
        found, member = looked_up
        del found.members[member.address.lower()]
        journal_member(journal, request, member.address, found, "deleted", {}, {})
        return json_response({"member": {"address": member.address}, "message": MSG_DELETED})

    return routes


def parse_unsubscribe_form(form: Mapping[str, str], tags: list[str]) -> tuple[str, list[str], str]:
    """A single record from a form: address, tags (``tag``, repeatable; ``*`` when none), date."""
    try:
        return parse_address(form), tags, rfc2822(form.get("created_at"))
    except BadDate as exc:
        raise BadRequest(f"'created_at' parameter is not a valid RFC 2822 date: '{exc}'") from None


def parse_unsubscribe_records(raw: bytes) -> list[tuple[str, list[str], str]]:
    """The JSON form of ``POST /v3/{domain}/unsubscribes``: an array of up to 1,000
    ``{address, tags, created_at}`` records, all valid or none applied."""
    try:
        records = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "Failed to decode the JSON body: it must be an array of unsubscribe records"
        ) from None
    if not isinstance(records, list):
        raise BadRequest("Failed to decode the JSON body: it must be an array of unsubscribe records")
    if len(records) > UNSUBSCRIBES_MAX_RECORDS:
        raise BadRequest(
            f"Too many records: at most {UNSUBSCRIBES_MAX_RECORDS} per request, got {len(records)}"
        )
    parsed = []
    for index, record in enumerate(records):
        where = f"[{index}]"
        if not isinstance(record, dict) or not isinstance(record.get("address"), str):
            raise BadRequest(f"{where}: 'address' parameter is missing")
        tags = record.get("tags", [])
        if isinstance(record.get("tag"), str):
            tags = [record["tag"]]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadRequest(f"{where}: 'tags' must be a list of strings")
        created_at = record.get("created_at")
        try:
            address, _, when = parse_unsubscribe_form(
                {"address": record["address"]}
                | ({"created_at": created_at} if isinstance(created_at, str) else {}),
                tags,
            )
        except BadRequest as exc:
            raise BadRequest(f"{where}: {exc}") from None
        parsed.append((address, tags, when))
    return parsed


def _unsubscribe_routes(api_key: str, unsubscribes: UnsubscribeStore, journal: Journal) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    base = "/v3/{domain}/unsubscribes"

    def lookup(request: web.Request) -> dict[str, Any] | web.Response:
        if not credentials_match(request.headers.get("Authorization"), API_USER, api_key):
            return forbidden()
        domain = request.match_info["domain"]
        table = unsubscribes.table(domain)
        if table is None:
            return message_response(404, MSG_DOMAIN_NOT_FOUND.format(domain=domain))
        return table

    def record(request: web.Request, address: str, action: str, state: dict[str, Any]) -> None:
        journal.record_applied(
            address,
            request=request,
            action=action,
            status=200,
            changes={},
            state=state,
            details={"domain": request.match_info["domain"]},
        )

    @routes.post(base)
    async def add_unsubscribes(request: web.Request) -> web.Response:
        table = lookup(request)
        if isinstance(table, web.Response):
            return table
        try:
            if request.content_type == "application/json":
                records = parse_unsubscribe_records(await request.read())
            else:
                form = await read_form(request)
                tags = (
                    [t for t in (await request.post()).getall("tag", []) if isinstance(t, str)]
                    if form
                    else []
                )
                records = [parse_unsubscribe_form(form, tags)]
        except BadRequest as exc:
            return message_response(400, str(exc))
        for address, tags, created_at in records:
            stored = unsubscribes.add(table, address, tags, created_at)
            record(request, address, "unsubscribed", stored.to_json())
        if request.content_type == "application/json":
            return json_response({"message": MSG_UNSUBSCRIBES_ADDED.format(count=len(records))})
        return json_response({"message": MSG_UNSUBSCRIBE_ADDED, "address": records[0][0]})

    @routes.get(base + "/{address}")
    async def get_unsubscribe(request: web.Request) -> web.Response:
        table = lookup(request)
        if isinstance(table, web.Response):
            return table
        stored = table.get(request.match_info["address"].lower())
        if stored is None:
            return message_response(404, MSG_UNSUBSCRIBE_NOT_FOUND)
        return json_response(stored.to_json())

    @routes.delete(base + "/{address}")
    async def delete_unsubscribe(request: web.Request) -> web.Response:
        table = lookup(request)
        if isinstance(table, web.Response):
            return table
        address = request.match_info["address"]
        removed = unsubscribes.remove(table, address, request.query.get("tag"))
        if removed is None:
            return message_response(404, MSG_UNSUBSCRIBE_NOT_FOUND)
        still = table.get(address.lower())
        record(request, address, "unsubscribe_removed", still.to_json() if still is not None else {})
        return json_response({"message": MSG_UNSUBSCRIBE_REMOVED, "address": removed.address})

    return routes


async def not_found(request: web.Request) -> web.Response:
    """Anything not emulated, including a base URL that carries a path."""
    return message_response(404, "Not Found")


def list_domains(lists: Iterable[str]) -> tuple[str, ...]:
    """The sending domains the lists live on (the part after ``@``), each once."""
    domains: dict[str, str] = {}
    for address in lists:
        domain = address.rpartition("@")[2]
        domains.setdefault(domain.lower(), domain)
    return tuple(domains.values())


def create_app(
    *,
    api_key: str,
    lists: Iterable[str] = DEFAULT_LISTS,
    domains: Iterable[str] | None = None,
    faults: Faults | Mapping[str, Any] | None = None,
    bulk_async_delay_s: float = DEFAULT_BULK_ASYNC_DELAY_S,
) -> web.Application:
    """A Mailgun emulator app with the given existing lists; serve with ``server.*``.

    ``domains``: the account's sending domains, each with its unsubscribe list (default: the
    domains of ``lists``). ``bulk_async_delay_s``: how long after its answer a bulk call of more
    than 100 entries is applied (the background task Mailgun starts for it).
    """
    lists = tuple(lists)
    store = MailgunStore(lists)
    unsubscribes = UnsubscribeStore(
        list_domains(lists) if domains is None else list_domains(f"@{d}" for d in domains)
    )
    journal = Journal()
    injector = FaultInjector(faults)
    app = web.Application(
        middlewares=[journal_middleware(journal), fault_middleware(injector, MailgunDialect())]
    )
    app[MAILGUN_STORE] = store
    app[UNSUBSCRIBE_STORE] = unsubscribes
    background: set[asyncio.Task[None]] = set()

    def cancel_background() -> None:
        for task in list(background):
            task.cancel()

    def reset() -> None:
        cancel_background()  # a queued bulk upload must not land in the fresh state
        store.clear()
        unsubscribes.clear()
        injector.restore()

    async def unsubscribe_state(request: web.Request) -> web.Response:
        return json_response({"unsubscribes": unsubscribes.snapshot()})

    async def on_cleanup(_app: web.Application) -> None:
        cancel_background()

    add_sandbox_routes(
        app, kind=KIND, journal=journal, state_name="members", snapshot=store.snapshot, reset=reset
    )
    app.router.add_get(SANDBOX_PREFIX + "unsubscribes", unsubscribe_state)
    add_fault_routes(app, injector)
    app.add_routes(_routes(api_key, store, journal, background, bulk_async_delay_s))
    app.add_routes(_unsubscribe_routes(api_key, unsubscribes, journal))
    app.router.add_route("*", "/{tail:.*}", not_found)
    app.on_cleanup.append(on_cleanup)
    return app
