"""Erasure requests (the right to be forgotten): reading one, finding whom it names, and what of
that person the worker itself remembers. Pure: the agent (``agents/erase.py``) does the I/O.

A request is a JSON object on ``kafka.erasures_topic``: ``request_id`` and at least one of
``email``, ``user_id``, ``anonymous_id`` (camelCase ``requestId``, ``userId``, ``anonymousId``
are read too). Anything else (not JSON, unknown fields, a wrong type, no person named, an email
both destinations would refuse) is an ``InvalidRequestError`` whose text never holds the address.

The email to erase is the request's own; without one, the email the ``identities`` table learned
for the request's ids (the ``user_id``'s wins over the ``anonymous_id``'s, as in stitching). What
is forgotten in that table: the request's identity keys, and every key of this worker whose
remembered traits carry that email (``keys_with_email``): the person's other devices and ids,
as far as this worker has seen them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from signal_sync.errors import SignalSyncError
from signal_sync.identity import ResolvedEvent, contact_id, email_problem, keys_for, normalize_email
from signal_sync.streams.records import MAX_ID_CHARS, Identifier, SignalEvent

INVALID_REQUEST = "invalid_request"
"""Reason of the ``invalid`` outcome of a request that cannot be read."""
UNKNOWN_PERSON = "unknown_person"
"""Reason of the ``dropped`` outcome of a request whose person has no email signal-sync knows."""
MAX_EMAIL_INPUT_CHARS = 320
"""Longest ``email`` field read (RFC 3696's bound); a longer one is refused without reading it."""


class InvalidRequestError(SignalSyncError):
    """A record on the erasures topic that is not a usable request; ``request_id`` when readable."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    request_id: Identifier = Field(validation_alias=AliasChoices("request_id", "requestId"), min_length=1)
    email: str | None = Field(None, max_length=MAX_EMAIL_INPUT_CHARS)
    user_id: Identifier | None = Field(None, validation_alias=AliasChoices("user_id", "userId"))
    anonymous_id: Identifier | None = Field(
        None, validation_alias=AliasChoices("anonymous_id", "anonymousId")
    )

    @model_validator(mode="after")
    def _someone(self) -> _Request:
        if not (self.email or self.user_id or self.anonymous_id):
            raise ValueError("names nobody: give at least one of email, user_id, anonymous_id")
        return self


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A valid request: its id, the normalized email it names (if any) and the ids it names."""

    request_id: str
    email: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None

    @property
    def identity_keys(self) -> list[str]:
        """The ``identities`` table keys the request names."""
        return keys_for(self.user_id, self.anonymous_id)

    def to_json(self) -> dict[str, str]:
        """The request as it goes on the erasures topic."""
        fields = {
            "request_id": self.request_id,
            "email": self.email,
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
        }
        return {name: value for name, value in fields.items() if value}

    def record_key(self) -> bytes:
        """The key the request is produced with: as the source topic's events are keyed
        (``anonymous_id``, else ``user_id``), so it lands on the partition that holds what the
        worker learned for those ids; an email-only request by the email's sha256 (never the
        address itself)."""
        if self.anonymous_id:
            return self.anonymous_id.encode()
        if self.user_id:
            return self.user_id.encode()
        assert self.email is not None
        return contact_id(self.email).encode()


def _request_id_of(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    value = data.get("request_id", data.get("requestId"))
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isprintable():
        return value
    return None


def _errors(exc: ValidationError) -> str:
    """The validation errors by field, without the input values (they may be addresses)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "request"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_request(value: bytes | None) -> ErasureRequest:
    """The request a record's value holds, or ``InvalidRequestError`` saying what is wrong."""
    if value is None:
        raise InvalidRequestError("the record has no value (a tombstone)")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("not a JSON document") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("not a JSON object")
    request_id = _request_id_of(data)
    try:
        parsed = _Request.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_errors(exc), request_id) from None
    email = normalize_email(parsed.email)
    if parsed.email is not None and email is None:
        raise InvalidRequestError("email: is blank", request_id)
    if email is not None and (problem := email_problem(email)) is not None:
        raise InvalidRequestError(f"email: {problem}", request_id)
    return ErasureRequest(parsed.request_id, email, parsed.user_id, parsed.anonymous_id)


def request_id_for(value: bytes | None, error: InvalidRequestError) -> str:
    """The id an outcome of an unreadable request carries: its own when readable, else the
    sha256 of the record (the same id every time the record is read)."""
    if error.request_id is not None:
        return error.request_id
    return "sha256:" + hashlib.sha256(value or b"").hexdigest()


def resolve_email(request: ErasureRequest, remembered: Mapping[str, Any]) -> str | None:
    """The email to erase: the request's, else the one learned for its ids (the ``user_id``'s
    first, as stitching lets user-level traits win), when it is a valid address."""
    if request.email is not None:
        return request.email
    for key in request.identity_keys:  # u: before a:
        traits = remembered.get(key)
        email = normalize_email(traits.get("email")) if isinstance(traits, dict) else None
        if email is not None and email_problem(email) is None:
            return email
    return None


def keys_with_email(stored: Iterable[tuple[Any, bytes]], email: str) -> list[str]:
    """The identity keys whose remembered traits carry ``email`` (normalized), from the table's
    stored JSON bytes: the bytes are searched first, so only candidates are decoded."""
    needle = orjson.dumps(email)[1:-1]
    found = []
    for key, raw in stored:
        if not isinstance(key, str) or not isinstance(raw, bytes | bytearray) or needle not in raw.lower():
            continue
        try:
            traits = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(traits, dict) and normalize_email(traits.get("email")) == email:
            found.append(key)
    return found


def keys_to_forget(
    request: ErasureRequest, email: str | None, stored: Iterable[tuple[Any, bytes]]
) -> list[str]:
    """Every identity key the erasure forgets: the request's own, and (with an email) every key
    whose traits carry it; in a stable order, each once."""
    keys = list(request.identity_keys)
    if email is not None:
        keys.extend(keys_with_email(stored, email))
    return list(dict.fromkeys(keys))


def erased_person(request_id: str, email: str) -> ResolvedEvent:
    """What the delivery stage plans an erasure with: the person's email (its contact id) under
    the request's id; no traits beyond the email."""
    return ResolvedEvent(SignalEvent(type="identify", message_id=request_id), {"email": email})
