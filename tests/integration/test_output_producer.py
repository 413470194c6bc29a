"""The outcome producer against the real broker: where records land, and what stops a commit."""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer

from signal_sync.streams.output_producer import OutputProducer, OutputProducerError, flush_with_faust


def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    records: list[tuple[int, bytes, bytes]] = []
    try:
        for _ in range(200):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                records.append((message.partition(), message.key(), message.value()))
            if len(records) >= count:
                break
    finally:
        consumer.close()
    return records


async def test_flush_returns_once_records_are_on_the_broker_in_the_java_clients_partitions(
    kafka_bootstrap, kafka_topics
):
    topic = kafka_topics("outputs", partitions=6)
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap})
    keys = [f"contact-{n}".encode() for n in range(40)]
    for key in keys:
        await producer.send(topic, key, b'{"status":"delivered"}')
    await producer.flush()

    records = read_all(kafka_bootstrap, topic, len(keys))
    partitions = list(range(6))
    # Same partition as Faust's own producer (aiokafka, the Java client's murmur2) gave before.
    expected = {key: DefaultPartitioner()(key, partitions, partitions) for key in keys}
    assert sorted(key for _, key, _ in records) == sorted(keys)
    assert {key: partition for partition, key, _ in records} == expected


async def test_flush_raises_when_the_broker_refuses_a_record(kafka_bootstrap, kafka_topics):
    topic = kafka_topics("outputs-small", partitions=1, config={"max.message.bytes": "2000"})
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap})
    await producer.send(topic, b"k", b"x" * 20_000)
    with pytest.raises(OutputProducerError, match="MSG_SIZE_TOO_LARGE|too large"):
        await producer.flush()
    await producer.send(topic, b"k", b"small")
    with pytest.raises(OutputProducerError):  # sticky: no later commit may pass the refused record
        await producer.flush()


async def test_faust_flush_before_a_commit_also_flushes_the_outputs():
    app = faust.App(f"flush-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:1", autodiscover=False)
    calls: list[str] = []

    async def flush_outputs() -> None:
        calls.append("outputs")

    flush_with_faust(app, flush_outputs)
    await app.producer.flush()  # what Consumer._commit_offsets awaits before committing
    assert calls == ["outputs"]


async def test_flush_waits_only_for_what_was_queued_before_it(kafka_bootstrap, kafka_topics):
    """librdkafka's own flush waits for an empty queue, which steady load may never give: commits
    would stall. A record queued after the flush started must not hold it up; here that record can
    never be delivered (its topic does not exist and the broker creates none: it fails after ~30 s)."""
    topic = kafka_topics("outputs-epoch", partitions=1)
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap})
    await producer.send(topic, b"before", b"{}")
    flush = asyncio.create_task(producer.flush())
    await asyncio.sleep(0)  # the flush has taken its snapshot of what is queued
    await producer.send(f"missing-{uuid.uuid4().hex}", b"after", b"{}")
    await asyncio.wait_for(flush, timeout=20)  # an empty-queue flush would wait for "after"
    assert [key for _, key, _ in read_all(kafka_bootstrap, topic, 1)] == [b"before"]


async def test_records_beyond_librdkafkas_queue_wait_in_order_and_the_flush_includes_them(
    kafka_bootstrap, kafka_topics
):
    topic = kafka_topics("outputs-backlog", partitions=1)
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 5})
    offsets: list[int] = []
    for n in range(60):
        producer.send_soon(topic, str(n).encode(), b"{}", 0, lambda message: offsets.append(message.offset()))
    assert producer.waiting > 0  # librdkafka took 5; the rest wait in the producer, in order
    await producer.flush()

    assert producer.waiting == 0
    assert [key for _, key, _ in read_all(kafka_bootstrap, topic, 60)] == [str(n).encode() for n in range(60)]
    assert offsets == list(range(60))  # what a RocksDB table keeps as its persisted offset


async def test_a_record_over_the_topics_limit_read_at_start_is_refused_before_the_broker_sees_it(
    kafka_bootstrap, kafka_topics
):
    """With the topic's ``max.message.bytes`` read from the broker, an oversize record raises at once
    and nothing sticky is left: later records still flush (the broker would refuse it, and every
    later flush would raise)."""
    from signal_sync.config import KafkaSettings
    from signal_sync.streams.output_producer import RecordTooLargeError
    from signal_sync.streams.topics import max_message_bytes

    topic = kafka_topics("outputs-limited", partitions=1, config={"max.message.bytes": "20000"})
    limits = max_message_bytes(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic])
    assert limits == {topic: 20_000}
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap}, limits)
    with pytest.raises(RecordTooLargeError):
        await producer.send(topic, b"k", b"x" * 19_500)
    # Many records that each fit go out in batches the broker accepts (batch.size follows the limit).
    for n in range(40):
        await producer.send(topic, str(n).encode(), b"y" * 9_000)
    await producer.flush()
    assert len(read_all(kafka_bootstrap, topic, 40)) == 40


async def test_while_the_worker_is_behind_records_are_held_and_the_hold_ends_by_itself(
    kafka_bootstrap, kafka_topics
):
    """Behind its input, the worker's records wait ``BACKLOG_HOLD_S`` in the producer and then go to
    librdkafka together (fewer, larger produce requests): no sender waits for them, and the hold
    ends without a flush; what librdkafka has no room for then waits for room, in order."""
    topic = kafka_topics("outputs-held", partitions=1)
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 5})
    producer.connect()
    producer.behind = lambda: True
    keys = [str(n).encode() for n in range(6)]
    for key in keys:
        producer.send_soon(topic, key, b"{}", 0)
    assert producer.waiting == 0  # held: not handed over, so the sixth does not wait for room

    first = await asyncio.to_thread(read_all, kafka_bootstrap, topic, 5)  # the loop runs meanwhile
    assert [key for _, key, _ in first] == keys[:5]
    assert producer.waiting == 1  # released: librdkafka took five, the sixth waits for room
    await producer.flush()
    assert [key for _, key, _ in read_all(kafka_bootstrap, topic, 6)] == keys


async def test_a_flush_includes_the_held_records_and_those_beyond_librdkafkas_queue_in_order(
    kafka_bootstrap, kafka_topics
):
    topic = kafka_topics("outputs-held-flush", partitions=1)
    producer = OutputProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 5})
    behind = False
    producer.behind = lambda: behind
    offsets: list[int] = []
    for n in range(60):
        behind = n >= 20  # the first 20 go to librdkafka (15 wait for room), then the worker is behind
        producer.send_soon(topic, str(n).encode(), b"{}", 0, lambda message: offsets.append(message.offset()))
    assert producer.waiting == 15  # the held 40 do not count: no sender waits for them
    await producer.flush()

    assert producer.waiting == 0
    assert [key for _, key, _ in read_all(kafka_bootstrap, topic, 60)] == [str(n).encode() for n in range(60)]
    assert offsets == list(range(60))
