"""A valid event too large to forward never costs the events around it their outcomes.

A ~900 KB identify fits the source topic (its own produce succeeds), but its envelope (the raw
event plus its stitched traits) cannot fit an internal-topic record, and grouped with other
events it used to make the whole group's record too large for the broker. Here it is produced
among good events of other contacts: every good event is delivered to both integrations, the
large one gets ``invalid`` / ``event_too_large`` and a dead letter per integration, and the
offsets are committed, so a restarted worker does not read any of them again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import WorkerProcess, consume_until, produce

from signal_sync.engine.forwarder import partition_of
from signal_sync.identity import contact_id
from tests.support.dead_letters import consume_letters
from tests.support.outcomes import consume_outcomes

pytestmark = pytest.mark.integration

CONSENT = {"consent": {"canonical": {"marketing": True}}}
BIG_TRAIT_BYTES = 900_000


def email(n: int) -> str:
    return f"large.person{n}@example.com"


def identify(n: int, **traits: Any) -> tuple[bytes, bytes]:
    body = {
        "type": "identify",
        "messageId": f"large-{n}",
        "anonymousId": f"anon-large-{n}",
        "timestamp": "2026-06-06T14:40:00Z",
        "traits": {"email": email(n), "first_name": "Large", **traits},
        "context": {"ip": "203.0.113.9", **CONSENT},
    }
    return f"anon-large-{n}".encode(), json.dumps(body).encode()


def test_a_too_large_event_is_invalid_and_its_neighbours_are_delivered(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, worker_config, worker
):
    big = identify(0, bio="x" * BIG_TRAIT_BYTES)
    assert 900_000 < len(big[1]) < 1_000_000  # fits the source topic and the worker's input limit
    # Every good event goes to the big one's internal partition (of four): all share its group.
    target = partition_of(contact_id(email(0)), 4)
    good = [n for n in range(1, 400) if partition_of(contact_id(email(n)), 4) == target][:15]
    records = [identify(n) for n in good]
    records.insert(7, big)
    produce(kafka_bootstrap, pipeline_topics["source"], records)
    expected = 2 * len(records)

    outcomes = consume_outcomes(kafka_bootstrap, pipeline_topics["deliveries"], expected, worker, timeout=120)
    by_pair = {(o["message_id"], o["integration"]): o for o in outcomes}
    assert len(by_pair) == expected, "exactly one outcome per (event, integration)"
    for integration in ("mautic-main", "mailgun-news"):
        large = by_pair[("large-0", integration)]
        assert (large["status"], large["reason"]) == ("invalid", "event_too_large"), large
        assert "bytes" in large["error"] and "limit" in large["error"]
        for n in good:
            outcome = by_pair[(f"large-{n}", integration)]
            assert (outcome["status"], outcome["reason"]) == ("delivered", None), outcome

    letters = consume_letters(kafka_bootstrap, pipeline_topics["dlq"], lambda got: len(got) >= 2, timeout=30)
    assert sorted(stored.letter.integration for stored in letters) == ["mailgun-news", "mautic-main"]
    for stored in letters:
        assert stored.get("reason") == "event_too_large"
        assert stored.key == big[0], "keyed like the source record"
        assert stored.value == big[1] and not stored.letter.truncated, "it fits the topic: kept whole"
    assert worker.stop() == 0, worker.log_tail()

    # The offsets are committed: a restarted worker reads none of these records again.
    second = WorkerProcess(worker_config, tmp_path / "worker-2.log").start()
    try:
        produce(kafka_bootstrap, pipeline_topics["source"], [identify(99)])
        after = consume_until(
            kafka_bootstrap,
            pipeline_topics["deliveries"],
            lambda got: len(got) >= expected + 2,
            timeout=120,
            check=second.assert_alive,
        )
        late = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) > expected + 2, timeout=5
        )
    finally:
        assert second.stop() == 0, second.log_tail()
    assert {(o["message_id"], o["status"]) for o in after[expected:]} == {("large-99", "delivered")}
    assert len(late) == expected + 2, "a restarted worker delivered committed events again"
