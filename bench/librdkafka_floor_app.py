"""``librdkafka_floor``: the ``faust_floor`` agent without Faust, the floor of a design that leaves it.

The same work per record (decode it with orjson, write one outcome-sized record through
librdkafka with the worker's producer settings), but the records are read by a confluent-kafka
consumer in the same group protocol, up to ``BATCH`` at a time with the worker's fetch settings,
and handled in a plain loop: no event loop, no per-record task, stream or queue. Offsets are
committed every second after the producer is flushed (at-least-once, as the worker commits).

Against ``faust_floor`` it shows what Faust's per-record consume path costs on this machine; against
``signal_sync`` how much of the worker's CPU per event is its own work and how much the path.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from faust_common import load_config, stop_when_orphaned
from faust_floor_app import produce_queued
from passthrough_app import outcome_for

from signal_sync.config import KafkaSettings
from signal_sync.streams.output_producer import SETTINGS

BATCH = 500
"""Records taken from the consumer's queue per call (its fetches are independent of this)."""
COMMIT_INTERVAL_S = 1.0


def batch_consumer(config: dict[str, Any]) -> Consumer:
    """A consumer in the variant's group with the worker's fetch settings, offsets committed by hand."""
    defaults = KafkaSettings.model_fields
    return Consumer(
        {
            "bootstrap.servers": config["bootstrap"],
            "group.id": config["app_id"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.min.bytes": defaults["consumer_fetch_min_bytes"].default,
            "fetch.wait.max.ms": defaults["consumer_fetch_max_wait_ms"].default,
        }
    )


def main() -> None:
    config = load_config()
    consumer = batch_consumer(config)
    producer = Producer({**SETTINGS, "bootstrap.servers": config["bootstrap"]})
    outcome_topic = config["outcome_topic"]
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stop_when_orphaned()
    consumer.subscribe([config["source_topic"]])
    committed_at = time.monotonic()
    read = False
    while not stopping:
        records = consumer.consume(BATCH, 0.1)
        now = time.time()
        for record in records:
            if record.error() is not None:
                continue
            value = orjson.dumps(outcome_for(orjson.loads(record.value()), now, "librdkafka_floor"))
            produce_queued(producer, outcome_topic, value, record.key())
        producer.poll(0)
        read = read or bool(records)
        if read and time.monotonic() - committed_at >= COMMIT_INTERVAL_S:
            producer.flush()  # every outcome on the broker before its record's offset is committed
            consumer.commit(asynchronous=False)
            committed_at, read = time.monotonic(), False
    producer.flush()
    if read:
        consumer.commit(asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    main()
