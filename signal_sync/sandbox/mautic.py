"""Mautic REST API emulator: the contact API Signal uses, as strict as Mautic itself.

Only what the Mautic integration touches is emulated, but that part is enforced the way a
real instance enforces it, so a client bug shows up here rather than in production:

* ``POST /api/contacts/new`` upserts on email (case-insensitive): 201 for a new contact
  (with a ``Location`` header), 200 for an existing one, body ``{"contact": {...}}`` shaped
  like Mautic's; ``contact.id`` is the id a later edit, DNC or delete call needs.
* ``POST /api/contacts/batch/new`` upserts a JSON array of contacts (at most
  ``api_batch_max_limit``, default 200; more is Mautic's HTTP 500). The answer is 201 even
  when items fail: ``statusCodes`` (201/200/error code) and ``errors`` are keyed by the
  item's index, and, like PHP's ``json_encode``, written as a list when the keys run
  0..n-1 and as an object keyed by index otherwise; each contact carries its ``id``.
* ``GET /api/contacts`` lists contacts (``limit``, ``start``, ``search``, ``where``,
  ``minimal``, ``orderBy``), filtering as Mautic does (``mautic_search``), with Mautic's
  cached total count (``count_cache_ttl_s``).
* ``GET /api/contacts/{id}``; ``PATCH /api/contacts/{id}/edit`` (404 for an unknown id, never
  creates); ``PUT /api/contacts/{id}/edit`` (creates a new contact, with a new id, for an
  unknown one, and clears the fields it does not send); ``DELETE /api/contacts/{id}/delete``
  (answers the deleted contact with ``id: null``; a later upsert of the email creates a new
  id); ``POST /api/contacts/{id}/dnc/{channel}/add`` and ``/remove`` with the rules of
  ``mautic_dnc``. An unknown id is ``404 Item was not found.`` before any permission check.
* Access checks in Mautic's order (``mautic_auth``): API enabled, Basic auth enabled (for a Basic
  header), an OAuth2 bearer token (``mautic_oauth``: ``/oauth/v2/token`` issues them for the
  client-credentials grant) or Basic credentials, then the user's permission (edit, create,
  delete). The checks before the controllers answer ``{"errors": [{"message", "code", "type"}]}``,
  the controllers ``{"errors": [{"code", "message", "details", "type"}]}`` (``mautic_errors``).
* Segments (``mautic_segments``): ``GET /api/segments[/{id}]``, adding and removing one contact,
  adding several, and ``GET /api/contacts/{id}/segments``; segments are set up through
  ``/_sandbox/segments`` or ``create_app(segments=...)``.
* Anything else under ``/api/`` is Mautic's JSON 404; a base URL carrying a path
  (``//api/...``, ``/mautic/api/...``) gets the HTML 404 of the web UI, as it would.
* ``email`` must be an address Mautic stores as given (``email_accepted``: its cleaning and
  ``FILTER_VALIDATE_EMAIL``), else 400 ``A valid email is required.``, for the single call and
  per item of a batch.
* Blank values (``""``/``null``) never wipe stored values; unknown aliases are ignored
  (custom fields must be created first, see ``custom_fields``); ``tags`` add ``foo`` and
  remove ``-foo``; ``doNotContact`` entries are applied as Mautic's contact form does;
  ``ipAddress`` and X-Forwarded-For are recorded; UTM parameters become ``utmtags`` entries,
  as the Mautic API does, not contact fields.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
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
    journal_middleware,
    json_response,
)
from signal_sync.sandbox.mautic_auth import authenticate, subscriber_check
from signal_sync.sandbox.mautic_dnc import (
    IS_CONTACTABLE,
    MANUAL,
    DncEntry,
    NonScalarInput,
    add_entry,
    create_entry,
    php_int,
    php_string,
    remove_entry,
    sanitize_special_chars,
    scalar,
    strip_tags,
)
from signal_sync.sandbox.mautic_errors import (
    MSG_ACCESS_DENIED,
    MSG_AUTH_DENIED,
    MSG_NOT_FOUND,
    TYPE_ACCESS_DENIED,
    auth_error,
    errors_response,
)
from signal_sync.sandbox.mautic_errors import MSG_API_DISABLED as MSG_API_DISABLED
from signal_sync.sandbox.mautic_errors import MSG_BASIC_DISABLED as MSG_BASIC_DISABLED
from signal_sync.sandbox.mautic_errors import MSG_BASIC_INVALID as MSG_BASIC_INVALID
from signal_sync.sandbox.mautic_oauth import (
    DEFAULT_ACCESS_TOKEN_LIFETIME_S,
    MAUTIC_TOKENS,
    TokenStore,
    add_oauth_control_routes,
    redact_secrets_middleware,
    token_routes,
)
from signal_sync.sandbox.mautic_oauth import OAuthClient as OAuthClient
from signal_sync.sandbox.mautic_search import NotEmulated, contact_filter, equal_to, parse_where
from signal_sync.sandbox.mautic_segments import ROUTE_METHODS as SEGMENT_ROUTE_METHODS
from signal_sync.sandbox.mautic_segments import (
    ContactAccess,
    Segment,
    SegmentStore,
    add_segment_control_routes,
    segment_routes,
)

KIND = "mautic"
API_PREFIX = "/api/"
CONTACTS_NEW = "/api/contacts/new"
CONTACTS_LIST = "/api/contacts"
CONTACTS_BATCH_NEW = "/api/contacts/batch/new"
CONTACT = "/api/contacts/{id:\\d+}"
CONTACT_EDIT = CONTACT + "/edit"
CONTACT_DELETE = CONTACT + "/delete"
CONTACT_DNC_ADD = CONTACT + "/dnc/{channel}/add"
CONTACT_DNC_REMOVE = CONTACT + "/dnc/{channel}/remove"
DEFAULT_API_BATCH_MAX_LIMIT = 200
DEFAULT_COUNT_CACHE_TTL_S = 5.0
"""Mautic's ``contact_api_count_cache_ttl`` (seconds): how long a list's ``total`` is reused."""
CORE_FIELDS = ("email", "firstname", "lastname", "phone", "company", "city", "state", "zipcode", "country")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
SPECIAL_FIELDS = ("ipAddress", "lastActive", "tags", "doNotContact")
DEFAULT_CUSTOM_FIELDS = ("signal_signup_method", "signal_lead_source")
LAST_ACTIVE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LIST_LIMIT = 30
ORDER_COLUMNS = {
    "id": "id",
    "email": "email",
    "firstname": "firstname",
    "lastname": "lastname",
    "date_added": "date_added",
    "dateAdded": "date_added",
    "last_active": "last_active",
    "lastActive": "last_active",
}
"""``orderBy`` values the list emulates (camelCase properties are converted as Mautic does)."""
MINIMAL_DROPS = ("lastActive", "ipAddresses", "tags", "utmtags", "doNotContact")
"""What ``minimal`` leaves out: the ``leadDetails`` group's properties (``leadList`` keeps the rest)."""

