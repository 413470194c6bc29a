"""The source reader against the real broker: what it hands out per assignment, and revocations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from faust.types import TP

from signal_sync.streams.partition_reader import PartitionReader
from signal_sync.streams.source_reader import SourceReader

PARTITIONS = 3
PER_PARTITION = 40


def produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(PER_PARTITION):
        for partition in range(PARTITIONS):
            producer.produce(topic, key=b"k", value=b"%d-%d" % (partition, n), partition=partition)
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = [TopicPartition(topic, partition, offset) for partition, offset in offsets.items()]
        consumer.commit(offsets=wanted, asynchronous=False)
    finally:
        consumer.close()


@pytest.fixture
async def source(
    kafka_bootstrap: str, kafka_topics: Callable[..., str]
) -> AsyncIterator[tuple[SourceReader, str, Callable[[dict[int, int]], None]]]:
    topic = kafka_topics("source", partitions=PARTITIONS)
    produce(kafka_bootstrap, topic)
    group = f"source-{uuid.uuid4().hex[:8]}"
    config = {"bootstrap.servers": kafka_bootstrap}
    starts = PartitionReader(config, group_id=group, timeout_s=20)
    reader = SourceReader(config, topic, starts, fetch={"fetch.wait.max.ms": 10}, batch_size=25)
    yield reader, topic, lambda offsets: commit(kafka_bootstrap, group, topic, offsets)
    await reader.close()
    await starts.close()


async def read_until(reader: SourceReader, count: int) -> list[tuple[int, int]]:
    """(partition, offset) of the next ``count`` records handed out and still owned (at least)."""
    handed: list[tuple[int, int]] = []
    async with asyncio.timeout(30):
        while len(handed) < count:
            batch = await reader.read()
            handed += [(r.partition, r.offset) for r in batch.records if reader.owns(batch, r)]
    return handed


def in_order_once(handed: list[tuple[int, int]]) -> dict[int, list[int]]:
    by_partition: dict[int, list[int]] = {}
    for partition, offset in handed:
        by_partition.setdefault(partition, []).append(offset)
    return by_partition


async def test_each_assigned_partition_from_its_committed_offset_in_order_once(source) -> None:
    reader, topic, commit_offsets = source
    commit_offsets({0: 10, 2: 39})
    reader.resume({TP(topic, 0), TP(topic, 2), TP("another-topic", 1)})
    handed = await read_until(reader, (PER_PARTITION - 10) + 1)
    assert in_order_once(handed) == {0: list(range(10, PER_PARTITION)), 2: [39]}
    assert (reader.position(0), reader.position(1), reader.position(2)) == (
        PER_PARTITION,
        None,
        PER_PARTITION,
    )
    assert (await reader.read()).records == [], "nothing more, nothing twice"


async def test_a_revoked_partition_is_no_longer_handed_out_and_starts_again_where_committed(source) -> None:
    reader, topic, commit_offsets = source
    revocations: list[int | None] = []

    async def finished() -> None:
        revocations.append(reader.position(1))

    reader.on_revoke = finished
    reader.resume({TP(topic, 0), TP(topic, 1)})
    batch = await reader.read()
    while not any(r.partition == 1 for r in batch.records):
        batch = await reader.read()
    await reader.revoke({TP(topic, 1)})
    assert revocations == [None], "on_revoke runs once the partition is no longer assigned"
    await reader.revoke({TP(topic, 1), TP(topic, 2)})  # Faust revokes again at its wait: no error
    assert revocations == [None, None]
    assert not any(reader.owns(batch, r) for r in batch.records if r.partition == 1), (
        "records read before the revocation are not handed on"
    )
    assert all(reader.owns(batch, r) for r in batch.records if r.partition == 0)
    commit_offsets({1: 5})
    reader.resume({TP(topic, 1)})
    handed: list[tuple[int, int]] = []
    async with asyncio.timeout(30):
        while reader.position(1) != PER_PARTITION:
            batch = await reader.read()
            handed += [(r.partition, r.offset) for r in batch.records if reader.owns(batch, r)]
    partition_1 = in_order_once(handed)[1]
    assert partition_1 == list(range(5, PER_PARTITION)), "the new assignment starts at the committed offset"


async def test_a_revocation_while_the_start_is_looked_up_leaves_the_partition_unread(source) -> None:
    reader, topic, _ = source
    reader.resume({TP(topic, 0)})
    await reader.revoke({TP(topic, 0)})  # before the lookup of the start answered
    await asyncio.sleep(0.5)  # the lookup answers meanwhile and must not assign it
    assert reader.position(0) is None
    reader.resume({TP(topic, 2)})
    assert {p for p, _ in await read_until(reader, PER_PARTITION)} == {2}


class FailingStarts:
    """A start-offset lookup that fails (the group coordinator did not answer in time)."""

    async def start_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise TimeoutError("the coordinator did not answer")


async def test_a_start_that_fails_makes_the_read_raise(kafka_bootstrap: str) -> None:
    reader = SourceReader({"bootstrap.servers": kafka_bootstrap}, "t", FailingStarts(), fetch={})  # type: ignore[arg-type]
    reader.resume({TP("t", 0)})
    with pytest.raises(TimeoutError, match="coordinator"):
        async with asyncio.timeout(10):
            await reader.read()
    await reader.close()


def end_offset(bootstrap: str, topic: str, isolation: str) -> int:
    """Partition 0's end for a consumer of this ``isolation.level`` (read_committed: the last stable
    offset, which passes a transaction only once its marker is in the partition)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "isolation.level": isolation})
    try:
        return probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        probe.close()


