"""Dead letters the Kafka Connect way: the original record, unchanged, with the error in headers.

A dead letter on ``kafka.dead_letter_topic`` is the source record as it was read: the same key,
value bytes, timestamp and headers, in the same order. What went wrong is appended as headers,
named as Kafka Connect's ``DeadLetterQueueReporter`` names them (``__connect.errors.*``) where
Connect has the notion, and ``signal_sync.*`` for the rest. Every header value is UTF-8 text.
``streams.records.DeadLetterHeaders`` documents each header
(``docs/schemas/dead-letter-headers.schema.json``).

A record is bounded only by the topic's limit (``OutputProducer.record_limit``). A record that
does not fit keeps the head of its value (then, only if still needed, loses its original headers,
then its key), and ``signal_sync.original.truncated`` names what was cut, with the whole value's
size and sha256: a poison record larger than the dead-letter topic accepts must not stall its
partition. ``replay-dlq`` skips such letters.

``read_letter`` reads a dead letter back, in this format or as the JSON envelope
(``signal.dead-letter/v1``) that earlier versions wrote, so a topic holding both replays alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from signal_sync.destinations.delivery import ERROR_TEXT_LIMIT, REDACTION_WINDOW, redact_emails
from signal_sync.outcomes import SourceRecord, iso_utc
from signal_sync.streams.output_producer import headers_size
from signal_sync.streams.records import LegacyDeadLetter

Header = tuple[str, bytes | None]
Headers = tuple[Header, ...]

CONNECT = "__connect.errors."
TOPIC = CONNECT + "topic"
PARTITION = CONNECT + "partition"
OFFSET = CONNECT + "offset"
CONNECTOR = CONNECT + "connector.name"
STAGE = CONNECT + "stage"
CLASS = CONNECT + "class.name"
EXCEPTION_CLASS = CONNECT + "exception.class.name"
EXCEPTION_MESSAGE = CONNECT + "exception.message"

OURS = "signal_sync."
INTEGRATION = OURS + "integration"
STATUS = OURS + "status"
REASON = OURS + "reason"
ATTEMPTS = OURS + "attempts"
HTTP_STATUS = OURS + "http_status"
DELIVERY_ID = OURS + "delivery_id"
MESSAGE_ID = OURS + "message_id"
FIRST_ATTEMPT = OURS + "first_attempt_at"
LAST_ATTEMPT = OURS + "last_attempt_at"
ORIGINAL_HEADERS = OURS + "original.header_count"
TRUNCATED = OURS + "original.truncated"
VALUE_BYTES = OURS + "original.value_bytes"
VALUE_SHA256 = OURS + "original.value_sha256"

VALUE_CONVERTER = "VALUE_CONVERTER"
TRANSFORMATION = "TRANSFORMATION"
KAFKA_PRODUCE = "KAFKA_PRODUCE"
TASK_PUT = "TASK_PUT"
"""Kafka Connect's stage names, for where a record failed: decoding the value, the ingest stage's
own processing, writing the internal record, delivering to the destination (the sink's ``put``)."""
STAGE_CLASSES = {
    VALUE_CONVERTER: "signal_sync.codecs.events",
    TRANSFORMATION: "signal_sync.agents.ingest",
    KAFKA_PRODUCE: "signal_sync.engine.forwarder",
}
"""The module that ran each stage (Connect's ``class.name``); ``TASK_PUT`` names the destination's."""
TRUNCATION_ROOM = 256
"""Bytes kept free for the headers that say a record was cut (three short texts and their names)."""


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What an outcome does not say about a failure: the stage, the exception (if one was raised)
    and when work on the event for this integration began (``None``: when the outcome was made)."""

    stage: str | None = None
    exception: BaseException | None = None
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[Header]
    timestamp_ms: int | None
    """The original record's timestamp; ``None``: the producer's clock."""


def default_stage(reason: str | None) -> str:
    """The stage an outcome's reason implies: decoding, the internal record, else delivery."""
    if reason == "invalid_event":
        return VALUE_CONVERTER
    if reason == "event_too_large":
        return KAFKA_PRODUCE
    return TASK_PUT


def class_name(kind: type) -> str:
    """``module.QualifiedName`` of an exception class (builtins without their module)."""
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def error_message(text: str, redact: Callable[[str], str]) -> str:
    """An error text for a header: redacted as the logs are, then at most ``ERROR_TEXT_LIMIT``
    characters (redacted before the cut, so no secret or address is kept half)."""
    return redact(text[:REDACTION_WINDOW])[:ERROR_TEXT_LIMIT]


def error_headers(
    outcome: dict[str, Any], source: SourceRecord, context: ErrorContext, redact: Callable[[str], str]
) -> list[Header]:
    """The headers that say why the record is here and where it came from."""
    stage = context.stage or default_stage(outcome["reason"])
    exception = context.exception
    message = str(exception) if exception is not None else outcome["error"]
    last = outcome["completed_at"]
    first = iso_utc(context.started_at) if context.started_at is not None else last
    texts: list[tuple[str, object]] = [
        (TOPIC, source.topic),
        (PARTITION, -1 if source.partition is None else source.partition),
        (OFFSET, -1 if source.offset is None else source.offset),
        (CONNECTOR, outcome["integration"]),
        (STAGE, stage),
        (CLASS, STAGE_CLASSES.get(stage, f"signal_sync.destinations.{outcome['destination']}")),
        (EXCEPTION_CLASS, class_name(type(exception)) if exception is not None else None),
        (EXCEPTION_MESSAGE, error_message(message, redact) if message else None),
        (INTEGRATION, outcome["integration"]),
        (STATUS, outcome["status"]),
        (REASON, outcome["reason"]),
        (ATTEMPTS, outcome["attempts"]),
        (HTTP_STATUS, outcome["http_status"]),
        (DELIVERY_ID, outcome["delivery_id"]),
        (MESSAGE_ID, outcome["message_id"]),
        (FIRST_ATTEMPT, first),
        (LAST_ATTEMPT, last),
    ]
    return [(name, str(value).encode()) for name, value in texts if value is not None]


def dead_letter(
    outcome: dict[str, Any],
    source: SourceRecord,
    limit: int,
    context: ErrorContext | None = None,
    redact: Callable[[str], str] = redact_emails,
) -> DeadLetterRecord:
    """The dead letter of ``outcome``: ``source`` unchanged plus the error headers, at most
    ``limit`` bytes of key, value and headers (``OutputProducer.check``'s measure). ``redact``:
    the logs' redaction (secrets, emails) for the exception message."""
    errors = error_headers(outcome, source, context or ErrorContext(), redact)
    key, value, originals = source.key, source.value, list(source.headers)
    stamp = source.timestamp_ms
    timestamp = round(stamp) if stamp is not None and stamp >= 0 else None

    def room(kept_headers: list[Header], kept_key: bytes | None, extra: int) -> int:
        """Bytes left for the value beside the key, the headers and ``extra``."""
        headers = [*kept_headers, *errors, _count(kept_headers)]
        return limit - len(kept_key or b"") - headers_size(headers) - extra

    if len(value or b"") <= room(originals, key, 0):
        return DeadLetterRecord(key, value, [*originals, *errors, _count(originals)], timestamp)
    cut: list[str] = []
    if room(originals, key, TRUNCATION_ROOM) < 0:
        originals, cut = [], ["headers"]
        if room(originals, key, TRUNCATION_ROOM) < 0:
            key, cut = None, [*cut, "key"]
    space = max(0, room(originals, key, TRUNCATION_ROOM))
    truncation: list[Header] = []
    if value is not None and len(value) > space:
        cut.insert(0, "value")
        truncation = [
            (VALUE_BYTES, str(len(value)).encode()),
            (VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:space]
    headers = [*originals, *errors, _count(originals), (TRUNCATED, ",".join(cut).encode()), *truncation]
    return DeadLetterRecord(key, value, headers, timestamp)


def _count(originals: Sequence[Header]) -> Header:
    return (ORIGINAL_HEADERS, str(len(originals)).encode())


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter read back: the original record to replay and the error context."""

    integration: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    """The original record's headers, in order (the error headers left out)."""
    failed_at: datetime | None
    """When the outcome was decided (``signal_sync.last_attempt_at``; an old-format letter: when
    it was written)."""
    truncated: bool
    """Only part of the original is kept: it cannot be replayed."""
    context: dict[str, str] = field(default_factory=dict)
    """The error headers by name (an old-format letter's fields under the same names)."""
    legacy: bool = False


def read_letter(
    key: bytes | None, value: bytes | None, headers: Sequence[Header] | None, timestamp_ms: int | None
) -> Letter | None:
    """A dead letter of either format from a record of the dead-letter topic, or ``None`` when the
    record is neither."""
    headers = list(headers or [])
    count = _last(headers, ORIGINAL_HEADERS)
    if count is not None:
        return _read_current(key, value, headers, count)
    return _read_legacy(value, timestamp_ms)


def _last(headers: Sequence[Header], name: str) -> bytes | None:
    for header, value in reversed(headers):
        if header == name:
            return value
    return None


def _read_current(
    key: bytes | None, value: bytes | None, headers: list[Header], count: bytes | None
) -> Letter | None:
    try:
        originals = int((count or b"").decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not 0 <= originals <= len(headers):
        return None
    context: dict[str, str] = {}
    for name, text in headers[originals:]:
        if text is not None and (name.startswith(CONNECT) or name.startswith(OURS)):
            context[name] = text.decode("utf-8", "replace")
    integration = context.get(INTEGRATION) or context.get(CONNECTOR)
    if not integration:
        return None
    return Letter(
        integration=integration,
        key=key,
        value=value,
        headers=tuple(headers[:originals]),
        failed_at=_parse_time(context.get(LAST_ATTEMPT)),
        truncated=TRUNCATED in context,
        context=context,
    )


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


LEGACY_FIELDS = {
    "source_topic": TOPIC,
    "source_partition": PARTITION,
    "source_offset": OFFSET,
    "integration": INTEGRATION,
    "status": STATUS,
    "reason": REASON,
    "attempts": ATTEMPTS,
    "delivery_id": DELIVERY_ID,
    "message_id": MESSAGE_ID,
    "error": EXCEPTION_MESSAGE,
}
"""Where an old-format letter's fields appear in ``Letter.context``."""


def _read_legacy(value: bytes | None, timestamp_ms: int | None) -> Letter | None:
    """A ``signal.dead-letter/v1`` JSON envelope: its ``original`` (UTF-8 or base64) without key
    or headers; it was written at the record's timestamp. Parsed once, by pydantic (orjson's
    parse of a long string peaks at many times its size)."""
    try:
        letter = LegacyDeadLetter.model_validate_json(value or b"")
    except ValidationError:
        return None
    if letter.original_encoding == "base64":
        try:
            original = base64.b64decode(letter.original, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        original = letter.original.encode("utf-8")
    fields = {old: getattr(letter, old) for old in LEGACY_FIELDS}
    context = {name: str(fields[old]) for old, name in LEGACY_FIELDS.items() if fields[old] is not None}
    written = datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms is not None else None
    return Letter(
        integration=letter.integration,
        key=None,
        value=original,
        headers=(),
        failed_at=written,
        truncated=letter.original_truncated,
        context=context,
        legacy=True,
    )
