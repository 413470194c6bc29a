"""Records on the wire: the input event, the outcome and the dead letter's headers, as pydantic models.

The input model accepts both snake_case and camelCase ids (``message_id``/``messageId``)
because analytics SDKs differ; unknown fields are ignored so a producer can add data
without breaking us, while a known field of the wrong type makes the event ``invalid``.
The outcome model is the public contract of ``signal.deliveries`` and ``DeadLetterHeaders``
that of the dead letters' headers; docs/schemas is generated from them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictStr
from pydantic_core import PydanticCustomError

OUTCOME_SCHEMA = "signal.delivery/v1"
DEAD_LETTER_SCHEMA = "signal.dead-letter/v1"

EventType = Literal["identify", "track", "page"]
OutcomeStatus = Literal["delivered", "dropped", "failed", "invalid"]
OutcomeOperation = Literal["upsert", "withdraw_consent", "restore_consent", "erase"]

TRAIT_ALIASES = {"firstName": "first_name", "lastName": "last_name", "postalCode": "postal_code"}

MAX_ID_CHARS = 512
"""Longest ``message_id``, ``anonymous_id``, ``user_id`` and track ``event`` name accepted. They are
copied into every outcome and dead letter (and the ids into identity-table keys and Mailgun vars),
so a record built from one stays small whatever the event carries."""
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
"""C0 controls and DEL: never part of an id or an event name (CR/LF and NUL break line-based logs,
exports and terminals downstream of the outcomes)."""
TIMESTAMP_MIN = datetime(1000, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
"""The accepted event times, in UTC: MySQL's DATETIME range (Mautic stores ``lastActive`` in one),
every instant of which converts to UTC and prints as Mautic's ``Y-m-d H:i:s`` with four digits."""
MAX_IP_CHARS = 45
"""Longest text form of an IP address (IPv6 with an embedded IPv4, no scope id)."""


def has_control_character(value: str) -> bool:
    """Whether ``value`` holds a C0 control character or DEL."""
    return _CONTROL_CHARACTER.search(value) is not None


def _identifier(value: str) -> str:
    """An id or event name: no control characters (its length is the field's ``max_length``). A
    printable string has none (they are not printable), so most ids skip the regular expression."""
    if not value.isprintable() and has_control_character(value):
        raise PydanticCustomError(
            "control_character", "must not contain control characters (U+0000-U+001F, U+007F)"
        )
    return value


Identifier = Annotated[
    StrictStr,
    Field(max_length=MAX_ID_CHARS, json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f]*$"}),
    AfterValidator(_identifier),
]
"""A string id: at most ``MAX_ID_CHARS`` characters, no control characters. The schema's pattern
documents the rule; the validator enforces it with an error text free of the characters it names."""


def utc_timestamp(value: datetime | None) -> datetime | None:
    """The event time in UTC (naive means UTC), or an error when it lies outside the accepted range:
    ``9999-12-31T23:00:00-05:00`` parses but is past the last instant Python can hold in UTC."""
    if value is None:
        return None
    try:
        stamp = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        stamp = None
    if stamp is None or not TIMESTAMP_MIN <= stamp <= TIMESTAMP_MAX:
        raise PydanticCustomError(
            "timestamp_range",
            "outside the accepted range 1000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z (in UTC)",
        )
    return stamp


