"""Decoding raw ``signal.events`` values into events, with specific errors for bad input.

The source topic is read as raw bytes on purpose: if Faust decoded it, a malformed
record would be logged and skipped, i.e. lost. Here every failure becomes an
``InvalidEventError`` whose message says what is wrong, which ends up in the
``invalid`` outcome and the dead letter.
"""

from __future__ import annotations

import hashlib

import orjson
from pydantic import ValidationError

from signal_sync.config import format_location
from signal_sync.errors import InvalidEventError
from signal_sync.streams.records import SignalEvent

MAX_EVENT_BYTES = 1_000_000


def fallback_message_id(raw: bytes) -> str:
    """A deterministic id for records that carry none, so replays still match."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def decode_event(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> SignalEvent:
    """Parse and validate one record value, or raise ``InvalidEventError``."""
    if raw is None:
        raise InvalidEventError("record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEventError(f"record is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(data).__name__}")
    try:
        event = SignalEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = format_location(first["loc"]) or "(event)"
        raise InvalidEventError(f"{where}: {first['msg']}") from None
    if event.type == "track" and not event.event:
        raise InvalidEventError("event: a track event needs an event name")
    if event.message_id is None:
        event = event.model_copy(update={"message_id": fallback_message_id(raw)})
    return event


def peek_message_id(raw: bytes | None) -> str:
    """Best-effort message id of a record that failed to decode."""
    if raw:
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict):
                value = data.get("message_id", data.get("messageId"))
                if isinstance(value, str) and value:
                    return value
        except orjson.JSONDecodeError:
            pass
    return fallback_message_id(raw or b"")
