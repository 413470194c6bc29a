"""The event debugger: confirm deliveries live on the worker's web server.

The seeds tell users to "confirm deliveries in the event debugger". It is served only with
``debugger.enabled`` (off by default). ``install`` adds an outcome observer that keeps the
last N outcomes per integration (``recent.py``), each with the request behind it, and serves:

* ``GET /debugger`` — a self-contained page (HTML, vanilla JS and CSS from ``static/``,
  nothing loaded from elsewhere, so it works offline) that polls the API every second;
* ``GET /debugger/api/outcomes?integration=&status=&contact=&limit=`` — JSON, newest
  first. ``status`` may list several statuses separated by commas, ``contact`` is a
  contact_id (or a prefix of one) and ``limit`` caps the rows *per integration*.

**Who may read it.** The page and its static files hold no data and are served to anyone
who reaches the port. The API answers, else 401: with ``debugger.token`` set, only requests
with ``Authorization: Bearer <token>`` (from anywhere, loopback included, because a service
mesh's sidecar delivers every client from a loopback address); without one, only loopback
clients (``kubectl port-forward``, the same machine). The page takes the token from its URL
fragment (``/debugger#token=...``, never sent to the server) or a form, and keeps it for the
browser tab only.

**What it shows.** Everything is redacted when someone looks (``shown``), not when it is
kept: credentials in headers, URLs and bodies are always replaced. Unless
``debugger.show_personal_data`` is on, personal fields are masked *by field name* wherever
they appear (request bodies, headers, JSON carried inside form fields such as Mailgun's
``vars`` and ``members``): email, names, phone numbers, address fields, IP addresses; any
other email address in a text (error messages, URLs) is masked by pattern, internationalized
addresses included, and the outcome's own ``email`` field is left out.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import faust
import orjson
from faust.web import Request, Response, View

from signal_sync.identity import contact_id as sha256_contact_id
from signal_sync.observability.recent import (
    DEFAULT_CAPACITY,
    STATUSES,
    Entry,
    FilterError,
    Filters,
    RecentOutcomes,
)
from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)

PAGE_PATH = "/debugger"
API_PATH = "/debugger/api/outcomes"
STATIC_PREFIX = "/debugger/static/"

REDACTED = "<redacted>"
EMAIL_MASK = "<email redacted>"
PERSONAL_MASK = "<personal data redacted>"

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)
_SECRET_KEY = re.compile(r"pass(word|wd)?$|secret|token|api[_-]?key|credential|authorization", re.IGNORECASE)
# Practical, not RFC 5322: letters and digits of any script (internationalized addresses,
# RFC 6531) plus the usual punctuation; no "/", "=", "?" or "&" in the local part, so an
# address in a URL path or query is found on its own rather than with the text before it.
_EMAIL = re.compile(r"[\w.!#$%'*+^~-]+@[\w-]+(?:\.[\w-]+)+")


def _field_key(name: object) -> str:
    """``First_Name``, ``first-name`` and ``firstName`` → ``firstname``."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


# Personal fields by name (compared after ``_field_key``): what Mautic and Mailgun receive
# (email, firstname, lastname, phone, city, state, zipcode, country, ipAddress, Mailgun
# address / name and vars first_name / last_name, X-Forwarded-For) and their common spellings.
PERSONAL_FIELDS = frozenset(
    {
        # email
        "email", "emailaddress", "mail", "address",
        # names
        "name", "fullname", "firstname", "lastname", "middlename", "givenname", "familyname",
        "surname", "nickname", "username", "displayname",
        # phone
        "phone", "phonenumber", "mobile", "mobilephone", "mobilenumber", "cellphone", "telephone",
        "tel", "fax",
        # address
        "address1", "address2", "addressline1", "addressline2", "street", "streetaddress", "city",
        "town", "state", "province", "zip", "zipcode", "postalcode", "postcode", "country",
        # network address
        "ip", "ipaddress", "ipaddr", "clientip", "remoteip", "remoteaddr", "xforwardedfor", "xrealip",
        "forwarded", "trueclientip",
        # birth date
        "birthday", "birthdate", "dateofbirth", "dob",
    }
)  # fmt: skip

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Only our own files, only from our own origin: an event name can never become script.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# --- redaction ------------------------------------------------------------------------------


