"""Mautic REST API emulator: the contact upsert Signal uses, as strict as Mautic itself.

Only what the Mautic integration touches is emulated, but that part is enforced the way a
real instance enforces it, so a client bug shows up here rather than in production:

* ``POST /api/contacts/new`` upserts on email (case-insensitive): 201 for a new contact,
  200 for an existing one, body ``{"contact": {...}}`` shaped like Mautic's.
* ``POST /api/contacts/batch/new`` upserts a JSON array of contacts (at most
  ``api_batch_max_limit``, default 200; more is Mautic's HTTP 500). The answer is 201 even
  when items fail: ``statusCodes`` (201/200/error code) and ``errors`` are keyed by the
  item's index, and, like PHP's ``json_encode``, written as a list when the keys run
  0..n-1 and as an object keyed by index otherwise.
* ``GET /api/contacts`` lists contacts (``limit``, ``start``, ``search``); a harmless call
  for a connection test.
* Access checks in Mautic's order: API enabled, Basic auth enabled, credentials, then the
  user's permission to edit contacts. Errors use Mautic's ``{"errors": [...]}`` JSON.
* Anything else under ``/api/`` is Mautic's JSON 404; a base URL carrying a path
  (``//api/...``, ``/mautic/api/...``) gets the HTML 404 of the web UI, as it would.
* ``email`` must be an address Mautic stores as given (``email_accepted``: its cleaning and
  ``FILTER_VALIDATE_EMAIL``), else 400 ``A valid email is required.``, for the single call and
  per item of a batch.
* Blank values (``""``/``null``) never wipe stored values; unknown aliases are ignored
  (custom fields must be created first, see ``custom_fields``); ``tags`` add ``foo`` and
  remove ``-foo``; ``ipAddress`` and X-Forwarded-For are recorded; UTM parameters become
  ``utmtags`` entries, as the Mautic API does, not contact fields.
"""

from __future__ import annotations

import ipaddress
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
    Journal,
    add_sandbox_routes,
    credentials_match,
    journal_middleware,
    json_response,
)

KIND = "mautic"
API_PREFIX = "/api/"
CONTACTS_NEW = "/api/contacts/new"
CONTACTS_LIST = "/api/contacts"
CONTACTS_BATCH_NEW = "/api/contacts/batch/new"
DEFAULT_API_BATCH_MAX_LIMIT = 200
CORE_FIELDS = ("email", "firstname", "lastname", "phone", "company", "city", "state", "zipcode", "country")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
SPECIAL_FIELDS = ("ipAddress", "lastActive", "tags")
DEFAULT_CUSTOM_FIELDS = ("signal_signup_method", "signal_lead_source")
LAST_ACTIVE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LIST_LIMIT = 30

MSG_API_DISABLED = "API disabled. You need to enable the API in the API settings of Mautic's Configuration."
MSG_BASIC_DISABLED = (
    "Basic authentication disabled. You need to enable HTTP basic auth in the API settings "
    "of Mautic's Configuration."
)
MSG_AUTH_DENIED = "API authorization denied."
MSG_ACCESS_DENIED = "You do not have access to the requested area/action."
MSG_RATE_LIMITED = "You exceeded the rate limit of {limit} API calls per hour."
RATE_LIMIT_PER_HOUR = 100
MSG_BATCH_LIMIT = "A max of {limit} entities are supported at a time."
MSG_BATCH_ITEM_NOT_OBJECT = "Each contact of a batch must be a JSON object."

