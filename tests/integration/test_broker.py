"""Proves the test broker is a real Kafka: partitioned keyed round trips and restarts.

If these fail, every other integration test is meaningless, so they are kept small and
direct (confluent_kafka only, no faust), and they say what broke.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from local_kafka import LocalKafka, LocalKafkaError, fetch_jars

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, records: list[tuple[str, dict[str, object]]]) -> list[Message]:
    """Produce ``(key, value)`` pairs idempotently and return the delivery reports in order."""
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=json.dumps(value).encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert not errors, f"delivery failed: {errors}"
    return delivered


def _consume(bootstrap: str, topic: str, group: str, count: int, timeout: float = 60.0) -> list[Message]:
    """Read ``count`` messages with consumer group ``group``, committing what was read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
        if out:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return out


def test_keyed_round_trip_preserves_per_key_order(
    kafka_bootstrap: str, kafka_topics: Callable[..., str]
) -> None:
    topic = kafka_topics("broker-roundtrip", partitions=3)
    keys = [f"contact-{i}" for i in range(10)]
    records = [(keys[i % 10], {"key": keys[i % 10], "seq": i // 10}) for i in range(50)]

    delivered = _produce(kafka_bootstrap, topic, records)
    assert len(delivered) == 50
    messages = _consume(kafka_bootstrap, topic, f"roundtrip-{uuid.uuid4().hex}", 50)

    assert len(messages) == 50, f"consumed {len(messages)} of 50"
    seqs: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for msg in messages:
        key = msg.key().decode()
        value = json.loads(msg.value())
        assert value["key"] == key
        seqs[key].append(value["seq"])
        partitions[key].add(msg.partition())
    assert {k: v for k, v in seqs.items() if v != list(range(5))} == {}, "per-key order broken"
    assert {k: p for k, p in partitions.items() if len(p) != 1} == {}, "a key landed in 2 partitions"
    produced_partition = {m.key().decode(): m.partition() for m in delivered}
    assert {k: next(iter(p)) for k, p in partitions.items()} == produced_partition
    assert len(set(produced_partition.values())) > 1, "all keys hashed to one partition"


def _own_broker_or_skip() -> None:
    try:
        fetch_jars()
    except LocalKafkaError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(f"local JVM broker unavailable: {exc}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("crash", [False, True], ids=["graceful-stop", "sigkill"])
def test_local_kafka_restart_keeps_messages_and_offsets(tmp_path: Path, crash: bool) -> None:
    """stop() then start() (same ports, same data dir) must not lose messages or commits."""
    _own_broker_or_skip()
    broker = LocalKafka()
    try:
        bootstrap = broker.start(tmp_path / "kafka")
        topic = f"restart-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30)[topic].result(timeout=60)
        _produce(bootstrap, topic, [("k", {"seq": i}) for i in range(20)])
        group = f"restart-{uuid.uuid4().hex[:8]}"
        first = _consume(bootstrap, topic, group, 10)
        assert [json.loads(m.value())["seq"] for m in first] == list(range(10))

        broker.stop(kill=crash)
        broker.stop()  # idempotent
        assert not broker.is_running
        assert broker.start() == bootstrap, "restart must reuse the same port"

        rest = _consume(bootstrap, topic, group, 10)
        assert [json.loads(m.value())["seq"] for m in rest] == list(range(10, 20)), "committed offset lost"
        everything = _consume(bootstrap, topic, f"fresh-{uuid.uuid4().hex[:8]}", 20)
        assert [json.loads(m.value())["seq"] for m in everything] == list(range(20)), "messages lost"
    finally:
        broker.stop()
