"""Outcome records: the ``signal.deliveries`` contract."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signal_sync.engine.jobs import JobResult
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import (
    DELIVERY_NAMESPACE,
    OutcomeBuilder,
    SourceRecord,
    delivery_id,
    encode,
    event_timestamp,
    iso_utc,
)
from signal_sync.streams.records import Outcome, SignalEvent
from tests.unit.factories import event, mailgun, mautic

CONTRACT_KEYS = {
    "schema",
    "delivery_id",
    "message_id",
    "integration",
    "destination",
    "event",
    "contact_id",
    "status",
    "reason",
    "http_status",
    "created",
    "attempts",
    "event_timestamp",
    "completed_at",
    "latency_ms",
    "hint",
    "error",
}
EMAIL = "jane.doe@example.com"
SOURCE = SourceRecord("signal.events", 3, 42, 1_780_000_000_000.0, b'{"type":"identify"}')
NOW = 1_780_000_000.25


def test_delivery_id_is_deterministic_and_per_integration() -> None:
    first = delivery_id("msg-1", "mautic-main")
    assert first == delivery_id("msg-1", "mautic-main")
    assert uuid.UUID(first)
    assert first != delivery_id("msg-1", "mailgun-news")
    assert first != delivery_id("msg-2", "mautic-main")
    # no accidental collision from naive concatenation
    assert delivery_id("ab", "c") != delivery_id("a", "bc")


@pytest.mark.parametrize("message_id", ["msg-1", "sha256:00ff", "é-ünïcode-ß", ""])
def test_delivery_id_is_the_documented_uuid5(message_id: str) -> None:
    expected = uuid.uuid5(DELIVERY_NAMESPACE, f"{message_id}\x00mautic-main")
    assert delivery_id(message_id, "mautic-main") == str(expected)


def build(
    include_email: bool = False, builder: OutcomeBuilder | None = None, **overrides: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "message_id": "msg-1",
        "integration": mautic(),
        "event_name": "Signed Up",
        "email": EMAIL,
        "status": "delivered",
        "reason": None,
        "source": SOURCE,
        "now": NOW,
        "event": event(type="track", event="Signed Up", timestamp="2026-06-06T16:32:10+02:00"),
        "http_status": 201,
        "created": True,
        "attempts": 1,
    }
    return (builder or OutcomeBuilder(include_email=include_email)).build(**{**fields, **overrides})


def test_delivered_outcome_fields() -> None:
    record = build()
    assert set(record) == CONTRACT_KEYS
    assert record["schema"] == "signal.delivery/v1"
    assert record["delivery_id"] == delivery_id("msg-1", "mautic-main")
    assert record["integration"] == "mautic-main"
    assert record["destination"] == "mautic"
    assert record["event"] == "Signed Up"
    assert (record["status"], record["http_status"], record["created"], record["attempts"]) == (
        "delivered",
        201,
        True,
        1,
    )
    assert record["event_timestamp"] == "2026-06-06T14:32:10Z"
    assert record["completed_at"] == "2026-05-28T20:26:40.250Z"
    assert record["latency_ms"] == 250.0


def test_contact_id_is_sha256_of_the_normalized_email() -> None:
    record = build()
    assert record["contact_id"] == hashlib.sha256(EMAIL.encode()).hexdigest()
    assert build(email=None, status="dropped", reason="no_email")["contact_id"] is None


def test_no_plaintext_email_unless_configured() -> None:
    hidden = build()
    assert "email" not in hidden
    assert EMAIL.encode() not in encode(hidden)

    shown = build(include_email=True)
    assert shown["email"] == EMAIL
    assert shown["contact_id"] == hidden["contact_id"]


def test_mailgun_destination_and_distinct_delivery_id() -> None:
    record = build(integration=mailgun(), http_status=200, created=None)
    assert (record["integration"], record["destination"]) == ("mailgun-news", "mailgun")
    assert record["delivery_id"] != build()["delivery_id"]


OUTCOME_CASES = {
    "delivered": {},
    "delivered-with-email": {"include_email": True},
    "dropped": {
        "status": "dropped",
        "reason": "consent_denied",
        "http_status": None,
        "created": None,
        "attempts": 0,
    },
    "dropped-no-email": {"status": "dropped", "reason": "no_email", "email": None, "http_status": None},
    "failed": {
        "status": "failed",
        "reason": "http_401",
        "http_status": 401,
        "created": None,
        "attempts": 1,
        "hint": "Basic Authentication is not enabled in Mautic",
        "error": "API authorization denied.",
    },
    "failed-connection": {
        "integration": mailgun(),
        "status": "failed",
        "reason": "connection_error",
        "http_status": None,
        "created": None,
        "attempts": 5,
        "error": "timeout: ",
    },
    "invalid": {
        "message_id": "sha256:0123",
        "event_name": None,
        "email": None,
        "status": "invalid",
        "reason": "invalid_event",
        "event": None,
        "http_status": None,
        "created": None,
        "attempts": 0,
        "error": "not valid UTF-8 JSON",
    },
    "no-source-timestamp": {"source": SourceRecord("t", None, None, None, None)},
    "withdrawal": {"operation": "withdraw_consent", "http_status": 200, "created": None, "attempts": 2},
    "withdrawal-unknown": {
        "operation": "withdraw_consent",
        "status": "dropped",
        "reason": "consent_denied",
        "http_status": 404,
        "created": None,
    },
    "regrant": {"operation": "restore_consent"},
    "upsert": {"operation": "upsert"},
}


@pytest.mark.parametrize("case", list(OUTCOME_CASES))
def test_every_outcome_validates_against_the_model_and_its_schema(case: str) -> None:
    overrides = dict(OUTCOME_CASES[case])
    include_email = overrides.pop("include_email", False)
    record = build(include_email=include_email, **overrides)

    model = Outcome.model_validate(record)
    assert model.model_dump(by_alias=True, exclude_unset=True) == record
    jsonschema.validate(orjson.loads(encode(record)), Outcome.model_json_schema(by_alias=True))


def test_missing_timestamps_are_null() -> None:
    record = build(event=None, source=SourceRecord("t", None, None, None, None))
    assert record["event_timestamp"] is None and record["latency_ms"] is None


def test_naive_event_timestamp_counts_as_utc() -> None:
    record = build(event=event(type="page", timestamp="2026-06-06T14:32:10"))
    assert record["event_timestamp"] == "2026-06-06T14:32:10Z"


def test_encode_is_compact_json() -> None:
    record = build()
    wire = encode(record)
    assert orjson.loads(wire) == record
    assert b"\n" not in wire and b": " not in wire


@pytest.mark.parametrize(
    "timestamp", [0.0, 1.9999994, 1.9999995, 1796187874.0689993, 2491741370.0689993, 1796187874.9999996]
)
def test_completed_at_is_what_datetime_formats(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert iso_utc(timestamp) == expected.replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-06-06T10:00:00.5-05:30", "2026-06-06T15:30:00.500000Z"),
        ("2026-06-06T10:00:00+02:00", "2026-06-06T08:00:00Z"),
        ("2026-06-06T23:59:59.999999+00:00", "2026-06-06T23:59:59.999999Z"),
    ],
)
def test_event_timestamps_with_an_offset_are_converted_to_utc(given: str, expected: str) -> None:
    event = SignalEvent.model_validate({"type": "page", "timestamp": given})
    assert event_timestamp(event) == expected


def test_the_error_text_of_an_exception_names_its_type_without_emails() -> None:
    from signal_sync.destinations.delivery import ERROR_TEXT_LIMIT, exception_text

    assert exception_text(ValueError("jane@example.com: bad")) == "ValueError: <email>: bad"
    assert len(exception_text(RuntimeError("x" * 100_000))) == ERROR_TEXT_LIMIT
    assert exception_text(KeyError()) == "KeyError: "
    for start in range(270, 300):  # an address the cut goes through is not half shown
        cut = exception_text(RuntimeError(" " * start + "someone.long@example.com " + "y" * 5_000))
        assert "someone" not in cut and "example" not in cut


def test_operation_only_when_the_delivery_stage_decided_it() -> None:
    assert "operation" not in build(status="dropped", reason="no_email", email=None)
    assert build(operation="withdraw_consent")["operation"] == "withdraw_consent"


KEY = b"k" * 32


def test_a_keyed_contact_id_is_the_hmac_of_the_normalized_email() -> None:
    keyed = build(builder=OutcomeBuilder(contact_id_key=KEY))
    assert keyed["contact_id"] == hmac.new(KEY, EMAIL.encode(), hashlib.sha256).hexdigest()
    assert keyed["contact_id"] != hashlib.sha256(EMAIL.encode()).hexdigest()
    other = build(builder=OutcomeBuilder(contact_id_key=b"x" * 32))
    assert other["contact_id"] != keyed["contact_id"], "another key, another id"
    assert OutcomeBuilder(contact_id_key=KEY).contact_id_of(EMAIL) == keyed["contact_id"]


REASONS = st.sampled_from([None, "no_email", "invalid_email", "event_not_mapped", "consent_denied"])


@settings(max_examples=60, deadline=None)
@given(
    reasons=st.lists(REASONS, min_size=1, max_size=4),
    email=st.sampled_from([None, EMAIL, "ünï@example.com"]),
    include_email=st.booleans(),
    keyed=st.booleans(),
    status=st.sampled_from(["dropped", "invalid", "failed"]),
    error=st.sampled_from([None, "record has no value (tombstone)"]),
    operation=st.sampled_from([None, "erase"]),
    with_event=st.booleans(),
)
def test_build_each_gives_the_bytes_build_gives_for_each_integration(
    reasons: list[str | None],
    email: str | None,
    include_email: bool,
    keyed: bool,
    status: str,
    error: str | None,
    operation: str | None,
    with_event: bool,
) -> None:
    builder = OutcomeBuilder(include_email=include_email, contact_id_key=KEY if keyed else None)
    integrations = [mautic(), mailgun(), mautic(id="mautic-second"), mailgun(id="mailgun-second")]
    pairs = list(zip(integrations, reasons, strict=False))
    common: dict[str, Any] = {
        "message_id": "msg-1",
        "event_name": "Signed Up",
        "email": email,
        "status": status,
        "source": SOURCE,
        "now": NOW,
        "event": event(type="track", event="Signed Up", timestamp="2026-06-06T16:32:10+02:00")
        if with_event
        else None,
        "error": error,
        "operation": operation,
    }
    each = builder.build_each(pairs, **common)
    alone = [builder.build(integration=integration, reason=reason, **common) for integration, reason in pairs]
    assert [encode(record) for record in each] == [encode(record) for record in alone]


def test_dropped_are_the_drop_outcomes_of_the_resolved_event() -> None:
    builder = OutcomeBuilder()
    signed_up = event(type="track", event="Signed Up", email=EMAIL, message_id="msg-7")
    resolved = ResolvedEvent(signed_up, {"email": EMAIL, "plan": "pro"})
    drops = [(mautic(), "consent_denied"), (mailgun(), "event_not_mapped")]
    records = builder.dropped(drops, resolved, SOURCE, NOW)
    expected = builder.build_each(
        drops,
        message_id="msg-7",
        event_name="Signed Up",
        email=EMAIL,
        status="dropped",
        source=SOURCE,
        now=NOW,
        event=signed_up,
    )
    assert [encode(record) for record in records] == [encode(record) for record in expected]
    assert [record["reason"] for record in records] == ["consent_denied", "event_not_mapped"]


@pytest.mark.parametrize("erasure", [False, True])
def test_delivery_says_how_the_job_ended(erasure: bool) -> None:
    builder = OutcomeBuilder()
    signed_up = event(type="track", event="Signed Up", email=EMAIL, message_id="msg-8")
    resolved = ResolvedEvent(signed_up, {"email": EMAIL})
    done = JobResult("upsert", "failed", "http_422", 422, None, 2, "check the field", "refused", None, (4, 5))
    record = builder.delivery(mautic(), resolved, done, SOURCE, NOW, erasure=erasure)
    assert record == builder.build(
        message_id="msg-8",
        integration=mautic(),
        event_name=None if erasure else "Signed Up",
        email=EMAIL,
        status="failed",
        reason="http_422",
        source=SOURCE,
        now=NOW,
        event=None if erasure else signed_up,
        http_status=422,
        attempts=2,
        hint="check the field",
        error="refused",
        operation="upsert",
        segments_added=(4, 5),
    )
    assert (record["event"] is None) is erasure