def mask_emails(text: str) -> str:
    """Every email address in ``text`` replaced by ``<email redacted>``."""
    return _EMAIL.sub(EMAIL_MASK, text)


def is_personal_field(name: object) -> bool:
    """Whether a field of this name holds personal data (email, name, phone, address, IP)."""
    return _field_key(name) in PERSONAL_FIELDS


def mask_personal(value: Any) -> Any:
    """A personal field's value as shown: emails as ``<email redacted>``, anything else as
    ``<personal data redacted>``; an empty value stays as it is."""
    if value is None or value == "" or isinstance(value, bool):
        return value
    if isinstance(value, str) and _EMAIL.fullmatch(value.strip()):
        return EMAIL_MASK
    return PERSONAL_MASK


def _embedded_json(text: str) -> Any:
    """The object or array a form field carries as JSON text (Mailgun ``vars``, ``members``)."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        found = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict | list) else None


def _redact_header(name: str, value: Any) -> Any:
    if name.lower() not in _SECRET_HEADERS:
        return value
    text = str(value)
    if text.endswith(REDACTED):
        return text  # already redacted by Request.view(): "Basic <redacted>"
    scheme, _, rest = text.partition(" ")
    return f"{scheme} {REDACTED}" if rest else REDACTED


def _redact_field(key: Any, item: Any, *, show_personal: bool) -> Any:
    if _SECRET_KEY.search(str(key)):
        return REDACTED
    if not show_personal and is_personal_field(key):
        return mask_personal(item)
    return _redact_value(item, show_personal=show_personal)


def _redact_value(value: Any, *, show_personal: bool) -> Any:
    """Walk a request body: secret-looking keys hidden; unless shown, personal fields masked by
    name and other emails by pattern. JSON carried in a string is walked the same way."""
    if isinstance(value, Mapping):
        return {key: _redact_field(key, item, show_personal=show_personal) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item, show_personal=show_personal) for item in value]
    if isinstance(value, str):
        embedded = _embedded_json(value)
        if embedded is not None:
            return orjson.dumps(_redact_value(embedded, show_personal=show_personal)).decode()
        return value if show_personal else mask_emails(value)
    return value


ContactIdOf = Callable[[str], str]
"""The outcomes' ``contact_id`` of a normalized email (sha256, or keyed: ``OutcomeBuilder.contact_id_of``)."""


def _is_contact(email: str, contact_id: str | None, contact_id_of: ContactIdOf = sha256_contact_id) -> bool:
    return contact_id is not None and contact_id_of(email.strip().lower()) == contact_id


