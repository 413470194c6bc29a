"""Read a partition's committed offset and a range of its records straight from Kafka.

The sequence guard (``streams.sequence``) needs two facts Faust cannot be trusted with around a
rebalance: where the consumer group's committed position of a partition is, and the records of
an offset range the stream skipped. A plain confluent-kafka consumer that never subscribes (so
it never joins the group) and never commits answers both (the source reader,
``streams.source_reader``, starts its partitions at the same committed offsets). Its calls
block, so they run in a worker thread, one at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

T = TypeVar("T")

RETRIABLE = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._WAIT_COORD,
    }
)
"""Answers that mean "not yet" (a group coordinator loading or moving, an election, a slow broker),
whether or not librdkafka flags them retriable."""
STALE_VIEW = frozenset(
    {KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError._ALL_BROKERS_DOWN}
)
"""The client's own view of the cluster failed it (after a broker restart its metadata cache can
keep a partition unknown for minutes): retried with a new client, which reads the metadata afresh."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as stored: what an agent needs to handle a record Faust did not hand it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def raw_record(message: Message) -> RawRecord:
    """A record a confluent-kafka client read (its timestamp None when the broker has none)."""
    kind, stamp = message.timestamp()
    return RawRecord(
        message.topic(),
        message.partition(),
        message.offset(),
        stamp if kind else None,
        message.key(),
        message.value(),
        list(message.headers() or []),
    )


class PartitionReader:
    """Committed offsets and offset ranges of one consumer group's partitions."""

    def __init__(self, client_config: dict[str, Any], group_id: str, timeout_s: float = 30.0) -> None:
        self._config = {
            **client_config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,  # a range read should not wait for more data to arrive
        }
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._lock = asyncio.Lock()

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    async def start_offset(self, topic: str, partition: int) -> int:
        """The group's committed offset of the partition, or the log start if it has none."""
        return (await self.start_offsets([(topic, partition)]))[(topic, partition)]

    async def start_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """``start_offset`` of each (topic, partition): the committed offsets in one request, the log
        starts of the partitions without one in one more (per broker)."""
        async with self._lock:
            return await asyncio.to_thread(self._start_offsets, partitions)

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
        """The records with ``start <= offset < end`` (fewer if some offsets hold no record)."""
        async with self._lock:
            return await asyncio.to_thread(self._read, topic, partition, start, end)

    async def close(self) -> None:
        """Close the client once no call is using it."""
        async with self._lock:
            if self._consumer is not None:
                await asyncio.to_thread(self._consumer.close)
                self._consumer = None

    def _discard_client(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def _start_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        committed = self._retrying(lambda client: client.committed(wanted, timeout=5))
        offsets = {(tp.topic, tp.partition): int(tp.offset) for tp in _answered(committed) if tp.offset >= 0}
        # A partition without a committed offset starts at its log start: ListOffsets for the
        # earliest timestamp (-2, the value of OFFSET_BEGINNING) answers it, one request per broker.
        uncommitted = [
            TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in committed if tp.offset < 0
        ]
        if uncommitted:
            starts = self._retrying(lambda client: client.offsets_for_times(uncommitted, timeout=5))
            offsets.update({(tp.topic, tp.partition): int(tp.offset) for tp in _answered(starts)})
        return offsets

    def _retrying(self, call: Callable[[Consumer], T]) -> T:
        """``call(client)``, again after a short pause while the broker answers with a retriable error
        (a group coordinator that is still loading or moving, a leader election), with a new client
        when the client's view of the cluster is what failed (``STALE_VIEW``)."""
        deadline = time.monotonic() + self._timeout_s
        pause = 0.05
        while True:
            try:
                return call(self._client())
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = error.code() if isinstance(error, KafkaError) else None
                if code in STALE_VIEW:
                    self._discard_client()
                retriable = isinstance(error, KafkaError) and (
                    error.retriable() or code in RETRIABLE or code in STALE_VIEW
                )
                if not retriable or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _read(self, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
        client = self._client()
        client.assign([TopicPartition(topic, partition, start)])
        records: list[RawRecord] = []
        deadline = time.monotonic() + self._timeout_s
        try:
            while time.monotonic() < deadline:
                message = client.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return records
                    raise RuntimeError(f"reading {topic}[{partition}] {start}..{end - 1}: {error}")
                offset = message.offset()
                if offset >= end:
                    return records
                if offset >= start:
                    records.append(raw_record(message))
                if offset == end - 1:
                    return records
            raise TimeoutError(f"reading {topic}[{partition}] {start}..{end - 1}: over {self._timeout_s}s")
        finally:
            client.unassign()


def _answered(partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The partitions of a per-partition answer, which must carry no error."""
    for tp in partitions:
        if tp.error is not None:
            raise RuntimeError(f"offset of {tp.topic}[{tp.partition}]: {tp.error}")
    return partitions
