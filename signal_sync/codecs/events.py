"""Decoding raw ``signal.events`` values into events, with specific errors for bad input.

The source topic is read as raw bytes on purpose: if Faust decoded it, a malformed
record would be logged and skipped, i.e. lost. Here every failure becomes an
``InvalidEventError`` whose message says what is wrong, which ends up in the
``invalid`` outcome and the dead letter.

A value is either plain JSON (``decode_event``) or framed for a Schema Registry (magic byte 0,
schema id, payload: ``decode_framed``), which is read into its JSON first
(``codecs.schema_registry``) and then validated exactly as plain JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import ValidationError

from signal_sync.codecs.schema_registry import NO_REGISTRY_HINT, FramedDecoder, schema_id_of
from signal_sync.config import format_location
from signal_sync.errors import InvalidEventError
from signal_sync.streams.records import MAX_ID_CHARS, SignalEvent, has_control_character

MAX_EVENT_BYTES = 1_000_000
MAX_KEY_SHOWN = 64
"""Characters of an event's object key quoted in an error text."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays accepted, the event object itself being level 1. orjson
reads up to 1,024 levels but writes at most 254, and an event's traits are written again (identity
table, internal topics) at a deeper level: a deeper event would fail there instead of here."""


def fallback_message_id(raw: bytes) -> str:
    """A deterministic id for records that carry none, so replays still match."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def nesting_depth_over(value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest deeper than ``limit`` levels (iterative: a deep
    value cannot exhaust the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _printable_key(part: int | str) -> int | str:
    """A location part for an error text: an object key comes from the event, so it is shortened
    and its control characters are escaped (the text goes into outcomes, dead letters and logs)."""
    if isinstance(part, int):
        return part
    shown = part if len(part) <= MAX_KEY_SHOWN else part[:MAX_KEY_SHOWN] + "..."
    return shown.encode("unicode_escape").decode("ascii") if has_control_character(shown) else shown


class InvalidFramedEventError(InvalidEventError):
    """A framed record that is not a valid event, with the message id its outcomes carry."""

    def __init__(self, message: str, message_id: str) -> None:
        super().__init__(message)
        self.message_id = message_id


def decode_event(
    raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES, *, original: bytes | None = None
) -> SignalEvent:
    """Parse and validate one JSON value, or raise ``InvalidEventError``. ``original``: the record
    the JSON was read from when it was framed (the fallback message id is made from it)."""
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
    # Only a record with that many brackets can nest that deep: most events skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and nesting_depth_over(data, MAX_JSON_DEPTH):
        raise InvalidEventError(f"objects and arrays nest deeper than {MAX_JSON_DEPTH} levels")
    try:  # the model's validator itself: what ``model_validate`` calls, without its keyword handling
        event = SignalEvent.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = format_location(tuple(map(_printable_key, first["loc"]))) or "(event)"
        raise InvalidEventError(f"{where}: {first['msg']}") from None
    if event.type == "track" and not event.event:
        raise InvalidEventError("event: a track event needs an event name")
    if not event.message_id:  # absent or empty: an empty id would give unrelated events one delivery_id
        event = event.model_copy(
            update={"message_id": fallback_message_id(raw if original is None else original)}
        )
    return event


async def decode_framed(
    raw: bytes, framing: FramedDecoder | None, max_bytes: int = MAX_EVENT_BYTES
) -> tuple[SignalEvent, bytes]:
    """A framed record's event and its value as JSON (what the internal envelope carries), or
    ``InvalidFramedEventError``. Waits while the registry cannot answer (``FramedDecoder.json_of``)."""
    if framing is None:
        raise InvalidFramedEventError(
            NO_REGISTRY_HINT.format(schema_id=schema_id_of(raw)), fallback_message_id(raw)
        )
    if len(raw) > max_bytes:
        message = f"record is {len(raw)} bytes, over the {max_bytes}-byte limit"
        raise InvalidFramedEventError(message, fallback_message_id(raw))
    try:
        value = await framing.json_of(raw)
    except InvalidEventError as exc:
        raise InvalidFramedEventError(str(exc), fallback_message_id(raw)) from None
    if len(value) > max_bytes:
        message = f"the event is {len(value)} bytes as JSON, over the {max_bytes}-byte limit"
        raise InvalidFramedEventError(message, fallback_message_id(raw))
    try:
        return decode_event(value, max_bytes, original=raw), value
    except InvalidEventError as exc:
        raise InvalidFramedEventError(str(exc), peek_message_id(value, original=raw)) from None


def usable_message_id(value: Any) -> bool:
    """Whether a record's own ``message_id`` may name it in outcomes: a non-empty string that the
    event model would accept (bounded, no control characters)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and not has_control_character(value)


def peek_message_id(raw: bytes | None, *, original: bytes | None = None) -> str:
    """Best-effort message id of a record that failed to decode: its own when usable, else the
    deterministic fallback (a 900 KB id would make every outcome and dead letter of it as large).
    ``original``: the framed record ``raw`` was read from (the fallback is made from it)."""
    if raw:
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict):
                value = data.get("message_id", data.get("messageId"))
                if usable_message_id(value):
                    return value
        except orjson.JSONDecodeError:
            pass
    return fallback_message_id(original if original is not None else raw or b"")
