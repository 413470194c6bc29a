"""The partition reader against the real broker: committed offsets and offset ranges as stored."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from signal_sync.streams.partition_reader import PartitionReader


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(count):
        producer.produce(topic, key=b"k%d" % n, value=b"v%d" % n, partition=0, headers=[("h", b"%d" % n)])
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


async def test_start_offset_is_the_committed_one_else_the_log_start(kafka_bootstrap, kafka_topics):
    topic = kafka_topics("reader", partitions=1)
    produce(kafka_bootstrap, topic, 10)
    group = f"reader-{uuid.uuid4().hex[:8]}"
    reader = PartitionReader({"bootstrap.servers": kafka_bootstrap}, group_id=group, timeout_s=20)
    try:
        assert await reader.start_offset(topic, 0) == 0
        commit(kafka_bootstrap, group, topic, 7)
        assert await reader.start_offset(topic, 0) == 7
    finally:
        await reader.close()


async def test_start_offsets_of_many_partitions_in_one_lookup(kafka_bootstrap, kafka_topics):
    topic = kafka_topics("reader", partitions=3)
    produce(kafka_bootstrap, topic, 10)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deleted = TopicPartition(topic, 0, 4)
    admin.delete_records([deleted])[deleted].result(timeout=30)  # partition 0's log now starts at 4
    group = f"reader-{uuid.uuid4().hex[:8]}"
    reader = PartitionReader({"bootstrap.servers": kafka_bootstrap}, group_id=group, timeout_s=20)
    wanted = [(topic, 0), (topic, 1), (topic, 2)]
    try:
        assert await reader.start_offsets(wanted) == {(topic, 0): 4, (topic, 1): 0, (topic, 2): 0}
        commit(kafka_bootstrap, group, topic, 9)
        assert await reader.start_offsets(wanted) == {(topic, 0): 9, (topic, 1): 0, (topic, 2): 0}
        assert await reader.start_offset(topic, 1) == 0
    finally:
        await reader.close()


async def test_read_returns_exactly_the_range_with_keys_values_and_headers(kafka_bootstrap, kafka_topics):
    topic = kafka_topics("reader", partitions=1)
    produce(kafka_bootstrap, topic, 10)
    reader = PartitionReader({"bootstrap.servers": kafka_bootstrap}, group_id="reader-range", timeout_s=20)
    try:
        records = await reader.read(topic, 0, 2, 7)
        expected = [(n, b"k%d" % n, b"v%d" % n) for n in range(2, 7)]
        assert [(r.offset, r.key, r.value) for r in records] == expected
        assert records[0].headers == [("h", b"2")] and records[0].timestamp_ms is not None
        assert [r.offset for r in await reader.read(topic, 0, 8, 20)] == [8, 9], "stops at the end of the log"
        assert await reader.read(topic, 0, 10, 12) == []
    finally:
        await reader.close()