MSG_RATE_LIMITED = "You exceeded the rate limit of {limit} API calls per hour."
RATE_LIMIT_PER_HOUR = 100
MSG_BATCH_LIMIT = "A max of {limit} entities are supported at a time."
MSG_BATCH_ITEM_NOT_OBJECT = "Each contact of a batch must be a JSON object."
MSG_INVALID_REASON = "Invalid reason code given"
MSG_INVALID_REASON_DETAIL = "Reason code needs to be an integer and higher than 0."
MSG_INVALID_JSON_BODY = "Invalid json message received"
MSG_MERGE_NOT_EMULATED = (
    "email: another contact (#{other}) has this address; Mautic would merge the two contacts (not emulated)."
)
MSG_DUPLICATE_NOT_EMULATED = (
    "email: contact #{other} has this address; Mautic would create a second contact with it (not emulated)."
)

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
_DEFAULT_MESSAGES = {403: MSG_ACCESS_DENIED}
_HTML_404 = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
)
_ROUTE_METHODS = (
    (re.compile(r"^/api/contacts$"), ("GET",)),
    (re.compile(r"^/api/contacts/new$"), ("POST",)),
    (re.compile(r"^/api/contacts/batch/new$"), ("POST",)),
    (re.compile(r"^/api/contacts/\d+$"), ("GET",)),
    (re.compile(r"^/api/contacts/\d+/edit$"), ("PUT", "PATCH")),
    (re.compile(r"^/api/contacts/\d+/delete$"), ("DELETE",)),
    (re.compile(r"^/api/contacts/\d+/dnc/[^/]+/(?:add|remove)$"), ("POST",)),
    (re.compile(r"^/oauth/v2/token$"), ("GET", "HEAD", "POST")),
    *SEGMENT_ROUTE_METHODS,
)
"""The emulated routes and their methods: a known path with another method is a 405."""