def usable_ip(value: str | None) -> str | None:
    """The visitor IP in its normalized text form, or None when it is not one IP address.

    Parsed with ``ipaddress``: a list (``"1.2.3.4, 10.0.0.1"``), a host name, text around the
    address, CR/LF/NUL, IPv4 with leading zeros and IPv6 with a scope id (``fe80::1%eth0``, whose
    zone is arbitrary text) are not. An IPv4-mapped IPv6 address is the IPv4 address it maps."""
    if value is None or len(value) > MAX_IP_CHARS:
        return None
    try:  # the common case, IPv4 already in normal form: the C library gives the same text back
        if socket.inet_ntoa(socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except (OSError, ValueError):  # not IPv4 (ValueError: a NUL)
        pass
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


_Model = TypeVar("_Model", bound=_Lenient)


def shared_empty(model: type[_Model]) -> Callable[[], _Model]:
    """A default factory returning one shared empty instance. The models are frozen, and a fresh
    nested model per event (``default_factory=Page``) would run pydantic's ``__init__`` each time,
    most of the validation time of an event without a context."""
    empty = model()
    return lambda: empty


class Page(_Lenient):
    url: StrictStr | None = None


class Campaign(_Lenient):
    source: StrictStr | None = None
    medium: StrictStr | None = None
    name: StrictStr | None = None
    content: StrictStr | None = None
    term: StrictStr | None = None


class Consent(_Lenient):
    canonical: dict[str, StrictBool] = Field(default_factory=dict)


class Context(_Lenient):
    ip: Annotated[StrictStr | None, AfterValidator(usable_ip)] = Field(
        None,
        description="The visitor's IP address (IPv4 or IPv6, no scope id). Anything else (a list, a host "
        "name, CR/LF) is left out of the requests; the event is still delivered. Sent normalized.",
        examples=["203.0.113.50"],
    )
    page: Page = Field(default_factory=shared_empty(Page))
    campaign: Campaign = Field(default_factory=shared_empty(Campaign))
    consent: Consent = Field(default_factory=shared_empty(Consent))
    traits: dict[str, Any] = Field(default_factory=dict)


class SignalEvent(_Lenient):
    """One analytics event as produced to ``signal.events``."""

    type: EventType
    event: Identifier | None = Field(
        None, description="Event name; required for track. At most 512 characters, no control characters."
    )
    message_id: Identifier | None = Field(
        None,
        validation_alias=AliasChoices("message_id", "messageId"),
        description="Also messageId. At most 512 characters, no control characters. Without one, the "
        "record gets a deterministic sha256:... id.",
    )
    anonymous_id: Identifier | None = Field(
        None,
        validation_alias=AliasChoices("anonymous_id", "anonymousId"),
        description="Also anonymousId. At most 512 characters, no control characters.",
    )
    user_id: Identifier | None = Field(
        None,
        validation_alias=AliasChoices("user_id", "userId"),
        description="Also userId. At most 512 characters, no control characters.",
    )
    timestamp: Annotated[datetime | None, AfterValidator(utc_timestamp)] = Field(
        None,
        description="ISO 8601; naive means UTC. Held in UTC; must lie within "
        "1000-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z once converted to UTC.",
        examples=["2026-06-06T16:32:10+02:00"],
    )
    traits: dict[str, Any] = Field(
        default_factory=dict,
        description="Identity traits; `email` is lowercased and trimmed, then must be an address both "
        "destinations take as is (docs/destinations-api.md, Email addresses), else the event drops "
        "with invalid_email.",
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    context: Context = Field(default_factory=shared_empty(Context))


class Outcome(BaseModel):
    """One delivery outcome per (input event, integration) on ``signal.deliveries``."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal["signal.delivery/v1"] = Field(OUTCOME_SCHEMA, alias="schema")
    delivery_id: str = Field(
        ..., description="Deterministic from message_id + integration: replays repeat it."
    )
    message_id: str
    integration: str
    destination: Literal["mautic", "mailgun"]
    event: str | None = Field(..., description="Mapped event name (Identified, page, Signed Up, …).")
    contact_id: str | None = Field(
        ...,
        description="sha256 hex of the normalized email (HMAC-SHA256 with outcomes.contact_id_key when "
        "that is set); null without one.",
    )
    email: str | None = Field(None, description="Plaintext email, only when outcomes.include_email is on.")
    operation: OutcomeOperation | None = Field(
        None,
        description="What the delivery stage did for the contact (absent on the ingest stage's drops "
        "and invalid records): upsert (the mapped event's create-or-update), withdraw_consent (a "
        "consent category is explicitly false: the destination's consent removed, nothing else "
        "sent; dropped / consent_denied when the destination does not know the person or the "
        "withdrawal was already sent), restore_consent (consent granted again after a withdrawal: "
        "the upsert, plus removing what the withdrawal added), erase (an erasure request from "
        "kafka.erasures_topic: the person deleted at the destination and forgotten by signal-sync; "
        "message_id is the request_id).",
        examples=["withdraw_consent"],
    )
    status: OutcomeStatus
    reason: str | None = Field(
        ...,
        description="Why the event was not delivered (null when delivered). status invalid: "
        "invalid_event (not a valid event: not JSON, wrong types, ids over 512 characters, a timestamp "
        "out of range, nested over 64 levels, over 1 MB), event_too_large (valid, but too large for an "
        "internal Kafka record even alone). status dropped, checked in this order after invalid_event: "
        "event_not_mapped (the integration does not take this event), no_email (no email known), "
        "invalid_email (the email is not an address both destinations take as is), consent_denied "
        "(a required consent category is not true; for operation withdraw_consent: the destination "
        "does not know the person, or the withdrawal was already sent). For operation erase: "
        "invalid_request (status invalid: the erasure request cannot be read; error says why), "
        "unknown_person (dropped: no email given or known for the request's ids). status failed: "
        "http_<status> (the destination's answer, e.g. http_400, or the last one after retries, "
        "e.g. http_503), http_item_unknown (a batch answer without the item's status, after "
        "retries), connection_error (no answer: "
        "refused, reset, timed out, DNS), client_error (the request could not be built or sent), "
        "internal_error (an unexpected error in signal-sync; error names it); after a delivered Mautic "
        "upsert, a segment add that failed: segment_not_found (the segment does not exist), "
        "segment_forbidden (unpublished, or the API user may not edit contacts), "
        "segment_contact_not_found / segment_add_refused (the contact was deleted since its upsert, or "
        "may not be edited), segment_no_contact_id (the upsert answered without a contact id); hint "
        "names the segment.",
        examples=["invalid_email", "http_400"],
    )
    http_status: int | None
    created: bool | None = Field(..., description="Mautic: 201 → true, 200 → false; null otherwise.")
    attempts: int = Field(..., ge=0)
    event_timestamp: str | None
    completed_at: str
    latency_ms: float | None = Field(..., description="From the input record's timestamp to completion.")
    hint: str | None = Field(..., description="The integration's troubleshooting line for this HTTP status.")
    error: str | None
    segments_added: list[int] | None = Field(
        None,
        description="Mautic segment ids the contact was added to after its upsert, present only for an "
        "event the integration's segments config adds to (absent otherwise): all of them when "
        "delivered; when a segment add failed (status failed, reason segment_*), the ones added before "
        "it or beside it.",
        examples=[[4, 1]],
    )


_DIGITS = "^-?[0-9]+$"


class DeadLetterHeaders(BaseModel):
    """The headers a dead letter on signal.deliveries.dlq carries after the original record's own,
    shown as an object of header name to value (each value UTF-8 text). The record's key, value,
    timestamp and first headers are the original record's, unchanged; __connect.errors.* are named as
    Kafka Connect's dead letter queue names them, signal_sync.* are signal-sync's. A header whose
    field is optional is absent when it does not apply."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    topic: str = Field(..., alias="__connect.errors.topic", description="The original record's topic.")
    partition: str = Field(
        ..., alias="__connect.errors.partition", pattern=_DIGITS, description="Its partition (-1: unknown)."
    )
    offset: str = Field(
        ..., alias="__connect.errors.offset", pattern=_DIGITS, description="Its offset (-1: unknown)."
    )
    connector_name: str = Field(
        ...,
        alias="__connect.errors.connector.name",
        description="The integration id (Connect's connector: one sink per destination).",
    )
    stage: Literal["VALUE_CONVERTER", "TRANSFORMATION", "KAFKA_PRODUCE", "TASK_PUT"] = Field(
        ...,
        alias="__connect.errors.stage",
        description="Where it failed, in Connect's stage names: VALUE_CONVERTER (decoding the value: "
        "invalid_event), TRANSFORMATION (the ingest stage's own processing: internal_error), "
        "KAFKA_PRODUCE (the internal record: event_too_large), TASK_PUT (delivering to the destination).",
    )
    class_name: str = Field(
        ...,
        alias="__connect.errors.class.name",
        description="The module that ran the stage (TASK_PUT: signal_sync.destinations.<destination>).",
        examples=["signal_sync.destinations.mailgun"],
    )
    exception_class_name: str | None = Field(
        None,
        alias="__connect.errors.exception.class.name",
        description="The exception raised, when one was (invalid_event, event_too_large, internal_error, "
        "client_error); absent for an answer of the destination.",
        examples=["signal_sync.errors.InvalidEventError"],
    )
    exception_message: str | None = Field(
        None,
        alias="__connect.errors.exception.message",
        description="The exception's message, else the destination's error text; redacted as the logs "
        "are (no secrets, no email addresses), at most 300 characters.",
    )
    integration: str = Field(..., alias="signal_sync.integration", description="The integration id.")
    status: Literal["failed", "invalid"] = Field(..., alias="signal_sync.status")
    reason: str = Field(..., alias="signal_sync.reason", description="The outcome's reason.")
    attempts: str = Field(
        ..., alias="signal_sync.attempts", pattern=_DIGITS, description="HTTP attempts made."
    )
    http_status: str | None = Field(
        None, alias="signal_sync.http_status", pattern=_DIGITS, description="The last HTTP status, if any."
    )
    delivery_id: str = Field(..., alias="signal_sync.delivery_id", description="The outcome's delivery_id.")
    message_id: str = Field(..., alias="signal_sync.message_id", description="The outcome's message_id.")
    first_attempt_at: str = Field(
        ...,
        alias="signal_sync.first_attempt_at",
        description="When the integration's work on the event began (RFC 3339, UTC): the delivery "
        "agent taking it up, before its first request; for the ingest stage's letters, as last_attempt_at.",
    )
    last_attempt_at: str = Field(
        ...,
        alias="signal_sync.last_attempt_at",
        description="When the outcome was decided (RFC 3339, UTC): the outcome's completed_at.",
    )
    original_header_count: str = Field(
        ...,
        alias="signal_sync.original.header_count",
        pattern="^[0-9]+$",
        description="How many of the record's first headers are the original record's.",
    )
    original_truncated: str | None = Field(
        None,
        alias="signal_sync.original.truncated",
        pattern="^(value|headers|key)?(,(value|headers|key))*$",
        description="Present when the original did not fit the topic: what was cut (value: only its "
        "head is kept; headers, key: left out). Such a letter is not replayed.",
    )
    original_value_bytes: str | None = Field(
        None, alias="signal_sync.original.value_bytes", pattern="^[0-9]+$", description="A cut value's size."
    )
    original_value_sha256: str | None = Field(
        None, alias="signal_sync.original.value_sha256", description="A cut value's sha256 (hex)."
    )


class LegacyDeadLetter(BaseModel):
    """A dead letter as earlier versions wrote it (a JSON envelope); ``replay-dlq`` still reads it."""

    schema_: Literal["signal.dead-letter/v1"] = Field(DEAD_LETTER_SCHEMA, alias="schema")
    delivery_id: str
    message_id: str
    integration: str
    status: OutcomeStatus
    reason: str | None
    attempts: int
    error: str | None
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    original: str = Field(..., description="The original record value, base64 when not UTF-8 JSON text.")
    original_encoding: Literal["utf-8", "base64"]
    original_bytes: int = Field(..., description="Size of the original value.")
    original_sha256: str = Field(..., description="sha256 of the whole original value.")
    original_truncated: bool = Field(
        ...,
        description="True when the value was larger than the dead-letter limit and only its head is kept.",
    )
