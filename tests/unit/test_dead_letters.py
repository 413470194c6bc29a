"""Dead letters: the original record byte for byte, the error context in Connect-style headers,
redacted texts, a bound that never stalls a partition, and both formats read back."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.dead_letters import (
    KAFKA_PRODUCE,
    TASK_PUT,
    TRANSFORMATION,
    VALUE_CONVERTER,
    ErrorContext,
    dead_letter,
    read_letter,
)
from signal_sync.errors import InvalidEventError
from signal_sync.observability.logs import Redactor
from signal_sync.outcomes import OutcomeBuilder, SourceRecord
from signal_sync.streams.output_producer import record_size
from signal_sync.streams.records import DeadLetterHeaders
from tests.property.profiles import PROFILE
from tests.unit.factories import mailgun, mautic

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
KEY = b"anon-7"
HEADERS = (
    ("traceparent", b"00-4bf92f35-00f067aa-01"),
    ("empty", b""),
    ("null", None),
    ("dup", b"1"),
    ("dup", b"2"),
)
SOURCE = SourceRecord("signal.events", 3, 42, 1_780_000_000_123.0, b'{"type":"identify"}', KEY, HEADERS)
NOW = 1_780_000_001.5
BIG = 1_000_000


def outcome(source: SourceRecord = SOURCE, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "message_id": "m-1",
        "integration": mailgun(),
        "event_name": "Identified",
        "email": "jane@example.com",
        "status": "failed",
        "reason": "http_400",
        "source": source,
        "now": NOW,
        "http_status": 400,
        "attempts": 1,
        "hint": "check the list",
        "error": "'jane@example.com' is not a valid address",
    }
    return OutcomeBuilder().build(**{**fields, **overrides})


def context_of(letter: Any) -> dict[str, str]:
    return dict(letter.context)


def test_a_failed_delivery_keeps_the_record_and_adds_connect_style_headers() -> None:
    record = dead_letter(outcome(), SOURCE, BIG, ErrorContext(TASK_PUT, started_at=NOW - 2.25))

    assert (record.key, record.value, record.timestamp_ms) == (KEY, SOURCE.value, 1_780_000_000_123)
    assert tuple(record.headers[: len(HEADERS)]) == HEADERS, "the original headers come first, unchanged"
    added = {name: value.decode() for name, value in record.headers[len(HEADERS) :] if value is not None}
    assert added == {
        "__connect.errors.topic": "signal.events",
        "__connect.errors.partition": "3",
        "__connect.errors.offset": "42",
        "__connect.errors.connector.name": "mailgun-news",
        "__connect.errors.stage": "TASK_PUT",
        "__connect.errors.class.name": "signal_sync.destinations.mailgun",
        "__connect.errors.exception.message": "'<email>' is not a valid address",
        "signal_sync.integration": "mailgun-news",
        "signal_sync.status": "failed",
        "signal_sync.reason": "http_400",
        "signal_sync.attempts": "1",
        "signal_sync.http_status": "400",
        "signal_sync.delivery_id": outcome()["delivery_id"],
        "signal_sync.message_id": "m-1",
        "signal_sync.first_attempt_at": "2026-05-28T20:26:39.250Z",
        "signal_sync.last_attempt_at": "2026-05-28T20:26:41.500Z",
        "signal_sync.original.header_count": "5",
    }
    DeadLetterHeaders.model_validate(added)
    schema = json.loads((SCHEMAS / "dead-letter-headers.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(added, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**added, "signal_sync.attempts": "one"}, schema)


@pytest.mark.parametrize(
    ("reason", "context", "stage", "class_name", "exception_class"),
    [
        ("invalid_event", ErrorContext(exception=InvalidEventError("not JSON")), VALUE_CONVERTER,
         "signal_sync.codecs.events", "signal_sync.errors.InvalidEventError"),
        ("event_too_large", ErrorContext(exception=ValueError("big")), KAFKA_PRODUCE,
         "signal_sync.engine.forwarder", "ValueError"),
        ("internal_error", ErrorContext(TRANSFORMATION, KeyError("x")), TRANSFORMATION,
         "signal_sync.agents.ingest", "KeyError"),
        ("internal_error", ErrorContext(TASK_PUT, RuntimeError("x")), TASK_PUT,
         "signal_sync.destinations.mautic", "RuntimeError"),
        ("connection_error", None, TASK_PUT, "signal_sync.destinations.mautic", None),
    ],
)  # fmt: skip
def test_the_stage_class_and_exception_headers(
    reason: str, context: ErrorContext | None, stage: str, class_name: str, exception_class: str | None
) -> None:
    status = "invalid" if reason in ("invalid_event", "event_too_large") else "failed"
    built = outcome(integration=mautic(), status=status, reason=reason, http_status=None, error="e")
    headers = context_of(read_letter(*_wire(dead_letter(built, SOURCE, BIG, context))))
    assert headers["__connect.errors.stage"] == stage
    assert headers["__connect.errors.class.name"] == class_name
    assert headers.get("__connect.errors.exception.class.name") == exception_class
    assert "signal_sync.http_status" not in headers, "no header for what does not apply"
    assert headers["signal_sync.first_attempt_at"] == headers["signal_sync.last_attempt_at"]


def test_exception_messages_are_redacted_as_the_logs_are_and_bounded() -> None:
    secret = "s3cr3t-mailgun-key-0123456789"
    redact = Redactor([secret]).text
    long_address = "x" * 250 + "@example.com"
    exc = RuntimeError(
        f"POST failed for jane@example.com with key {secret}, Bearer abcdefghijklmnop1234 " * 50
    )
    built = outcome(status="failed", reason="internal_error", error="RuntimeError: ...")
    headers = context_of(
        read_letter(*_wire(dead_letter(built, SOURCE, BIG, ErrorContext(exception=exc), redact)))
    )
    message = headers["__connect.errors.exception.message"]
    assert (
        "jane@example.com" not in message and secret not in message and "abcdefghijklmnop1234" not in message
    )
    assert message.startswith("POST failed for <email> with key <redacted>, Bearer <redacted>")
    assert len(message) == 300
    for start in range(260, 300):  # a secret or address the cut goes through is not half shown
        cut_exc = RuntimeError(" " * start + f"{secret} {long_address} " + "y" * 500)
        letter = dead_letter(built, SOURCE, BIG, ErrorContext(exception=cut_exc), redact)
        shown = context_of(read_letter(*_wire(letter)))["__connect.errors.exception.message"]
        assert "s3cr3t" not in shown and "xxxxxxxxxx@" not in shown
    # without an exception, the outcome's error text is redacted the same way
    letter = dead_letter(outcome(error=f"refused {secret}"), SOURCE, BIG, None, redact)
    assert (
        context_of(read_letter(*_wire(letter)))["__connect.errors.exception.message"] == "refused <redacted>"
    )


def test_original_headers_named_like_ours_are_kept_apart_by_their_count() -> None:
    tricky = (("signal_sync.integration", b"not-ours"), ("signal_sync.original.header_count", b"0"))
    source = SourceRecord("signal.events", 0, 1, None, b"{}", None, tricky)
    letter = read_letter(*_wire(dead_letter(outcome(source), source, BIG)))
    assert letter is not None and letter.headers == tricky and letter.integration == "mailgun-news"
    assert letter.key is None and letter.failed_at is not None


def _wire(record: Any) -> tuple[Any, ...]:
    """What a consumer of the dead-letter topic gets back: key, value, headers, timestamp."""
    return record.key, record.value, record.headers, record.timestamp_ms


header_names = st.text(min_size=0, max_size=20)
header_values = st.one_of(st.none(), st.binary(max_size=200))
originals = st.tuples(
    st.one_of(st.none(), st.binary(max_size=300)),
    st.one_of(st.none(), st.binary(max_size=20_000)),
    st.lists(st.tuples(header_names, header_values), max_size=8).map(tuple),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**41).map(float)),
)


@PROFILE
@given(original=originals)
def test_any_record_comes_back_byte_for_byte(original: tuple[Any, ...]) -> None:
    key, value, headers, stamp = original
    source = SourceRecord("signal.events", 1, 9, stamp, value, key, headers)
    record = dead_letter(outcome(source, status="invalid", reason="invalid_event"), source, BIG)
    assert (record.key, record.value) == (key, value)
    assert tuple(record.headers[: len(headers)]) == headers
    assert record.timestamp_ms == (None if stamp is None else int(stamp))
    letter = read_letter(*_wire(record))
    assert letter is not None and not letter.truncated and not letter.legacy
    assert (letter.key, letter.value, letter.headers) == (key, value, headers)


@PROFILE
@given(original=originals, limit=st.integers(min_value=4_000, max_value=30_000))
def test_a_record_over_the_topics_limit_is_cut_to_fit_and_says_so(
    original: tuple[Any, ...], limit: int
) -> None:
    key, value, headers, stamp = original
    key = (key or b"") * 20 if key else key  # keys and headers that alone may not fit
    headers = tuple((name * 10, None if v is None else v * 10) for name, v in headers)
    source = SourceRecord("signal.events", 1, 9, stamp, value, key, headers)
    record = dead_letter(outcome(source, status="invalid", reason="invalid_event"), source, limit)
    assert record_size(record.key, record.value, record.headers) <= limit
    letter = read_letter(*_wire(record))
    assert letter is not None
    whole = record_size(key, value, headers) + record_size(None, None, record.headers[len(headers) :])
    if whole <= limit:
        assert not letter.truncated and (letter.key, letter.value, letter.headers) == (key, value, headers)
        return
    assert letter.truncated
    cut = letter.context["signal_sync.original.truncated"].split(",")
    assert (letter.value or b"") == (value or b"")[: len(letter.value or b"")]
    assert ("value" in cut) == (letter.value != value)
    assert letter.headers == (() if "headers" in cut else headers)
    assert letter.key == (None if "key" in cut else key)
    if "value" in cut:
        assert value is not None
        assert letter.context["signal_sync.original.value_bytes"] == str(len(value))
        assert letter.context["signal_sync.original.value_sha256"] == hashlib.sha256(value).hexdigest()


def test_a_huge_poison_value_keeps_its_head_key_and_headers() -> None:
    value = b'{"type":"page","pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    source = SourceRecord("signal.events", 0, 7, None, value, KEY, HEADERS)
    record = dead_letter(outcome(source, status="invalid", reason="invalid_event"), source, 999_000)
    assert 990_000 < record_size(record.key, record.value, record.headers) <= 999_000
    letter = read_letter(*_wire(record))
    assert letter is not None and letter.truncated and (letter.key, letter.headers) == (KEY, HEADERS)
    assert letter.context["signal_sync.original.truncated"] == "value"
    assert value.startswith(letter.value or b"")


def legacy(original: bytes, *, truncated: bool = False) -> bytes:
    """A dead letter as earlier versions wrote it."""
    try:
        text, encoding = original.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(original).decode("ascii"), "base64"
    return orjson.dumps(
        {
            "schema": "signal.dead-letter/v1",
            "delivery_id": "d-1",
            "message_id": "m-1",
            "integration": "mautic-main",
            "status": "failed",
            "reason": "http_400",
            "attempts": 1,
            "error": "bad",
            "source_topic": "signal.events",
            "source_partition": 2,
            "source_offset": 5,
            "original": text,
            "original_encoding": encoding,
            "original_bytes": len(original),
            "original_sha256": hashlib.sha256(original).hexdigest(),
            "original_truncated": truncated,
        }
    )


@pytest.mark.parametrize("original", [b'{"type":"page","messageId":"m-1"}', b"\xff\xfe not utf-8"])
def test_an_old_format_letter_reads_as_its_original(original: bytes) -> None:
    letter = read_letter(b"contact-id", legacy(original), None, 1_780_000_000_000)
    assert letter is not None and letter.legacy and not letter.truncated
    assert (letter.integration, letter.value, letter.key, letter.headers) == (
        "mautic-main",
        original,
        None,
        (),
    )
    assert letter.failed_at is not None and letter.failed_at.timestamp() == 1_780_000_000.0
    assert letter.context["signal_sync.reason"] == "http_400"
    assert letter.context["__connect.errors.offset"] == "5"
    assert read_letter(None, legacy(original, truncated=True), [], None).truncated  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b"not a letter", None),
        (b'{"schema":"signal.delivery/v1"}', []),
        (b"{}", [("signal_sync.original.header_count", b"x")]),
        (b"{}", [("signal_sync.original.header_count", b"3")]),
        (b"{}", [("signal_sync.original.header_count", b"0")]),  # no integration
    ],
)
def test_a_record_that_is_no_dead_letter_reads_as_none(value: bytes, headers: Any) -> None:
    assert read_letter(None, value, headers, None) is None


@PROFILE
@given(original=originals)
def test_the_internal_envelope_carries_the_record_to_the_delivery_stage(original: tuple[Any, ...]) -> None:
    from signal_sync.agents.ingest import record_fields, source_of_envelope, source_of_record
    from signal_sync.streams.partition_reader import RawRecord

    key, _, headers, stamp = original
    value = b'{"type":"page"}'
    raw = RawRecord("signal.events", 2, 11, None if stamp is None else int(stamp), key, value, list(headers))
    source = source_of_record(raw)
    assert (source.key, source.value, source.headers) == (key, value, headers)
    envelope = orjson.loads(orjson.dumps({"raw": value.decode(), **record_fields(source), "takers": 1}))
    assert source_of_envelope(envelope) == source