class MauticDialect:
    """How faults are worded by Mautic: errors JSON; 429 with ``X-RateLimit-*`` headers.

    Mautic's rate limiter announces the window end as a Unix time in ``X-RateLimit-Reset``
    and sends no ``Retry-After``, so a client must understand both styles.
    """

    def error(self, status: int, message: str | None = None) -> web.Response:
        if status == 401:  # every 401 of Mautic's comes from the auth checks, in their shape
            return auth_error(401, message or MSG_AUTH_DENIED, TYPE_ACCESS_DENIED)
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
    can_delete_contacts: bool = True
    custom_fields: tuple[str, ...] = DEFAULT_CUSTOM_FIELDS
    api_batch_max_limit: int = DEFAULT_API_BATCH_MAX_LIMIT
    count_cache_ttl_s: float = DEFAULT_COUNT_CACHE_TTL_S

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
    dnc: list[DncEntry] = field(default_factory=list)

    @property
    def email_key(self) -> str | None:
        """The lowercased email the contact is found by, None for a contact without one."""
        email = self.fields.get("email")
        return str(email).lower() if not is_blank(email) else None

    @property
    def journal_key(self) -> str:
        """The key of the contact's applied log: its email, or ``contact:<id>`` without one."""
        return self.email_key or f"contact:{self.id}"


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


def validate_payload(payload: Mapping[str, Any], known: Iterable[str], *, require_email: bool = True) -> None:
    """Raise ``BadRequest`` for what Mautic's contact form would reject.

    ``require_email``: the upserts need an email; an edit of a known contact only checks one
    that is sent."""
    email = payload.get("email")
    if (require_email or not is_blank(email)) and (is_blank(email) or not email_accepted(email)):
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
        elif alias == "doNotContact":
            _validate_dnc_payload(value)
        elif isinstance(value, dict | list):
            raise _field_error(alias, "This value should be of type string.")


def _validate_dnc_payload(value: Any) -> None:
    """``doNotContact`` entries must be objects (Mautic fails with a 500 on anything else);
    a value that is not a list or object is ignored, as Mautic ignores it."""
    entries = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    if any(not isinstance(entry, dict) for entry in entries):
        raise _field_error("doNotContact", "Each entry must be an object with channel, reason and comments.")


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


class Conflict(BadRequest):
    """An edit that would make Mautic merge or duplicate contacts, which is not emulated."""


