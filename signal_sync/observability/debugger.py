"""The event debugger: confirm deliveries live on the worker's web server.

The seeds tell users to "confirm deliveries in the event debugger". ``install`` adds an
outcome observer that keeps the last N outcomes per integration (``recent.py``), each
with the redacted request behind it, and serves:

* ``GET /debugger`` — a self-contained page (HTML, vanilla JS and CSS from ``static/``,
  nothing loaded from elsewhere, so it works offline) that polls the API every second;
* ``GET /debugger/api/outcomes?integration=&status=&contact=&limit=`` — JSON, newest
  first. ``status`` may list several statuses separated by commas, ``contact`` is a
  contact_id (or a prefix of one) and ``limit`` caps the rows *per integration*.

What is kept is redacted before it is stored, so nothing secret can leak through the page
or the API: credentials in headers, URLs and bodies are replaced, and plaintext emails
are shown only for outcomes that carry ``email`` themselves (``outcomes.include_email``
on). Without it, emails in request bodies and errors are masked and the contact's own
address is masked in URLs, so the debugger never shows more than ``signal.deliveries``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import faust
import orjson
from faust.web import Request, Response, View

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

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)
_SECRET_KEY = re.compile(r"pass(word|wd)?$|secret|token|api[_-]?key|credential|authorization", re.IGNORECASE)
# Practical, not RFC 5322: no "/", "=", "?" or "&" in the local part, so an address in a
# URL path or query is found on its own rather than with the text before it.
_EMAIL = re.compile(r"[A-Za-z0-9._+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")

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


def _redact_header(name: str, value: Any) -> Any:
    if name.lower() not in _SECRET_HEADERS:
        return value
    text = str(value)
    if text.endswith(REDACTED):
        return text  # already redacted by Request.view(): "Basic <redacted>"
    scheme, _, rest = text.partition(" ")
    return f"{scheme} {REDACTED}" if rest else REDACTED


def _redact_value(value: Any, *, show_email: bool) -> Any:
    """Walk a request body: secret-looking keys hidden, emails masked unless shown."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SECRET_KEY.search(str(key)) else _redact_value(item, show_email=show_email)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item, show_email=show_email) for item in value]
    if isinstance(value, str) and not show_email:
        return mask_emails(value)
    return value


def _is_contact(email: str, contact_id: str | None) -> bool:
    normalized = email.strip().lower()
    return contact_id is not None and hashlib.sha256(normalized.encode()).hexdigest() == contact_id


def redact_url(url: str, *, show_email: bool, contact_id: str | None) -> str:
    """No userinfo, no secret query values; the contact's own email masked unless shown.

    Other addresses (a Mailgun list address in the path) are configuration, not personal
    data, and stay readable.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_emails(url) if not show_email else url
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs], safe="<>@")
    path = parts.path
    if not show_email:
        for found in set(_EMAIL.findall(unquote(path)) + _EMAIL.findall(unquote(query))):
            if _is_contact(found, contact_id):
                for form in {found, quote(found, safe="@"), quote(found, safe="")}:
                    path = path.replace(form, EMAIL_MASK)
                    query = query.replace(form, EMAIL_MASK)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_request(
    request: Mapping[str, Any] | None, *, show_email: bool, contact_id: str | None
) -> dict[str, Any] | None:
    """The request as the debugger shows it (input: ``Request.view()``, already credential-free)."""
    if request is None:
        return None
    shown: dict[str, Any] = {}
    for key, value in request.items():
        if key == "url" and isinstance(value, str):
            shown[key] = redact_url(value, show_email=show_email, contact_id=contact_id)
        elif key == "headers" and isinstance(value, Mapping):
            shown[key] = {
                name: _redact_value(_redact_header(name, item), show_email=show_email)
                for name, item in value.items()
            }
        elif key in ("json", "form"):
            shown[key] = _redact_value(value, show_email=show_email)
        elif key == "method":
            shown[key] = value
        else:  # anything new in Request.view() is shown only after the same scrubbing
            shown[key] = _redact_value(value, show_email=show_email)
    return shown


def redact_outcome(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the outcome for display; error texts lose emails unless the outcome has ``email``."""
    shown = dict(outcome)
    if not shown.get("email"):
        for key in ("error", "hint", "reason"):
            if isinstance(shown.get(key), str):
                shown[key] = mask_emails(shown[key])
    return shown


def redact(
    outcome: Mapping[str, Any], request: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Outcome and request (``Request.view()``) as the debugger shows them."""
    show_email = bool(outcome.get("email"))
    contact_id = outcome.get("contact_id") if isinstance(outcome.get("contact_id"), str) else None
    return redact_outcome(outcome), redact_request(request, show_email=show_email, contact_id=contact_id)


def shown(entry: Entry) -> dict[str, Any]:
    """One API row: the entry redacted now, when someone looks, rather than for every event."""
    request = entry.request.view() if entry.request is not None else None
    outcome, shown_request = redact(entry.outcome, request)
    return {**outcome, "seq": entry.seq, "request": shown_request}


# --- API ----------------------------------------------------------------------------------


def api_payload(
    recent: RecentOutcomes,
    query: Mapping[str, str],
    configured: Mapping[str, str],
) -> dict[str, Any]:
    """The JSON the page polls. Raises ``FilterError`` for bad parameters."""
    filters = Filters.from_query(query, max_limit=recent.capacity)
    entries = recent.query(filters)
    known = dict(configured)
    for integration in recent.integrations():
        known.setdefault(integration, "")
    return {
        "outcomes": [shown(entry) for entry in entries],
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


def register_views(
    app: faust.App,
    recent: RecentOutcomes,
    configured: Mapping[str, str],
    static: Mapping[str, tuple[bytes, str]],
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
            try:
                payload = api_payload(recent, query, configured)
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
    recent = RecentOutcomes(capacity)
    runtime.observers.append(recent.record)  # keeps references; ``shown`` redacts on request
    configured = {name: integration.type for name, integration in runtime.integrations.items()}
    register_views(runtime.app, recent, configured, load_static())
    return recent
