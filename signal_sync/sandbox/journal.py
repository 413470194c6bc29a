"""What the sandbox saw and what it did: a request log and a per-contact log of applied changes.

Tests of the worker cannot assert on a destination's final state alone: "the last write
wins" hides reordering, duplicates and writes that should never have been sent. So every
API request is journaled on arrival (method, path, status, redacted Authorization,
X-Forwarded-For, decoded body, injected fault), and every change a request applied (an
upsert, an edit, a do-not-contact entry, a delete, an unsubscribe) is appended, in arrival
order, to the log of its contact (key: lowercased email).

Both are read over HTTP through ``/_sandbox/requests`` and ``/_sandbox/log/{email}``,
which need no API credentials and are never faulted. Secrets never enter the journal:
the Authorization header is stored as ``Basic <redacted>``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiDictProxy

SANDBOX_PREFIX = "/_sandbox/"
FAULT_KEY = web.RequestKey("sandbox_fault", str)
"""Request key where the fault middleware names the fault it applied."""
SEQ_KEY = web.RequestKey("sandbox_seq", int)
"""Request key holding the journal sequence number of the request."""
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """orjson-encoded JSON answer; every sandbox JSON body goes through here."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def is_control_path(path: str) -> bool:
    """True for the sandbox's own routes, which are neither journaled nor faulted."""
    return path.startswith(SANDBOX_PREFIX)


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def redact_authorization(value: str | None) -> str | None:
    """Keep the scheme (so tests see *how* the client authenticated), drop the secret."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    return f"{scheme} <redacted>" if rest else "<redacted>"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from a Basic Authorization header, None if absent or malformed.

    Hand-rolled because aiohttp 3.14 deprecates ``BasicAuth``; both emulators use it.
    """
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def credentials_match(header: str | None, user: str, password: str) -> bool:
    """Constant-time check of a Basic Authorization header against one user/password."""
    creds = basic_credentials(header)
    if creds is None:
        return False
    user_ok = hmac.compare_digest(creds[0].encode(), user.encode())
    password_ok = hmac.compare_digest(creds[1].encode(), password.encode())
    return user_ok and password_ok


