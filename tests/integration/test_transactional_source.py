"""A source written by a transactional producer: committed events only, and a commit point that
passes the transactions' markers (the source reader acknowledges the offsets without a record)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.outcomes import consume_outcomes

pytestmark = pytest.mark.integration


def event(n: int) -> bytes:
    return json.dumps(
        {
            "type": "identify",
            "messageId": f"tx-{n}",
            "anonymousId": f"anon-tx-{n}",
            "timestamp": "2026-06-06T14:40:00Z",
            "traits": {"email": f"tx.person{n}@example.com", "first_name": "Tx"},
            "context": {"consent": {"canonical": {"marketing": True}}},
        }
    ).encode()


def produce(bootstrap: str, topic: str, transactions: list[tuple[list[int], bool]]) -> None:
    """Each (events, commit) in a transaction of its own on partition 0, committed or aborted."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    for events, commit in transactions:
        producer.begin_transaction()
        for n in events:
            producer.produce(topic, key=b"anon-tx-%d" % n, value=event(n), partition=0)
        assert producer.flush(30) == 0  # on the broker, also when aborted
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)


def offsets(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """The group's committed offset of partition 0 and the partition's end (markers included)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"}
    )
    try:
        tp = TopicPartition(topic, 0)
        end = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
        return consumer.committed([tp], timeout=10)[0].offset, end
    finally:
        consumer.close()


def test_only_committed_events_are_delivered_and_the_commit_point_passes_the_markers(
    kafka_bootstrap, pipeline_topics, worker, worker_config
):
    source = pipeline_topics["source"]
    produce(kafka_bootstrap, source, [([0, 1], True), ([2], False), ([3], True), ([4, 5], True)])
    delivered = [0, 1, 3, 4, 5]
    outcomes = consume_outcomes(
        kafka_bootstrap, pipeline_topics["deliveries"], 2 * len(delivered), worker, 120
    )
    assert sorted({o["message_id"] for o in outcomes}) == [f"tx-{n}" for n in delivered], (
        "the aborted transaction's event gets no outcome"
    )
    group = yaml.safe_load(worker_config.read_text())["kafka"]["app_id"]
    deadline = time.monotonic() + 60
    while (found := offsets(kafka_bootstrap, group, source))[0] != found[1]:
        assert time.monotonic() < deadline, f"committed {found[0]}, partition end {found[1]}"
        worker.assert_alive()
        time.sleep(0.5)
    assert found[1] == len([0, 1, 2, 3, 4, 5]) + 4, "six records and four markers"