def produce_transaction(bootstrap: str, topic: str, values: list[bytes], commit: bool) -> None:
    """``values`` to partition 0 in one transaction, committed or aborted; returns once its marker
    (an offset of its own) is in the partition."""
    marker_end = end_offset(bootstrap, topic, "read_uncommitted") + len(values) + 1
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0  # in the partition before the abort (which drops what is queued)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)
    deadline = time.monotonic() + 30
    while end_offset(bootstrap, topic, "read_committed") != marker_end:
        assert time.monotonic() < deadline, "the transaction's marker never reached the partition"
        time.sleep(0.05)


def produce_plain(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0


async def test_offsets_without_a_committed_record_are_handed_out_to_acknowledge(
    kafka_bootstrap: str, kafka_topics: Callable[..., str]
) -> None:
    """Aborted records and transaction markers are never handed out as records; the offsets they
    take are, as empty records right before the record after them (or after the partition's last
    record), so their acknowledgement lets the commit pass."""
    topic = kafka_topics("source-tx", partitions=1)
    produce_plain(kafka_bootstrap, topic, [b"a0", b"a1"])  # 0, 1
    produce_transaction(kafka_bootstrap, topic, [b"x0", b"x1"], commit=False)  # 2, 3, abort marker 4
    produce_transaction(kafka_bootstrap, topic, [b"c0", b"c1"], commit=True)  # 5, 6, commit marker 7
    produce_plain(kafka_bootstrap, topic, [b"b0"])  # 8
    produce_transaction(kafka_bootstrap, topic, [b"c2"], commit=True)  # 9, commit marker 10: the end
    config = {"bootstrap.servers": kafka_bootstrap}
    starts = PartitionReader(config, group_id=f"tx-{uuid.uuid4().hex[:8]}", timeout_s=20)
    reader = SourceReader(config, topic, starts, fetch={"fetch.wait.max.ms": 10})
    try:
        reader.resume({TP(topic, 0)})
        handed: list[tuple[int, bytes | None]] = []
        async with asyncio.timeout(30):
            while reader.position(0) != 11:
                batch = await reader.read()
                for record in batch.records:
                    handed += [(skipped.offset, skipped.value) for skipped in batch.skipped_before(record)]
                    handed.append((record.offset, record.value))
                handed += [(skipped.offset, skipped.value) for skipped in batch.trailing]
        assert handed == [
            (0, b"a0"),
            (1, b"a1"),
            (2, None),
            (3, None),
            (4, None),
            (5, b"c0"),
            (6, b"c1"),
            (7, None),
            (8, b"b0"),
            (9, b"c2"),
            (10, None),
        ]
    finally:
        await reader.close()
        await starts.close()