class MauticStore:
    """Contacts by id with an index by lowercased email, the tag registry that gives tags their
    ids, and the list call's cached totals."""

    def __init__(self, settings: MauticSettings) -> None:
        self.settings = settings
        self.known = frozenset(settings.field_aliases + UTM_FIELDS + SPECIAL_FIELDS)
        self.columns = frozenset(("id", *settings.field_aliases))
        self.clear()

    def clear(self) -> None:
        self.contacts: dict[int, Contact] = {}
        self.by_email: dict[str, int] = {}
        self.tag_ids: dict[str, int] = {}
        self._next_id = 1
        self._next_dnc_id = 1
        self._count_cache: dict[Any, tuple[int, float]] = {}

    def get(self, contact_id: int) -> Contact | None:
        return self.contacts.get(contact_id)

    def find(self, email: str) -> Contact | None:
        contact_id = self.by_email.get(email.lower())
        return None if contact_id is None else self.contacts.get(contact_id)

    def _create(self) -> Contact:
        now = _now()
        contact = Contact(id=self._next_id, date_added=now, date_modified=now)
        self._next_id += 1
        self.contacts[contact.id] = contact
        return contact

    def _reindex(self, contact: Contact, old_key: str | None) -> None:
        new_key = contact.email_key
        if old_key is not None and old_key != new_key and self.by_email.get(old_key) == contact.id:
            del self.by_email[old_key]
        if new_key is not None:
            self.by_email[new_key] = contact.id

    def _owner_of(self, email: Any, contact: Contact | None) -> Contact | None:
        """Another contact that already has ``email``, if any."""
        if is_blank(email):
            return None
        other = self.find(str(email))
        return other if other is not None and other is not contact else None

    def upsert(
        self, payload: Mapping[str, Any], header_ip: str | None
    ) -> tuple[Contact, bool, dict[str, Any], list[str]]:
        """Apply a validated payload; returns the contact, created?, what changed, what was ignored."""
        contact = self.find(str(payload["email"]))
        created = contact is None
        if contact is None:
            contact = self._create()
        changes, ignored = self._apply(contact, payload, header_ip, created=created, clear_missing=False)
        return contact, created, changes, ignored

    def edit(
        self,
        contact: Contact | None,
        payload: Mapping[str, Any],
        header_ip: str | None,
        *,
        clear_missing: bool,
    ) -> tuple[Contact, dict[str, Any], list[str]]:
        """``PATCH``/``PUT /api/contacts/{id}/edit``: a validated payload applied to ``contact``, or
        to a new contact when None (``PUT`` of an unknown id). ``Conflict`` when the email belongs
        to another contact."""
        other = self._owner_of(payload.get("email"), contact)
        if other is not None:
            template = MSG_MERGE_NOT_EMULATED if contact is not None else MSG_DUPLICATE_NOT_EMULATED
            raise Conflict(template.format(other=other.id))
        created = contact is None
        target = self._create() if contact is None else contact
        changes, ignored = self._apply(
            target, payload, header_ip, created=created, clear_missing=clear_missing
        )
        return target, changes, ignored

    def _apply(
        self,
        contact: Contact,
        payload: Mapping[str, Any],
        header_ip: str | None,
        *,
        created: bool,
        clear_missing: bool,
    ) -> tuple[dict[str, Any], list[str]]:
        old_key = contact.email_key
        contact.date_modified = _now()
        changes: dict[str, Any] = {}
        for alias in self.settings.field_aliases:
            value = payload.get(alias)
            if not is_blank(value):
                contact.fields[alias] = changes[alias] = value
            elif clear_missing and contact.fields.get(alias) is not None:
                contact.fields[alias] = changes[alias] = None
        self._reindex(contact, old_key)
        self._apply_last_active(contact, payload.get("lastActive"), changes)
        self._apply_utm(contact, payload, changes)
        self._apply_tags(contact, payload.get("tags"), changes)
        self._apply_dnc_payload(contact, payload.get("doNotContact"), created, changes)
        ignored = sorted(k for k in payload if k not in self.known)
        body_ip = payload.get("ipAddress")
        if not is_blank(body_ip) and valid_ip(body_ip) is None:
            ignored.append("ipAddress")
        self._apply_ips(contact, [valid_ip(body_ip), header_ip], changes)
        return changes, ignored

    def delete(self, contact: Contact) -> None:
        """Remove the contact (its DNC entries go with it); its id is never given again."""
        del self.contacts[contact.id]
        key = contact.email_key
        if key is not None and self.by_email.get(key) == contact.id:
            del self.by_email[key]

    def _new_dnc_id(self) -> int:
        self._next_dnc_id += 1
        return self._next_dnc_id - 1

    def add_dnc(
        self, contact: Contact, *, channel: str, reason: int, comments: str, channel_id: int | None
    ) -> tuple[str, DncEntry | None]:
        """``POST .../dnc/{channel}/add``: see ``mautic_dnc.add_entry``."""
        outcome, entry = add_entry(
            contact.dnc,
            channel=channel,
            reason=reason,
            comments=comments,
            channel_id=channel_id or None,
            new_id=self._next_dnc_id,
            now=_now(),
        )
        if outcome == "added":
            self._new_dnc_id()
        if outcome != "unchanged":
            contact.date_modified = _now()
        return outcome, entry

    def remove_dnc(self, contact: Contact, channel: str) -> DncEntry | None:
        """``POST .../dnc/{channel}/remove``: the channel's first entry, whatever its reason."""
        removed = remove_entry(contact.dnc, channel)
        if removed is not None:
            contact.date_modified = _now()
        return removed

    def _apply_dnc_payload(
        self, contact: Contact, value: Any, created: bool, changes: dict[str, Any]
    ) -> None:
        """``doNotContact`` in a contact payload (``LeadApiController::preSaveEntity``)."""
        entries = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        applied = []
        for item in entries:
            channel = php_string(item.get("channel")) or "email"
            comments = item.get("comments")
            comments = strip_tags(php_string(comments)) if comments not in (None, "", "0", 0, False) else ""
            reason = php_int(item.get("reason", MANUAL))
            if reason == IS_CONTACTABLE:
                if not created:
                    removed = remove_entry(contact.dnc, channel)
                    applied.append({"channel": channel, "removed": removed is not None})
            elif created:
                entry = create_entry(
                    contact.dnc,
                    channel=channel,
                    reason=reason,
                    comments=comments,
                    new_id=self._new_dnc_id(),
                    now=_now(),
                )
                applied.append({"channel": channel, "added": entry.to_json()})
            else:
                outcome, _ = self.add_dnc(
                    contact, channel=channel, reason=reason, comments=comments, channel_id=None
                )
                applied.append({"channel": channel, outcome: reason})
        if applied:
            changes["doNotContact"] = applied

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

    def render(self, contact: Contact, *, deleted: bool = False) -> dict[str, Any]:
        """The contact as Mautic's API returns it; a deleted one has ``id: null`` (Doctrine
        clears the id of a removed entity before the answer is serialized)."""
        contact_id = None if deleted else contact.id
        all_fields = {"id": contact_id} | {a: contact.fields.get(a) for a in self.settings.field_aliases}
        return {
            "id": contact_id,
            "isPublished": True,
            "dateAdded": contact.date_added,
            "dateModified": contact.date_modified,
            "points": 0,
            "lastActive": contact.last_active,
            "ipAddresses": {ip: {"ipAddress": ip, "ipDetails": {}} for ip in contact.ip_addresses},
            "tags": [{"id": self.tag_ids.get(t, 0), "tag": t} for t in contact.tags],
            "utmtags": list(contact.utmtags),
            "doNotContact": [entry.to_json() for entry in contact.dnc],
            "fields": {"all": all_fields},
        }

    def row(self, contact: Contact) -> dict[str, Any]:
        """The contact's columns, as the list filters see them."""
        return {"id": contact.id} | {a: contact.fields.get(a) for a in self.settings.field_aliases}

    def search(
        self, search: str, where: list[dict[str, str]], order: tuple[str, bool] | None
    ) -> list[Contact]:
        """Contacts matching ``search`` and ``where``, in Mautic's order: ``last_active`` newest
        first (never active last), unless ``order`` = (column, descending) says otherwise."""
        matches = contact_filter(search, where, self.columns)
        found = [c for c in self._candidates(where) if matches(self.row(c))]
        if order is None:
            return sorted(found, key=lambda c: (c.last_active is None, _desc(c.last_active), c.id))
        column, descending = order  # MySQL: NULLs first ascending, last descending
        nulls = [c for c in found if _sort_value(c, column) is None]
        rest = sorted(
            (c for c in found if _sort_value(c, column) is not None),
            key=lambda c: (_sort_value(c, column), c.id),
            reverse=descending,
        )
        return rest + nulls if descending else nulls + rest

    def _candidates(self, where: list[dict[str, str]]) -> Iterable[Contact]:
        """The contacts a filter can match: through the email index when a clause asks for exact
        addresses (a lookup by email reads one contact, not every one), else all of them."""
        emails = equal_to(where, "email")
        if emails is None:
            return self.contacts.values()
        ids = (self.by_email.get(email) for email in emails)
        return [self.contacts[i] for i in sorted(i for i in ids if i is not None)]

    def total(self, key: Any, count: int) -> int:
        """The list's ``total``: ``count``, or the one cached for the same filter within
        ``count_cache_ttl_s`` (Mautic caches the count query's result)."""
        now = time.monotonic()
        cached = self._count_cache.get(key)
        if cached is not None and now - cached[1] < self.settings.count_cache_ttl_s:
            return cached[0]
        self._count_cache[key] = (count, now)
        return count

    def snapshot(self) -> list[dict[str, Any]]:
        """Every contact, in creation order."""
        return [self.render(c) for c in sorted(self.contacts.values(), key=lambda c: c.id)]


