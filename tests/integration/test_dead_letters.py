"""Dead letters on the real broker: the original record (key, value bytes, timestamp, headers) with
the error in Connect-style headers, from the ingest stage and from a delivery agent."""

from __future__ import annotations

import time

import orjson
import pytest
from harness import consume_until

from signal_sync.outcomes import delivery_id
from tests.support.dead_letters import consume_letters, produce_records
from tests.support.sandbox import set_faults

pytestmark = pytest.mark.integration

STAMP = int(time.time() * 1000) - 60_123
"""The source records' CreateTime: a dead letter carries the original's (recent: retention counts from it)."""


def test_dead_letters_are_the_original_records_with_the_error_in_headers(
    kafka_bootstrap, pipeline_topics, sandboxes, worker
):
    _, mg = sandboxes
    set_faults(mg.url, {"force_status": 400})
    poison = {
        "key": b"\x00poison-key\xff",
        "value": b"\xff{not json at all",
        "headers": [
            ("traceparent", b"00-4bf92f35-01"),
            ("bin", b"\x00\xff"),
            ("null", None),
            ("d", b"1"),
            ("d", b"2"),
        ],
        "timestamp": STAMP,
    }
    identify = {
        "type": "identify",
        "messageId": "dl-identify-1",
        "anonymousId": "dl-anon-1",
        "traits": {"email": "dl.person@example.com", "first_name": "Dee"},
        "context": {"consent": {"canonical": {"marketing": True}}},
    }
    good = {
        "key": b"dl-anon-1",
        "value": orjson.dumps(identify),
        "headers": [("source", b"web"), ("trace", b"\x01\x02\x03")],
        "timestamp": STAMP + 1,
    }
    positions = produce_records(kafka_bootstrap, pipeline_topics["source"], [poison, good])

    letters = consume_letters(
        kafka_bootstrap, pipeline_topics["dlq"], lambda got: len(got) >= 3, 120, worker.assert_alive
    )
    assert len(letters) == 3, letters
    invalid = sorted((s for s in letters if s.get("status") == "invalid"), key=lambda s: s.letter.integration)
    failed = [s for s in letters if s.get("status") == "failed"]
    assert [s.letter.integration for s in invalid] == ["mailgun-news", "mautic-main"]
    assert [s.letter.integration for s in failed] == ["mailgun-news"]

    for stored, original, (partition, offset) in [(s, poison, positions[0]) for s in invalid] + [
        (failed[0], good, positions[1])
    ]:
        # the record as it was: key, value bytes, timestamp, headers in order (null and duplicates too)
        assert (stored.key, stored.value, stored.timestamp_ms) == (
            original["key"],
            original["value"],
            STAMP + (original is good),
        )
        assert stored.letter.headers == tuple(original["headers"])
        assert stored.headers[: len(original["headers"])] == tuple(original["headers"])
        context = stored.context
        assert (context["__connect.errors.topic"], context["__connect.errors.partition"]) == (
            pipeline_topics["source"],
            str(partition),
        )
        assert context["__connect.errors.offset"] == str(offset)
        assert context["__connect.errors.connector.name"] == stored.letter.integration
        assert context["signal_sync.first_attempt_at"] <= context["signal_sync.last_attempt_at"]

    for stored in invalid:
        assert stored.get("reason") == "invalid_event"
        assert stored.context["__connect.errors.stage"] == "VALUE_CONVERTER"
        assert (
            stored.context["__connect.errors.exception.class.name"] == "signal_sync.errors.InvalidEventError"
        )
        assert stored.context["__connect.errors.exception.message"]

    letter = failed[0]
    assert (letter.get("reason"), letter.get("http_status"), letter.get("attempts")) == (
        "http_400",
        "400",
        "1",
    )
    assert letter.get("message_id") == "dl-identify-1"
    assert letter.get("delivery_id") == delivery_id("dl-identify-1", "mailgun-news")
    assert letter.context["__connect.errors.stage"] == "TASK_PUT"
    assert letter.context["__connect.errors.class.name"] == "signal_sync.destinations.mailgun"
    assert "dl.person@example.com" not in "".join(letter.context.values()), (
        "no plaintext email in the headers"
    )

    outcomes = consume_until(kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 4, 30)
    failed_outcome = next(o for o in outcomes if o["status"] == "failed")
    assert letter.get("last_attempt_at") == failed_outcome["completed_at"]
