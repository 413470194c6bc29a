"""The ingest stage: exactly one outcome or forward per (record, integration), whatever fails, and
no acknowledgement of a record without them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from signal_sync.agents.ingest import Forwarding, ingest_record
from signal_sync.engine.forwarder import FRAMING_BYTES
from signal_sync.outcomes import SourceRecord
from signal_sync.streams.records import DeadLetterHeaders, Outcome
from tests.unit.factories import consent
from tests.unit.runtime_fakes import fake_runtime

DELIVERIES, DLQ = "signal.deliveries", "signal.deliveries.dlq"


def source(body: dict[str, Any], offset: int = 7) -> SourceRecord:
    return SourceRecord("signal.events", 0, offset, 1_780_000_000_000.0, orjson.dumps(body))


def order_completed(**traits: Any) -> dict[str, Any]:
    """Mailgun takes it; Mautic does not map it (dropped as event_not_mapped)."""
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-order",
        "anonymousId": "anon-1",
        "traits": {"email": "jane@example.com", **traits},
        "context": consent(marketing=True),
    }


def identify(**traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": "m-identify",
        "anonymousId": "anon-2",
        "traits": {"email": "jane@example.com", "first_name": "Jane", **traits},
        "context": consent(marketing=True),
    }


def outcomes_by_integration(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    counts = Counter(outcome["integration"] for outcome in records)
    assert all(n == 1 for n in counts.values()), f"more than one outcome for one integration: {counts}"
    for outcome in records:
        Outcome.model_validate(outcome)
    return {outcome["integration"]: outcome for outcome in records}


async def test_an_exception_after_the_first_integrations_outcome_fails_only_the_others(monkeypatch):
    runtime, outputs = fake_runtime()

    def explode(*_: object) -> None:
        raise RuntimeError("forwarder broke on jane@example.com")

    monkeypatch.setattr(runtime.forwarder, "add", explode)
    await ingest_record(runtime, source(order_completed()), None)

    outcomes = outcomes_by_integration(outputs.on(DELIVERIES))
    assert set(outcomes) == {"mautic-main", "mailgun-news"}
    assert (outcomes["mautic-main"]["status"], outcomes["mautic-main"]["reason"]) == (
        "dropped",
        "event_not_mapped",
    )
    failed = outcomes["mailgun-news"]
    assert (failed["status"], failed["reason"]) == ("failed", "internal_error")
    assert failed["error"].startswith("RuntimeError: forwarder broke on ")
    assert "jane@example.com" not in failed["error"], "emails are redacted from error texts"
    letters = outputs.letters(DLQ)
    assert [letter.integration for letter in letters] == ["mailgun-news"]
    headers = DeadLetterHeaders.model_validate(letters[0].context)
    assert (headers.stage, headers.exception_class_name) == ("TRANSFORMATION", "RuntimeError")
    assert headers.exception_message == "forwarder broke on <email>"


async def test_an_event_too_large_to_forward_is_invalid_for_the_integrations_that_take_it_before_its_ack():
    runtime, outputs = fake_runtime(limit=4_000)
    acked: list[int] = []

    async def acknowledge(item: Any) -> None:
        assert len(outputs.on(DELIVERIES)) == 2, "both outcomes are written before the record's ack"
        acked.append(item)

    forwarding = Forwarding(runtime, acknowledge)
    body = order_completed(bio="x" * 3_000)
    await forwarding.ingest(source(body), None, 1)
    await forwarding.forward()

    assert acked == [1]
    outcomes = outcomes_by_integration(outputs.on(DELIVERIES))
    assert outcomes["mautic-main"]["reason"] == "event_not_mapped"
    too_large = outcomes["mailgun-news"]
    assert (too_large["status"], too_large["reason"]) == ("invalid", "event_too_large")
    assert f"over the {4_000 - FRAMING_BYTES}-byte limit" in too_large["error"]
    letters = outputs.letters(DLQ)
    assert [(letter.integration, letter.context["signal_sync.reason"]) for letter in letters] == [
        ("mailgun-news", "event_too_large")
    ]
    # the dead-letter topic's limit is 4,000 bytes here too: the value's head, and its size and hash
    assert orjson.dumps(body).startswith(letters[0].value or b"") and letters[0].truncated
    assert letters[0].context["signal_sync.original.value_bytes"] == str(len(orjson.dumps(body)))
    assert letters[0].context["__connect.errors.stage"] == "KAFKA_PRODUCE"
    forwarded = [topic for topic, *_ in outputs.records if topic.startswith("signal-sync-deliver-")]
    assert forwarded == [], "nothing of it is forwarded"


async def test_a_record_that_fits_is_forwarded_to_every_integration_that_takes_it():
    runtime, outputs = fake_runtime()
    await ingest_record(runtime, source(identify()), None)
    assert outputs.on(DELIVERIES) == []
    assert sorted(integration for integration, _ in runtime.forwarder.take()) == [
        "mailgun-news",
        "mautic-main",
    ]


async def test_when_even_the_internal_error_cannot_be_written_ingest_record_raises():
    runtime, outputs = fake_runtime()
    outputs.refuse = OSError("broker gone")
    with pytest.raises(OSError):
        await ingest_record(runtime, source({"type": "wat"}), None)


async def test_a_record_without_its_outcomes_is_not_acknowledged_nor_any_after_it_and_the_worker_stops():
    runtime, outputs = fake_runtime()
    acked: list[int] = []

    async def acknowledge(item: Any) -> None:
        acked.append(item)

    forwarding = Forwarding(runtime, acknowledge)
    await forwarding.ingest(source(identify(), offset=1), None, 1)
    outputs.refuse = OSError("broker gone")
    await forwarding.ingest(source({"type": "wat"}, offset=2), None, 2)  # its invalid outcome fails
    outputs.refuse = None
    await forwarding.ingest(source(identify(), offset=3), None, 3)
    forwarding.hold(4)
    await forwarding.forward()

    assert acked == [], "Faust commits past one unacknowledged record once a later one is acknowledged"
    assert [type(reason) for reason in runtime.stop_worker.reasons] == [OSError]  # type: ignore[attr-defined]


async def test_when_forwarding_fails_no_record_of_it_is_acknowledged_and_the_worker_stops(monkeypatch):
    runtime, _ = fake_runtime()
    acked: list[int] = []

    async def acknowledge(item: Any) -> None:
        acked.append(item)

    forwarding = Forwarding(runtime, acknowledge)
    await forwarding.ingest(source(identify(), offset=1), None, 1)
    await forwarding.forward()
    assert acked == [1]

    async def refused(records: object) -> None:
        raise OSError("MSG_SIZE_TOO_LARGE")

    monkeypatch.setattr(runtime.forwarder, "send", refused)
    await forwarding.ingest(source(identify(), offset=2), None, 2)
    await forwarding.forward()
    await forwarding.ingest(source(identify(), offset=3), None, 3)
    await forwarding.forward()
    assert acked == [1], "a record whose forward was refused is never acknowledged, nor a later one"
    assert len(runtime.stop_worker.reasons) == 1  # type: ignore[attr-defined]