class _Reversed(str):
    """A string that sorts backwards (for a descending key inside an ascending sort)."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)


def _desc(value: str | None) -> str:
    return _Reversed(value or "")


def _sort_value(contact: Contact, column: str) -> Any:
    if column == "id":
        return contact.id
    if column == "date_added":
        return contact.date_added
    if column == "last_active":
        return contact.last_active
    value = contact.fields.get(column)
    return None if value is None else str(value).lower()


MAUTIC_STORE = web.AppKey("mautic_store", MauticStore)
MAUTIC_SEGMENTS = web.AppKey("mautic_segments", SegmentStore)


def check_api_access(request: web.Request, settings: MauticSettings) -> web.Response | None:
    """The checks every API call passes first, in Mautic's order (``mautic_auth``); None when it
    may proceed."""
    return authenticate(
        request,
        api_enabled=settings.api_enabled,
        basic_auth_enabled=settings.basic_auth_enabled,
        username=settings.username,
        password=settings.password,
    )


def check_access(request: web.Request, settings: MauticSettings, *, edit: bool) -> web.Response | None:
    """API access, then (``edit``) the permission to create and edit contacts."""
    denied = check_api_access(request, settings)
    if denied is None and edit and not settings.can_edit_contacts:
        return errors_response(403, MSG_ACCESS_DENIED)
    return denied


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


async def read_parameters(request: web.Request) -> dict[str, Any]:
    """``$request->request`` as Mautic sees it: a form, or a JSON body decoded by FOSRest's body
    listener (a JSON array gives no named parameters); no body, no parameters."""
    if request.content_type in FORM_TYPES:
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.read()
    if request.content_type != "application/json" or not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(MSG_INVALID_JSON_BODY) from None
    if isinstance(body, dict):
        return body
    if isinstance(body, list):
        return {}
    raise BadRequest(MSG_INVALID_JSON_BODY)


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


def php_truthy(value: str | None) -> bool:
    """A query parameter as PHP's ``if ($value)`` reads it: ``""`` and ``"0"`` are false."""
    return value not in (None, "", "0")