async def decode_body(request: web.Request) -> Any:
    """The request body as the destination would read it: JSON, form fields or text.

    Form bodies are read with ``request.post()``, which caches the result, and other
    bodies with ``request.read()``, also cached, so handlers can read them again.
    """
    if not request.body_exists:
        return None
    if request.content_type in FORM_TYPES:
        try:
            return form_to_dict(await request.post())
        except web.HTTPException:
            raise
        except Exception:  # a malformed multipart body; the handler answers 400 for it
            return "<undecodable form body>"
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def form_to_dict(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """Flatten a form; a repeated key becomes a list, a file becomes its name."""
    out: dict[str, Any] = {}
    for key in form.keys():
        values = [
            v if isinstance(v, str) else f"<file {getattr(v, 'filename', '?')}>" for v in form.getall(key)
        ]
        out[key] = values[0] if len(values) == 1 else values
    return out


@dataclass
class RequestRecord:
    """One API request as received, completed with its status once answered."""

    seq: int
    at: str
    method: str
    path: str
    query: str
    authorization: str | None
    x_forwarded_for: str | None
    content_type: str | None
    body: Any = None
    status: int | None = None
    fault: str | None = None
    duration_ms: float | None = None


@dataclass
class AppliedUpsert:
    """One upsert that changed state: what was applied and the contact right after."""

    seq: int
    request_seq: int | None
    at: str
    key: str
    action: str
    status: int
    changes: dict[str, Any]
    state: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


RECORD_KEY = web.RequestKey("sandbox_record", RequestRecord)
"""Request key holding the request's journal record, so a fault is visible while it lasts."""


def mark_fault(request: web.Request, fault: str) -> None:
    """Name the fault applied to ``request``, immediately visible in ``/_sandbox/requests``."""
    request[FAULT_KEY] = fault
    record = request.get(RECORD_KEY)
    if record is not None:
        record.fault = fault


class Journal:
    """In-memory request log (bounded) and per-contact applied log (unbounded)."""

    def __init__(self, max_requests: int = 50_000) -> None:
        self._requests: deque[RequestRecord] = deque(maxlen=max_requests)
        self._applied: dict[str, list[AppliedUpsert]] = {}
        self._seq = 0
        self._applied_seq = 0

    def begin(self, request: web.Request) -> RequestRecord:
        """Journal a request on arrival, so hung or dropped requests appear too."""
        self._seq += 1
        record = RequestRecord(
            seq=self._seq,
            at=utc_now_iso(),
            method=request.method,
            path=request.path,
            query=request.query_string,
            authorization=redact_authorization(request.headers.get("Authorization")),
            x_forwarded_for=request.headers.get("X-Forwarded-For"),
            content_type=request.headers.get("Content-Type"),
        )
        self._requests.append(record)
        return record

    def record_applied(
        self,
        key: str,
        *,
        request: web.Request | None,
        action: str,
        status: int,
        changes: dict[str, Any],
        state: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> AppliedUpsert:
        """Append an applied upsert to its contact's log (key is lowercased here)."""
        self._applied_seq += 1
        entry = AppliedUpsert(
            seq=self._applied_seq,
            request_seq=request.get(SEQ_KEY) if request is not None else None,
            at=utc_now_iso(),
            key=key.lower(),
            action=action,
            status=status,
            changes=changes,
            state=state,
            details=details or {},
        )
        self._applied.setdefault(entry.key, []).append(entry)
        return entry

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` requests (all kept ones when None), oldest first."""
        items = list(self._requests)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        return [asdict(r) for r in items]

    def log(self, key: str) -> list[dict[str, Any]]:
        """Applied upserts of one contact, in arrival order."""
        return [asdict(e) for e in self._applied.get(key.lower(), [])]

    def logs(self) -> dict[str, list[dict[str, Any]]]:
        """Applied upserts of every contact."""
        return {key: self.log(key) for key in self._applied}

    def clear(self) -> None:
        """Forget everything (``/_sandbox/reset``); sequence numbers restart at 1."""
        self._requests.clear()
        self._applied.clear()
        self._seq = 0
        self._applied_seq = 0


def journal_middleware(journal: Journal) -> Any:
    """Build the outermost middleware: journal each API request and its final status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_control_path(request.path):
            return await handler(request)
        started = time.monotonic()
        record = journal.begin(request)
        request[SEQ_KEY] = record.seq
        request[RECORD_KEY] = record
        try:
            record.body = await decode_body(request)
            response = await handler(request)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            record.fault = request.get(FAULT_KEY)
            record.duration_ms = round((time.monotonic() - started) * 1000, 3)
        record.status = None if record.fault == "reset" else response.status
        return response

    return middleware


JOURNAL_KEY = web.AppKey("sandbox_journal", Journal)
KIND_KEY = web.AppKey("sandbox_kind", str)


def add_sandbox_routes(
    app: web.Application,
    *,
    kind: str,
    journal: Journal,
    state_name: str,
    snapshot: Callable[[], Any],
    reset: Callable[[], None],
) -> None:
    """The control routes every emulator has: health, state, reset and the journal.

    ``state_name`` is the destination's word for its records (``contacts``, ``members``);
    ``reset`` must clear the destination state; the journal is cleared here.
    """
    app[JOURNAL_KEY] = journal
    app[KIND_KEY] = kind

    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "kind": kind})

    async def state(request: web.Request) -> web.Response:
        return json_response({state_name: snapshot()})

    async def do_reset(request: web.Request) -> web.Response:
        reset()
        journal.clear()
        return json_response({"status": "reset", "kind": kind})

    app.router.add_get(SANDBOX_PREFIX + "health", health)
    app.router.add_get(SANDBOX_PREFIX + state_name, state)
    app.router.add_post(SANDBOX_PREFIX + "reset", do_reset)
    add_journal_routes(app, journal)


def add_journal_routes(app: web.Application, journal: Journal) -> None:
    """``/_sandbox/requests`` and ``/_sandbox/log[/{email}]``: read the journal."""

    async def get_requests(request: web.Request) -> web.Response:
        raw = request.query.get("limit")
        try:
            limit = int(raw) if raw is not None else None
        except ValueError:
            return json_response({"error": "limit must be an integer"}, status=400)
        return json_response({"requests": journal.requests(limit)})

    async def get_logs(request: web.Request) -> web.Response:
        return json_response({"contacts": journal.logs()})

    async def get_log(request: web.Request) -> web.Response:
        key = request.match_info["email"].lower()
        return json_response({"key": key, "applied": journal.log(key)})

    app.router.add_get(SANDBOX_PREFIX + "requests", get_requests)
    app.router.add_get(SANDBOX_PREFIX + "log", get_logs)
    app.router.add_get(SANDBOX_PREFIX + "log/{email}", get_log)