MSG_EMAIL_REQUIRED = "A valid email is required."
EMAIL_COLUMN_CHARS = 191
"""Mautic's contact email column is a VARCHAR(191) (``SchemaDefinition::MAX_VARCHAR_LENGTH``)."""
EMAIL_CLEAN_MAX_CHARS = 254
"""``InputHelper::email`` keeps the first 254 characters of an address before validating it."""
EMAIL_SANITIZE_KEEPS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-=?^_`{|}~@.[]"
)
"""What PHP's ``FILTER_SANITIZE_EMAIL`` keeps: Mautic strips every other character before validating."""
EMAIL_REFUSED_CHARACTERS = frozenset("^&*%")
"""``EmailValidator::hasValidCharacters``: RFC-valid, but refused by Mautic."""
_ATEXT = r"[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x5E-\x7E]"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# PHP's FILTER_VALIDATE_EMAIL pattern (ext/filter/logical_filters.c), which carries this notice
# for the regex it is based on: "Copyright (c) Michael Rushton 2009-10, http://squiloople.com/ --
# Feel free to use and redistribute this code. But please keep this copyright notice."
# Applied here only to addresses that FILTER_SANITIZE_EMAIL leaves unchanged: those hold no quote,
# backslash, colon or space, so the pattern's quoted-string and IPv6 branches cannot match and
# are left out, its quote-aware length look-aheads become plain ones, and its nested label
# repetition ``((label\.){1,126}){1,}`` is written ``(label\.)+`` (the same addresses, without
# the exponential backtracking Python's ``re`` would do on a long failing domain).
_PHP_VALIDATE_EMAIL = re.compile(
    rf"(?!.{{255}})(?![^@]{{65}})"
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@(?:(?!.*[^.]{64})(?:[a-z0-9]+(?:-+[a-z0-9]+)*\.)+[a-z][a-z0-9]*(?:-+[a-z0-9]+)*"
    rf"|\[{_OCTET}(?:\.{_OCTET}){{3}}\])",
    re.IGNORECASE | re.ASCII,
)
_LAST_ACTIVE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_UTM_KEYS = {
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "utm_content": "utmContent",
    "utm_term": "utmTerm",
}
_DEFAULT_MESSAGES = {401: MSG_AUTH_DENIED, 403: MSG_ACCESS_DENIED}
_HTML_404 = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
)


def errors_response(
    status: int, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Mautic's error body: ``{"errors": [{"code", "message", "details"}]}``."""
    body = {"errors": [{"code": status, "message": message, "details": [] if details is None else details}]}
    return json_response(body, status=status, headers=headers)


class MauticDialect:
    """How faults are worded by Mautic: errors JSON; 429 with ``X-RateLimit-*`` headers.

    Mautic's rate limiter announces the window end as a Unix time in ``X-RateLimit-Reset``
    and sends no ``Retry-After``, so a client must understand both styles.
    """

    def error(self, status: int, message: str | None = None) -> web.Response:
        return errors_response(status, message or _DEFAULT_MESSAGES.get(status) or HTTPStatus(status).phrase)

    def rate_limited(self, retry_after_s: int, reset_at: float) -> web.Response:
        headers = {
            "X-RateLimit-Limit": str(RATE_LIMIT_PER_HOUR),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(reset_at)),
        }
        return errors_response(429, MSG_RATE_LIMITED.format(limit=RATE_LIMIT_PER_HOUR), headers=headers)


@dataclass(frozen=True)
class MauticSettings:
    """The instance configuration the checks depend on (fixed at creation)."""

    username: str
    password: str
    api_enabled: bool = True
    basic_auth_enabled: bool = True
    can_edit_contacts: bool = True
    custom_fields: tuple[str, ...] = DEFAULT_CUSTOM_FIELDS
    api_batch_max_limit: int = DEFAULT_API_BATCH_MAX_LIMIT

    @property
    def field_aliases(self) -> tuple[str, ...]:
        """Aliases stored as contact fields, in ``fields.all`` order."""
        return CORE_FIELDS + tuple(a for a in self.custom_fields if a not in CORE_FIELDS)


@dataclass
class Contact:
    """One stored contact; rendered to Mautic's JSON by ``MauticStore.render``."""

    id: int
    date_added: str
    date_modified: str
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    last_active: str | None = None
    utmtags: list[dict[str, Any]] = field(default_factory=list)


class BadRequest(Exception):
    """A payload Mautic would refuse with 400; carries the message and per-field details."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def is_blank(value: Any) -> bool:
    """Mautic skips ``""`` and ``null`` instead of overwriting a stored value with them."""
    return value is None or value == ""


def _field_error(alias: str, message: str) -> BadRequest:
    return BadRequest(f"{alias}: {message}", {alias: [message]})


def email_accepted(email: Any) -> bool:
    """Whether Mautic stores this address as given.

    Mautic cleans an address (``InputHelper::email``: first 254 characters, then
    ``FILTER_SANITIZE_EMAIL``, then trim) and validates what is left (``EmailValidator``:
    ``filter_var(FILTER_VALIDATE_EMAIL)``, then no ``^&*%``), and its email column holds 191
    characters. An address the cleaning would change is refused here, where Mautic would store
    another address (``jane doe@example.com`` as ``janedoe@example.com``): a client that sends one
    has a bug the emulator must show."""
    if not isinstance(email, str) or not email:
        return False
    if len(email) > EMAIL_CLEAN_MAX_CHARS or not EMAIL_SANITIZE_KEEPS.issuperset(email):
        return False
    if _PHP_VALIDATE_EMAIL.fullmatch(email) is None or not EMAIL_REFUSED_CHARACTERS.isdisjoint(email):
        return False
    return len(email) <= EMAIL_COLUMN_CHARS


def validate_payload(payload: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ``BadRequest`` for what Mautic's contact form would reject."""
    email = payload.get("email")
    if is_blank(email) or not email_accepted(email):
        raise _field_error("email", MSG_EMAIL_REQUIRED)
    last_active = payload.get("lastActive")
    if not is_blank(last_active):
        if not isinstance(last_active, str) or not _LAST_ACTIVE.match(last_active):
            raise _field_error("lastActive", "This value is not a valid datetime (expected Y-m-d H:i:s).")
        try:
            datetime.strptime(last_active, LAST_ACTIVE_FORMAT)
        except ValueError:
            raise _field_error("lastActive", "This value is not a valid datetime.") from None
    for alias in known:
        value = payload.get(alias)
        if alias == "tags":
            if not (is_blank(value) or isinstance(value, str) or _is_list_of_scalars(value)):
                raise _field_error("tags", "This value should be a list or a comma separated string.")
        elif isinstance(value, dict | list):
            raise _field_error(alias, "This value should be of type string.")


def _is_list_of_scalars(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str | int | float) for v in value)


def parse_tags(value: Any) -> list[str]:
    """Tags as Mautic reads them: a list, or one comma-separated string; blanks dropped."""
    if is_blank(value):
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [t.strip() for t in items if t.strip()]


def valid_ip(value: Any) -> str | None:
    """The IP as a string if it is one, else None (Mautic silently ignores bad IPs)."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def forwarded_ip(header: str | None) -> str | None:
    """The original client of an X-Forwarded-For chain (its first entry)."""
    if not header:
        return None
    return valid_ip(header.split(",")[0])


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class MauticStore:
    """Contacts keyed by lowercased email, plus the tag registry that gives tags their ids."""

    def __init__(self, settings: MauticSettings) -> None:
        self.settings = settings
        self.known = frozenset(settings.field_aliases + UTM_FIELDS + SPECIAL_FIELDS)
        self.clear()

    def clear(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.tag_ids: dict[str, int] = {}
        self._next_id = 1

    def upsert(
        self, payload: Mapping[str, Any], header_ip: str | None
    ) -> tuple[Contact, bool, dict[str, Any], list[str]]:
        """Apply a validated payload; returns the contact, created?, what changed, what was ignored."""
        key = str(payload["email"]).lower()
        now = _now()
        contact = self.contacts.get(key)
        created = contact is None
        if contact is None:
            contact = Contact(id=self._next_id, date_added=now, date_modified=now)
            self._next_id += 1
            self.contacts[key] = contact
        contact.date_modified = now
        changes: dict[str, Any] = {}
        for alias in self.settings.field_aliases:
            value = payload.get(alias)
            if not is_blank(value):
                contact.fields[alias] = changes[alias] = value
        self._apply_last_active(contact, payload.get("lastActive"), changes)
        self._apply_utm(contact, payload, changes)
        self._apply_tags(contact, payload.get("tags"), changes)
        ignored = sorted(k for k in payload if k not in self.known)
        body_ip = payload.get("ipAddress")
        if not is_blank(body_ip) and valid_ip(body_ip) is None:
            ignored.append("ipAddress")
        self._apply_ips(contact, [valid_ip(body_ip), header_ip], changes)
        return contact, created, changes, ignored

    @staticmethod
    def _apply_ips(contact: Contact, candidates: list[str | None], changes: dict[str, Any]) -> None:
        ips = [ip for ip in candidates if ip]
        for ip in ips:
            if ip not in contact.ip_addresses:
                contact.ip_addresses.append(ip)
        if ips:
            changes["ipAddresses"] = ips

    @staticmethod
    def _apply_last_active(contact: Contact, value: Any, changes: dict[str, Any]) -> None:
        if is_blank(value):
            return
        when = datetime.strptime(value, LAST_ACTIVE_FORMAT).replace(tzinfo=UTC)
        contact.last_active = changes["lastActive"] = when.isoformat()

    @staticmethod
    def _apply_utm(contact: Contact, payload: Mapping[str, Any], changes: dict[str, Any]) -> None:
        utm = {alias: payload[alias] for alias in UTM_FIELDS if not is_blank(payload.get(alias))}
        if utm:
            contact.utmtags.append({_UTM_KEYS[k]: v for k, v in utm.items()} | {"dateAdded": _now()})
            changes.update(utm)

    def _apply_tags(self, contact: Contact, value: Any, changes: dict[str, Any]) -> None:
        ops = parse_tags(value)
        for op in ops:
            if op.startswith("-"):
                name = op[1:].strip()
                if name in contact.tags:
                    contact.tags.remove(name)
            elif op not in contact.tags:
                contact.tags.append(op)
                self.tag_ids.setdefault(op, len(self.tag_ids) + 1)
        if ops:
            changes["tags"] = ops

    def render(self, contact: Contact) -> dict[str, Any]:
        """The contact as Mautic's API returns it."""
        all_fields = {"id": contact.id} | {a: contact.fields.get(a) for a in self.settings.field_aliases}
        return {
            "id": contact.id,
            "isPublished": True,
            "dateAdded": contact.date_added,
            "dateModified": contact.date_modified,
            "points": 0,
            "lastActive": contact.last_active,
            "ipAddresses": {ip: {"ipAddress": ip, "ipDetails": {}} for ip in contact.ip_addresses},
            "tags": [{"id": self.tag_ids.get(t, 0), "tag": t} for t in contact.tags],
            "utmtags": list(contact.utmtags),
            "fields": {"all": all_fields},
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """Every contact, in creation order."""
        return [self.render(c) for c in sorted(self.contacts.values(), key=lambda c: c.id)]


MAUTIC_STORE = web.AppKey("mautic_store", MauticStore)


def check_access(request: web.Request, settings: MauticSettings, *, edit: bool) -> web.Response | None:
    """Mautic's access checks in its order; None when the request may proceed."""
    if not settings.api_enabled:
        return errors_response(403, MSG_API_DISABLED)
    if not settings.basic_auth_enabled:
        return errors_response(403, MSG_BASIC_DISABLED)
    if not credentials_match(request.headers.get("Authorization"), settings.username, settings.password):
        return errors_response(401, MSG_AUTH_DENIED, headers={"WWW-Authenticate": 'Basic realm="Mautic"'})
    if edit and not settings.can_edit_contacts:
        return errors_response(403, MSG_ACCESS_DENIED)
    return None


async def read_json(request: web.Request) -> Any:
    """The body parsed as JSON, or ``BadRequest`` (Signal must send JSON)."""
    if request.content_type != "application/json":
        raise BadRequest("Request body must be JSON (Content-Type: application/json).")
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON.") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body of a single upsert: a JSON object."""
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object.")
    return payload


async def read_json_array(request: web.Request) -> list[Any]:
    """The body of a batch call: a JSON array."""
    payload = await read_json(request)
    if not isinstance(payload, list):
        raise BadRequest("Request body must be a JSON array of contacts.")
    return payload


def php_array(items: Mapping[int, Any]) -> list[Any] | dict[str, Any]:
    """An index-keyed PHP array as ``json_encode`` writes it.

    A list when the keys are exactly 0..n-1 in order (also when empty), otherwise an object
    whose keys are the indexes as strings: so a batch whose first item failed returns
    ``contacts`` as ``{"1": ..., "2": ...}`` while ``statusCodes`` stays a list.
    """
    if list(items) == list(range(len(items))):
        return list(items.values())
    return {str(key): value for key, value in items.items()}


def batch_item_error(code: int, message: str, details: Any = None) -> dict[str, Any]:
    """One entry of a batch answer's ``errors``: Mautic's error object for that item."""
    return {"code": code, "message": message, "details": [] if details is None else details, "type": None}


def _non_negative_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer.") from None
    if value < 0:
        raise BadRequest(f"{name}: must not be negative.")
    return value


def _routes(settings: MauticSettings, store: MauticStore, journal: Journal) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def apply(
        payload: dict[str, Any], header_ip: str | None, request: web.Request, **details: Any
    ) -> tuple[dict[str, Any], int]:
        """Upsert one validated contact and journal it: the rendered contact and 201/200."""
        contact, created, changes, ignored = store.upsert(payload, header_ip)
        status = 201 if created else 200
        rendered = store.render(contact)
        journal.record_applied(
            str(payload["email"]),
            request=request,
            action="created" if created else "updated",
            status=status,
            changes=changes,
            state=rendered,
            details={"ignored": ignored, "contact_id": contact.id, **details},
        )
        return rendered, status

    @routes.post(CONTACTS_NEW)
    async def new_contact(request: web.Request) -> web.Response:
        denied = check_access(request, settings, edit=True)
        if denied is not None:
            return denied
        try:
            payload = await read_json_object(request)
            validate_payload(payload, store.known)
        except BadRequest as exc:
            return errors_response(400, exc.message, exc.details)
        rendered, status = apply(payload, forwarded_ip(request.headers.get("X-Forwarded-For")), request)
        return json_response({"contact": rendered}, status=status)

    @routes.post(CONTACTS_BATCH_NEW)
    async def batch_new_contacts(request: web.Request) -> web.Response:
        denied = check_access(request, settings, edit=True)
        if denied is not None:
            return denied
        try:
            items = await read_json_array(request)
        except BadRequest as exc:
            return errors_response(400, exc.message)
        if len(items) > settings.api_batch_max_limit:
            return errors_response(500, MSG_BATCH_LIMIT.format(limit=settings.api_batch_max_limit))
        # Like the single call, the request's X-Forwarded-For is recorded on the contact: here
        # on every contact of the batch, so a batching client must send IPs in ``ipAddress``.
        header_ip = forwarded_ip(request.headers.get("X-Forwarded-For"))
        contacts: dict[int, Any] = {}
        status_codes: dict[int, int] = {}
        errors: dict[int, Any] = {}
        for index, payload in enumerate(items):  # in order: a repeated email is created, then updated
            if not isinstance(payload, dict):
                errors[index] = batch_item_error(400, MSG_BATCH_ITEM_NOT_OBJECT)
                status_codes[index] = 400
                continue
            try:
                validate_payload(payload, store.known)
            except BadRequest as exc:
                errors[index] = batch_item_error(400, exc.message, exc.details)
                status_codes[index] = 400
                continue
            contacts[index], status_codes[index] = apply(payload, header_ip, request, batch_index=index)
        body: dict[str, Any] = {"contacts": php_array(contacts), "statusCodes": php_array(status_codes)}
        if errors:
            body["errors"] = php_array(errors)
        return json_response(body, status=201)  # 201 for the whole call, even when items failed

    @routes.get(CONTACTS_LIST)
    async def list_contacts(request: web.Request) -> web.Response:
        denied = check_access(request, settings, edit=False)
        if denied is not None:
            return denied
        try:
            limit = _non_negative_int(request, "limit", DEFAULT_LIST_LIMIT)
            start = _non_negative_int(request, "start", 0)
        except BadRequest as exc:
            return errors_response(400, exc.message)
        search = request.query.get("search", "").removeprefix("email:").lower()
        matches = [
            c for c in store.snapshot() if search in str(c["fields"]["all"].get("email") or "").lower()
        ]
        page = matches[start : start + limit]
        return json_response({"total": len(matches), "contacts": {str(c["id"]): c for c in page}})

    return routes


async def not_found(request: web.Request) -> web.Response:
    """Unknown API paths get Mautic's JSON 404; paths outside ``/api/`` get the UI's HTML 404."""
    path = request.path
    if path in (CONTACTS_NEW, CONTACTS_LIST, CONTACTS_BATCH_NEW):
        return errors_response(405, f"Method {request.method} is not allowed for {path}")
    if path.startswith(API_PREFIX):
        return errors_response(404, f"Requested URL not found: {path}")
    return web.Response(status=404, text=_HTML_404, content_type="text/html")


def create_app(
    *,
    username: str,
    password: str,
    api_enabled: bool = True,
    basic_auth_enabled: bool = True,
    can_edit_contacts: bool = True,
    custom_fields: Iterable[str] = DEFAULT_CUSTOM_FIELDS,
    faults: Faults | Mapping[str, Any] | None = None,
    api_batch_max_limit: int = DEFAULT_API_BATCH_MAX_LIMIT,
) -> web.Application:
    """A Mautic emulator app; serve it with ``server.start_in_thread`` or ``server.serve``.

    ``api_batch_max_limit`` is Mautic's setting of that name: the most contacts one
    ``/api/contacts/batch/new`` call may carry.
    """
    settings = MauticSettings(
        username=username,
        password=password,
        api_enabled=api_enabled,
        basic_auth_enabled=basic_auth_enabled,
        can_edit_contacts=can_edit_contacts,
        custom_fields=tuple(custom_fields),
        api_batch_max_limit=api_batch_max_limit,
    )
    store = MauticStore(settings)
    journal = Journal()
    injector = FaultInjector(faults)
    app = web.Application(
        middlewares=[journal_middleware(journal), fault_middleware(injector, MauticDialect())]
    )
    app[MAUTIC_STORE] = store

    def reset() -> None:
        store.clear()
        injector.restore()

    add_sandbox_routes(
        app, kind=KIND, journal=journal, state_name="contacts", snapshot=store.snapshot, reset=reset
    )
    add_fault_routes(app, injector)
    app.add_routes(_routes(settings, store, journal))
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