def _order(request: web.Request) -> tuple[str, bool] | None:
    raw = request.query.get("orderBy", "")
    if raw == "":
        return None
    column = ORDER_COLUMNS.get(raw.strip())
    if column is None:
        raise NotEmulated(f"orderBy: {raw!r} is not emulated (one of {', '.join(sorted(ORDER_COLUMNS))})")
    return column, request.query.get("orderByDir", "ASC").strip().upper() == "DESC"


def _routes(
    settings: MauticSettings, store: MauticStore, journal: Journal, segments: SegmentStore
) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def journal_change(
        contact: Contact,
        request: web.Request,
        action: str,
        status: int,
        changes: dict[str, Any],
        **details: Any,
    ) -> dict[str, Any]:
        rendered = store.render(contact, deleted=action == "deleted")
        journal.record_applied(
            contact.journal_key,
            request=request,
            action=action,
            status=status,
            changes=changes,
            state=rendered,
            details={"contact_id": contact.id, **details},
        )
        return rendered

    def apply(
        payload: dict[str, Any], header_ip: str | None, request: web.Request, **details: Any
    ) -> tuple[dict[str, Any], int, Contact]:
        """Upsert one validated contact and journal it: the rendered contact, 201/200, the contact."""
        contact, created, changes, ignored = store.upsert(payload, header_ip)
        status = 201 if created else 200
        action = "created" if created else "updated"
        rendered = journal_change(contact, request, action, status, changes, ignored=ignored, **details)
        return rendered, status, contact

    def location(request: web.Request, contact: Contact) -> dict[str, str]:
        """The ``Location`` header Mautic sends with a 201: the new contact's URL."""
        return {"Location": f"{request.url.origin()}/api/contacts/{contact.id}"}

    def lookup(request: web.Request, *, permitted: bool = True) -> Contact | web.Response:
        """The contact of the path's id, after API access and before the permission, in Mautic's
        order: the access error, 404 for an unknown id, 403 unless ``permitted``."""
        denied = check_api_access(request, settings)
        if denied is not None:
            return denied
        contact = store.get(int(request.match_info["id"]))
        if contact is None:
            return errors_response(404, MSG_NOT_FOUND)
        return contact if permitted else errors_response(403, MSG_ACCESS_DENIED)

    def journal_dnc(
        contact: Contact, request: web.Request, action: str, entry: DncEntry | None
    ) -> dict[str, Any]:
        """Journal a do-not-contact change of the path's channel (``entry``: the entry added or
        removed, None when nothing changed); the rendered contact."""
        changes = {"doNotContact": entry.to_json()} if entry is not None else {}
        return journal_change(contact, request, action, 200, changes, channel=request.match_info["channel"])

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
        rendered, status, contact = apply(
            payload, forwarded_ip(request.headers.get("X-Forwarded-For")), request
        )
        headers = location(request, contact) if status == 201 else None
        return json_response({"contact": rendered}, status=status, headers=headers)

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
            contacts[index], status_codes[index], _ = apply(payload, header_ip, request, batch_index=index)
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
            search = request.query.get("search", "")
            where = parse_where(request.query)
            found = store.search(search, where, _order(request))
        except (BadRequest, NotEmulated) as exc:
            return errors_response(400, str(exc))
        except ValueError as exc:  # a where clause without expr or col: Mautic's uncaught exception
            return errors_response(500, str(exc))
        cache_key = (search.strip().lower(), tuple(tuple(sorted(c.items())) for c in where))
        total = store.total(cache_key, len(found))
        page = [] if total == 0 else found if limit == 0 else found[start : start + limit]
        minimal = php_truthy(request.query.get("minimal"))
        contacts = {}
        for contact in page:
            rendered = store.render(contact)
            for name in MINIMAL_DROPS if minimal else ():
                del rendered[name]
            contacts[str(contact.id)] = rendered
        return json_response({"total": total, "contacts": contacts})

    @routes.get(CONTACT)
    async def get_contact(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        return json_response({"contact": store.render(found)})

    async def edit_contact(request: web.Request, *, put: bool) -> web.Response:
        denied = check_api_access(request, settings)
        if denied is not None:
            return denied
        contact = store.get(int(request.match_info["id"]))
        if contact is None and not put:
            return errors_response(404, MSG_NOT_FOUND)  # PATCH requires that the contact exists
        if not settings.can_edit_contacts:
            return errors_response(403, MSG_ACCESS_DENIED)
        try:
            payload = await read_json_object(request)
            validate_payload(payload, store.known, require_email=False)
            header_ip = forwarded_ip(request.headers.get("X-Forwarded-For"))
            target, changes, ignored = store.edit(contact, payload, header_ip, clear_missing=put)
        except BadRequest as exc:
            return errors_response(400, exc.message, exc.details)
        status = 201 if contact is None else 200
        action = "created" if contact is None else "updated"
        rendered = journal_change(
            target, request, action, status, changes, ignored=ignored, method=request.method
        )
        headers = location(request, target) if status == 201 else None
        return json_response({"contact": rendered}, status=status, headers=headers)

    @routes.patch(CONTACT_EDIT)
    async def patch_contact(request: web.Request) -> web.Response:
        return await edit_contact(request, put=False)

    @routes.put(CONTACT_EDIT)
    async def put_contact(request: web.Request) -> web.Response:
        return await edit_contact(request, put=True)

    @routes.delete(CONTACT_DELETE)
    async def delete_contact(request: web.Request) -> web.Response:
        found = lookup(request, permitted=settings.can_delete_contacts)
        if isinstance(found, web.Response):
            return found
        store.delete(found)
        segments.forget_contact(found.id)
        rendered = journal_change(found, request, "deleted", 200, {})
        return json_response({"contact": rendered})

    @routes.post(CONTACT_DNC_ADD)
    async def add_dnc(request: web.Request) -> web.Response:
        found = lookup(request, permitted=settings.can_edit_contacts)
        if isinstance(found, web.Response):
            return found
        try:
            body = await read_parameters(request)
            channel_id = php_int(scalar(body, "channelId"))
            reason = php_int(scalar(body, "reason") if "reason" in body else MANUAL)
            comments = strip_tags(sanitize_special_chars(php_string(scalar(body, "comments"))))
        except (BadRequest, NonScalarInput) as exc:
            return errors_response(400, str(exc))
        if reason == IS_CONTACTABLE:
            return errors_response(400, MSG_INVALID_REASON, [MSG_INVALID_REASON_DETAIL])
        outcome, entry = store.add_dnc(
            found,
            channel=request.match_info["channel"],
            reason=reason,
            comments=comments,
            channel_id=channel_id,
        )
        return json_response({"contact": journal_dnc(found, request, f"dnc_{outcome}", entry)})

    @routes.post(CONTACT_DNC_REMOVE)
    async def remove_dnc(request: web.Request) -> web.Response:
        found = lookup(request, permitted=settings.can_edit_contacts)
        if isinstance(found, web.Response):
            return found
        removed = store.remove_dnc(found, request.match_info["channel"])
        action = "dnc_removed" if removed is not None else "dnc_not_found"
        rendered = journal_dnc(found, request, action, removed)
        return json_response({"recordFound": removed is not None, "contact": rendered})

    return routes


async def not_found(request: web.Request) -> web.Response:
    """Unknown API paths get Mautic's JSON 404 (405 for a known path with another method);
    paths outside ``/api/`` get the UI's HTML 404."""
    path = request.path
    for pattern, methods in _ROUTE_METHODS:
        if pattern.match(path) and request.method not in methods:
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
    can_delete_contacts: bool = True,
    custom_fields: Iterable[str] = DEFAULT_CUSTOM_FIELDS,
    faults: Faults | Mapping[str, Any] | None = None,
    api_batch_max_limit: int = DEFAULT_API_BATCH_MAX_LIMIT,
    count_cache_ttl_s: float = DEFAULT_COUNT_CACHE_TTL_S,
    oauth_clients: Iterable[OAuthClient] = (),
    access_token_lifetime_s: int = DEFAULT_ACCESS_TOKEN_LIFETIME_S,
    segments: Iterable[str | Mapping[str, Any]] = (),
) -> web.Application:
    """A Mautic emulator app; serve it with ``server.start_in_thread`` or ``server.serve``.

    ``api_batch_max_limit`` is Mautic's setting of that name: the most contacts one
    ``/api/contacts/batch/new`` call may carry. ``count_cache_ttl_s`` is Mautic's
    ``contact_api_count_cache_ttl``: a list call's ``total`` is reused for the same filter that
    long (0 turns the cache off). ``oauth_clients`` are the OAuth2 API credentials
    (``mautic_oauth.new_client()`` makes one in Mautic's form) whose access tokens live
    ``access_token_lifetime_s`` whole seconds (Mautic's ``api_oauth2_access_token_lifetime``, in
    minutes there). ``segments`` are created in order with ids from 1: names, or
    ``{name, alias, description, isPublished, isGlobal}``.
    """
    settings = MauticSettings(
        username=username,
        password=password,
        api_enabled=api_enabled,
        basic_auth_enabled=basic_auth_enabled,
        can_edit_contacts=can_edit_contacts,
        can_delete_contacts=can_delete_contacts,
        custom_fields=tuple(custom_fields),
        api_batch_max_limit=api_batch_max_limit,
        count_cache_ttl_s=count_cache_ttl_s,
    )
    store = MauticStore(settings)
    tokens = TokenStore(oauth_clients, access_token_lifetime_s)
    segment_store = SegmentStore(segments)
    journal = Journal()
    injector = FaultInjector(faults)
    app = web.Application(
        middlewares=[
            journal_middleware(journal),
            redact_secrets_middleware(),
            fault_middleware(injector, MauticDialect()),
        ]
    )
    app[MAUTIC_STORE] = store
    app[MAUTIC_TOKENS] = tokens
    app[MAUTIC_SEGMENTS] = segment_store

    def reset() -> None:
        store.clear()
        tokens.clear()
        segment_store.reset()
        injector.restore()

    def journal_membership(contact_id: int, request: web.Request, action: str, segment: Segment) -> None:
        contact = store.get(contact_id)
        if contact is None:
            return
        journal.record_applied(
            contact.journal_key,
            request=request,
            action=action,
            status=200,
            changes={"segment": {"id": segment.id, "alias": segment.alias}},
            state={"segments": [s.id for s, _ in segment_store.of_contact(contact_id)]},
            details={"contact_id": contact_id, "segment_id": segment.id},
        )

    access = ContactAccess(
        check_api_access=lambda request: check_api_access(request, settings),
        contact_exists=lambda contact_id: store.get(contact_id) is not None,
        can_edit_contacts=settings.can_edit_contacts,
        journal=journal_membership,
    )
    add_sandbox_routes(
        app, kind=KIND, journal=journal, state_name="contacts", snapshot=store.snapshot, reset=reset
    )
    add_fault_routes(app, injector)
    add_oauth_control_routes(app, tokens)
    add_segment_control_routes(app, segment_store)
    app.add_routes(_routes(settings, store, journal, segment_store))
    app.add_routes(
        token_routes(
            lambda request: subscriber_check(
                request, api_enabled=settings.api_enabled, basic_auth_enabled=settings.basic_auth_enabled
            )
        )
    )
    app.add_routes(segment_routes(segment_store, access))
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