def redact_url(
    url: str, *, show_personal: bool, contact_id: str | None, contact_id_of: ContactIdOf = sha256_contact_id
) -> str:
    """No userinfo, no secret query values; the contact's own email masked unless shown.

    Other addresses (a Mailgun list address in the path) are configuration, not personal
    data, and stay readable.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_emails(url) if not show_personal else url
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs], safe="<>@")
    path = parts.path
    if not show_personal:
        for found in set(_EMAIL.findall(unquote(path)) + _EMAIL.findall(unquote(query))):
            if _is_contact(found, contact_id, contact_id_of):
                for form in {found, quote(found, safe="@"), quote(found, safe="")}:
                    path = path.replace(form, EMAIL_MASK)
                    query = query.replace(form, EMAIL_MASK)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_request(
    request: Mapping[str, Any] | None,
    *,
    show_personal: bool,
    contact_id: str | None,
    contact_id_of: ContactIdOf = sha256_contact_id,
) -> dict[str, Any] | None:
    """The request as the debugger shows it (input: ``Request.view()``, already credential-free;
    an operation of several calls: ``{"calls": [view, ...]}``, each redacted the same way)."""
    if request is None:
        return None
    shown: dict[str, Any] = {}
    for key, value in request.items():
        if key == "calls" and isinstance(value, list):
            shown[key] = [
                redact_request(
                    call, show_personal=show_personal, contact_id=contact_id, contact_id_of=contact_id_of
                )
                if isinstance(call, Mapping)
                else _redact_value(call, show_personal=show_personal)
                for call in value
            ]
        elif key == "url" and isinstance(value, str):
            shown[key] = redact_url(
                value, show_personal=show_personal, contact_id=contact_id, contact_id_of=contact_id_of
            )
        elif key == "headers" and isinstance(value, Mapping):
            shown[key] = {
                name: mask_personal(item)
                if not show_personal and is_personal_field(name)
                else _redact_value(_redact_header(name, item), show_personal=show_personal)
                for name, item in value.items()
            }
        elif key in ("json", "form"):
            shown[key] = _redact_value(value, show_personal=show_personal)
        elif key == "method":
            shown[key] = value
        else:  # anything new in Request.view() is shown only after the same scrubbing
            shown[key] = _redact_value(value, show_personal=show_personal)
    return shown


def redact_outcome(outcome: Mapping[str, Any], *, show_personal: bool = False) -> dict[str, Any]:
    """A copy of the outcome for display: unless personal data is shown, without its ``email``
    and with any email address in its texts masked."""
    shown = dict(outcome)
    if not show_personal:
        shown.pop("email", None)
        for key in ("error", "hint", "reason"):
            if isinstance(shown.get(key), str):
                shown[key] = mask_emails(shown[key])
    return shown


def redact(
    outcome: Mapping[str, Any],
    request: Mapping[str, Any] | None,
    *,
    show_personal: bool = False,
    contact_id_of: ContactIdOf = sha256_contact_id,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Outcome and request (``Request.view()``) as the debugger shows them."""
    contact_id = outcome.get("contact_id") if isinstance(outcome.get("contact_id"), str) else None
    return (
        redact_outcome(outcome, show_personal=show_personal),
        redact_request(
            request, show_personal=show_personal, contact_id=contact_id, contact_id_of=contact_id_of
        ),
    )


def shown(
    entry: Entry, *, show_personal: bool = False, contact_id_of: ContactIdOf = sha256_contact_id
) -> dict[str, Any]:
    """One API row: the entry redacted now, when someone looks, rather than for every event."""
    request = entry.request.view() if entry.request is not None else None
    outcome, shown_request = redact(
        entry.outcome, request, show_personal=show_personal, contact_id_of=contact_id_of
    )
    return {**outcome, "seq": entry.seq, "request": shown_request}


# --- access ---------------------------------------------------------------------------------


def is_loopback(peer: str | None) -> bool:
    """Whether the client's socket address is a loopback address (headers are never trusted)."""
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def may_read(peer: str | None, authorization: str | None, token: str | None) -> bool:
    """With a token configured, exactly the requests that carry it; without one, loopback clients."""
    if token is None:
        return is_loopback(peer)
    offered = bearer_token(authorization)
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())


# --- API ----------------------------------------------------------------------------------


