"""The benchmark's input producer does not count its own start-up as the worker's latency.

Latency is measured from the moment ``produce`` hands a record to its producer. A new
idempotent librdkafka producer holds its first records until it has a producer id (about
500 ms here, longer on a broker that has just started); every paced run then began with half a
second of events that looked 0.5 s slow before any worker had seen them, so ``produce`` waits
for the id before its clock starts. Here the broker
stamps each record (``LogAppendTime``), so the gap between hand-over and the broker is measured
without any worker.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from types import ModuleType

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.bench.bench_scripts import load

pytestmark = pytest.mark.integration


def bench_run() -> ModuleType:
    """``bench/run.py`` as a module."""
    return load("run")


def test_first_paced_records_reach_the_broker_without_the_producer_start_up(
    kafka_bootstrap: str, kafka_topics: Callable[..., str]
) -> None:
    topic = kafka_topics("bench-produce", config={"message.timestamp.type": "LogAppendTime"})
    records = [(f"k{i}".encode(), f'{{"n":{i}}}'.encode()) for i in range(5)]
    produced_ms = array("d", bytes(8 * len(records)))

    bench_run().produce(kafka_bootstrap, topic, records, produced_ms, rate=20.0)

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic}-check"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        appended: dict[bytes, float] = {}
        for _ in range(50):
            for message in consumer.consume(num_messages=10, timeout=0.5):
                if message.error() is None:
                    appended[message.key()] = float(message.timestamp()[1])
            if len(appended) == len(records):
                break
    finally:
        consumer.close()
    assert len(appended) == len(records)
    gaps = [appended[key] - produced_ms[i] for i, (key, _) in enumerate(records)]
    # Without waiting for the producer id the first gap was ~500 ms, the others a few ms.
    assert max(gaps) < 250, f"hand-over → broker gaps (ms): {gaps}"