def api_payload(
    recent: RecentOutcomes,
    query: Mapping[str, str],
    configured: Mapping[str, str],
    *,
    show_personal: bool = False,
    contact_id_of: ContactIdOf = sha256_contact_id,
) -> dict[str, Any]:
    """The JSON the page polls. Raises ``FilterError`` for bad parameters."""
    filters = Filters.from_query(query, max_limit=recent.capacity)
    entries = recent.query(filters)
    known = dict(configured)
    for integration in recent.integrations():
        known.setdefault(integration, "")
    return {
        "outcomes": [
            shown(entry, show_personal=show_personal, contact_id_of=contact_id_of) for entry in entries
        ],
        "personal_data": "shown" if show_personal else "masked",
        "integrations": [{"id": name, "type": known[name]} for name in sorted(known)],
        "statuses": list(STATUSES),
        "counts": recent.counts(),
        "capacity": recent.capacity,
        "recorded": recent.recorded,
        "filters": {
            "integration": filters.integration,
            "status": sorted(filters.statuses) if filters.statuses else None,
            "contact": filters.contact,
            "limit": filters.limit or recent.capacity,
        },
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


# --- static files ---------------------------------------------------------------------------


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files (name → content, content type), read once from the package."""
    files: dict[str, tuple[bytes, str]] = {}
    try:
        folder = resources.files("signal_sync.observability") / "static"
        for item in folder.iterdir():
            suffix = "." + item.name.rpartition(".")[2] if "." in item.name else ""
            if item.is_file() and suffix in _CONTENT_TYPES:
                files[item.name] = (item.read_bytes(), _CONTENT_TYPES[suffix])
    except (FileNotFoundError, NotADirectoryError, OSError) as exc:
        log.warning("event debugger: static files not found (%s); /debugger will answer 503", exc)
    return files


# --- wiring ---------------------------------------------------------------------------------


def _json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


NEEDS_BEARER = "the event debugger's API needs Authorization: Bearer <debugger.token>"
UNAUTHORIZED_LOOPBACK = (
    "the event debugger's API answers loopback clients only (kubectl port-forward to the pod); "
    "set debugger.token to open it to others"
)


def register_views(
    app: faust.App,
    recent: RecentOutcomes,
    configured: Mapping[str, str],
    static: Mapping[str, tuple[bytes, str]],
    *,
    token: str | None = None,
    show_personal: bool = False,
    contact_id_of: ContactIdOf = sha256_contact_id,
) -> None:
    """Add the page, its static files and the API to the app's web server."""

    def page_response(view: View) -> Response:
        found = static.get("index.html")
        if found is None:
            return view.text("event debugger assets are missing from this installation", status=503)
        return view.bytes(found[0], headers={**_SECURITY_HEADERS, "Content-Type": found[1]})

    class DebuggerPage(View):
        async def get(self, request: Request) -> Response:
            return page_response(self)

    class DebuggerPageSlash(View):
        async def get(self, request: Request) -> Response:
            return page_response(self)

    class DebuggerStatic(View):
        async def get(self, request: Request, name: str) -> Response:
            found = static.get(name) if name != "index.html" else None
            if found is None:
                return self.text("not found", status=404)
            body, content_type = found
            return self.bytes(body, headers={**_SECURITY_HEADERS, "Content-Type": content_type})

    class DebuggerOutcomes(View):
        async def get(self, request: Request) -> Response:
            query = getattr(request, "query", {})
            headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
            if not may_read(getattr(request, "remote", None), request.headers.get("Authorization"), token):
                return self.bytes(
                    _json_bytes(
                        {
                            "error": NEEDS_BEARER if token is not None else UNAUTHORIZED_LOOPBACK,
                            "token_required": token is not None,
                        }
                    ),
                    content_type="application/json",
                    status=401,
                    headers={**headers, "WWW-Authenticate": 'Bearer realm="signal-sync debugger"'},
                )
            try:
                payload = api_payload(
                    recent, query, configured, show_personal=show_personal, contact_id_of=contact_id_of
                )
            except FilterError as exc:
                return self.bytes(
                    _json_bytes({"error": str(exc)}),
                    content_type="application/json",
                    status=400,
                    headers=headers,
                )
            return self.bytes(_json_bytes(payload), content_type="application/json", headers=headers)

    app.page(PAGE_PATH, name="signal_sync_debugger")(DebuggerPage)
    app.page(PAGE_PATH + "/", name="signal_sync_debugger_slash")(DebuggerPageSlash)
    app.page(STATIC_PREFIX + "{name}", name="signal_sync_debugger_static")(DebuggerStatic)
    app.page(API_PATH, name="signal_sync_debugger_outcomes")(DebuggerOutcomes)


def install(runtime: Runtime, capacity: int = DEFAULT_CAPACITY) -> RecentOutcomes:
    """Register the debugger's observer and pages on the runtime; returns its buffer."""
    settings = runtime.settings.debugger
    recent = RecentOutcomes(capacity)
    runtime.observers.append(recent.record)  # keeps references; ``shown`` redacts on request
    runtime.forgetters.append(recent.forget)  # an erased person's rows go with the person
    configured = {name: integration.type for name, integration in runtime.integrations.items()}
    token = settings.token.get_secret_value() if settings.token is not None else None
    register_views(
        runtime.app,
        recent,
        configured,
        load_static(),
        token=token,
        show_personal=settings.show_personal_data,
        contact_id_of=runtime.outcomes.contact_id_of,
    )
    return recent
