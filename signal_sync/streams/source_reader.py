"""Read the source topic's partitions in batches through librdkafka while Faust keeps the group.

Faust's consumer hands records over one at a time (aiokafka's fetcher, Faust's conductor and
stream) and aiokafka asks for each partition's records in small fetches: for the source, one record
per event, that path cost the worker about as much CPU as the event's own work, and the broker three
times the CPU per event of batched reads (docs/performance.md). So the ingest agent reads the source
through this reader: a confluent-kafka consumer that never joins the group (it never subscribes)
and never commits, assigned to the source partitions Faust's group gives this worker.

Faust keeps the membership, the tables and the commits. Its consumer leaves the source out of its
own fetches (``streams.faust_fixes``) and tells the reader:

* ``resume``: a source partition may be read, once the tables' recovery for the assignment is done
  (the identity table must be current before an event is stitched). The reader starts it at the
  group's committed offset (``PartitionReader.start_offsets``; the log start without one).
* ``revoke``: before Faust's revocation goes on (and commits), the partition is no longer handed out,
  and the reader's ``on_revoke`` callback (the ingest agent: finish the record in hand, forward what
  it holds and acknowledge it) runs, so a partition's next owner starts after every record this
  worker handled and nothing of this worker's reaches the internal topics after the new owner's.

The records read are acknowledged into Faust's offsets one by one (``streams.sequence.acknowledge``),
and Faust commits them with its own. The reader reads from one offset on, in order, so an offset it
never hands out holds no record to read (a transaction marker, an aborted transaction's record, one
removed by retention): those are acknowledged too (``Batch.skipped_before``), so a transactional
producer's markers do not hold the commit point as they do for the topics Faust reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from faust.types import TP

from signal_sync.streams.partition_reader import PartitionReader, RawRecord, raw_record

log = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Records taken from librdkafka's queue per call."""
WAIT_S = 0.1
"""Longest one call waits for a record; a revocation or an assignment waits for that call."""
QUEUED_KBYTES = 4096
"""librdkafka's read-ahead (``queued.max.messages.kbytes``): bounded, as the worker's memory is."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Records read in one call, with the assignment epoch of each partition when they were read and
    the offsets that hold no record to read (``skipped_before``, ``trailing``)."""

    records: list[RawRecord]
    epochs: dict[int, int]
    gaps: dict[tuple[int, int], int]
    """(partition, offset) of a record → the first offset of the run without records right before it."""
    trailing: list[RawRecord]
    """Offsets without a record after the last record read of a partition, as empty records."""

    def skipped_before(self, record: RawRecord) -> list[RawRecord]:
        """The offsets right before ``record`` that hold no record to read, as empty records to
        acknowledge: transaction markers, aborted transactions' records (the reader reads committed
        records only) and records removed by retention or compaction. Acknowledged in order with the
        records around them, so Faust's commit passes them, and never ahead of a record still being
        handled."""
        first = self.gaps.get((record.partition, record.offset))
        if first is None:
            return []
        return empty_records(record.topic, record.partition, first, record.offset)


def empty_records(topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
    """Offsets ``start <= offset < end`` of a partition as records without key, value or headers."""
    return [RawRecord(topic, partition, offset, None, None, None, []) for offset in range(start, end)]


class SourceReader:
    """Reads the assigned partitions of one topic, in offset order, each record once per assignment."""

    def __init__(
        self,
        client_config: dict[str, Any],
        topic: str,
        starts: PartitionReader,
        fetch: dict[str, Any],
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.topic = topic
        self._config = {
            **client_config,
            **fetch,
            "group.id": "unused",  # librdkafka asks for one; never subscribed, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "queued.max.messages.kbytes": QUEUED_KBYTES,
            "isolation.level": "read_committed",  # an aborted transaction's events are not events
        }
        self._starts = starts
        self._batch_size = batch_size
        self._consumer: Consumer | None = None
        self._calls = asyncio.Lock()
        self._next: dict[int, int] = {}
        """Per assigned partition: the next offset to hand out."""
        self._epochs: dict[int, int] = {}
        self._epoch = 0
        self._assigned = asyncio.Event()
        self.on_read: Callable[[int], None] | None = None
        """Called with the number of records each read hands out (the metrics count them)."""
        self.on_revoke: Callable[[], Awaitable[None]] | None = None
        """Runs at each revocation, after the revoked partitions stopped being handed out."""
        self._failure: BaseException | None = None
        self._closed = False
        self.behind = False
        """Whether more than a batch of records waited in a partition at the last read."""

    def owns(self, batch: Batch, record: RawRecord) -> bool:
        """Whether ``record`` of ``batch`` is still this assignment's to handle."""
        return self._epochs.get(record.partition) == batch.epochs.get(record.partition)

    def position(self, partition: int) -> int | None:
        """The next offset to hand out of an assigned partition (None while not assigned)."""
        return self._next.get(partition)

    def resume(self, tps: Iterable[TP]) -> None:
        """Faust's recovery is done for these partitions: read them from their committed offsets
        (looked up in the background; a revocation meanwhile cancels it)."""
        partitions = sorted({tp.partition for tp in tps if tp.topic == self.topic} - set(self._next))
        if partitions and not self._closed:
            task = asyncio.ensure_future(self._assign(partitions, self._epoch))
            task.add_done_callback(self._note_failure)

    async def revoke(self, tps: Iterable[TP]) -> None:
        """Stop handing out these partitions, then run ``on_revoke``."""
        self._epoch += 1  # an assignment still being looked up is for an older assignment
        assigned = sorted(
            tp.partition
            for tp in tps
            if tp.topic == self.topic and self._next.pop(tp.partition, None) is not None
        )
        for partition in assigned:
            self._epochs.pop(partition, None)
        if not self._next:
            self._assigned.clear()
        async with self._calls:
            consumer = self._consumer
            if consumer is not None and assigned:  # librdkafka refuses to unassign what it does not have
                consumer.incremental_unassign([TopicPartition(self.topic, p) for p in assigned])
        if self.on_revoke is not None:
            await self.on_revoke()

    async def read(self) -> Batch:
        """The next records of the assigned partitions (waits for an assignment; empty after
        ``WAIT_S`` without records). Raises what failed a partition's start, and a fatal error or a
        refused authorization of the topic."""
        while not self._assigned.is_set():  # after ``close`` it stays unset: waits until cancelled
            await self._assigned.wait()
        if self._failure is not None:
            raise self._failure
        async with self._calls:
            if self._closed:
                return Batch([], {}, {}, [])
            consumer = self._client()
            messages = await asyncio.to_thread(_take, consumer, self._batch_size, self.behind)
            batch = self._batch(messages)
            self.behind = self._lagging(consumer)
            if len(messages) < self._batch_size:
                batch.trailing.extend(self._passed(consumer))
        if self.on_read is not None and batch.records:
            self.on_read(len(batch.records))
        return batch

    def _batch(self, messages: list[Message]) -> Batch:
        """The records of ``messages`` this assignment has not handed out yet, in order."""
        records: list[RawRecord] = []
        gaps: dict[tuple[int, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    raise KafkaException(error)
                log.warning("reading %s: %s", self.topic, error, extra={"topic": self.topic})
                continue
            partition, offset = message.partition(), message.offset()
            expected = self._next.get(partition)
            if expected is None or offset < expected:  # revoked, or read before a new start
                continue
            if offset > expected:
                gaps[(partition, offset)] = expected
            self._next[partition] = offset + 1
            records.append(raw_record(message))
        return Batch(records, dict(self._epochs), gaps, [])

    def _lagging(self, consumer: Consumer) -> bool:
        """Whether more than a batch of records waits in an assigned partition: its high watermark
        as of the client's last fetch of it, against the next offset to hand out."""
        for partition, expected in self._next.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high - expected > self._batch_size:
                return True
        return False

    def _passed(self, consumer: Consumer) -> list[RawRecord]:
        """The offsets without a record the client passed after each partition's last record read
        (a transaction's marker at the end of a partition has no later record to reveal it). The
        client's position moves over a record only when it hands the record out, and over markers
        and aborted records as it comes to them: what lies below it was read or holds no record."""
        positions = consumer.position([TopicPartition(self.topic, p) for p in sorted(self._next)])
        passed: list[RawRecord] = []
        for tp in positions:
            expected = self._next.get(tp.partition)
            if expected is not None and tp.error is None and tp.offset > expected:
                passed += empty_records(self.topic, tp.partition, expected, tp.offset)
                self._next[tp.partition] = tp.offset
        return passed

    async def close(self) -> None:
        """Close the client once no call is using it; nothing is read or assigned after it."""
        self._closed = True
        self._next.clear()
        self._assigned.clear()
        async with self._calls:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await asyncio.to_thread(consumer.close)

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    async def _assign(self, partitions: list[int], epoch: int) -> None:
        starts = await self._starts.start_offsets([(self.topic, partition) for partition in partitions])
        async with self._calls:  # no read between the assignment and its positions
            if epoch != self._epoch or self._closed:
                return  # revoked meanwhile: the next assignment looks them up again
            for partition in partitions:
                self._next[partition] = starts[(self.topic, partition)]
                self._epochs[partition] = epoch
            self._client().incremental_assign(
                [TopicPartition(self.topic, p, starts[(self.topic, p)]) for p in partitions]
            )
        self._assigned.set()

    def _note_failure(self, task: asyncio.Future[None]) -> None:
        """A start that failed (its offsets could not be looked up): ``read`` raises it, since the
        partitions would otherwise never be read."""
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._assigned.set()


def _take(consumer: Consumer, batch_size: int, fill: bool) -> list[Message]:
    """Up to ``batch_size`` records. ``fill`` (a backlog waits): ``batch_size`` records, or fewer after
    ``WAIT_S``; otherwise those librdkafka's queue holds now, else the first to arrive within
    ``WAIT_S`` and those queued behind it, so a record that arrives alone is handed out at once
    (``consume(n, timeout)`` returns only once it has ``n`` records or the timeout passed)."""
    if fill:
        return consumer.consume(batch_size, WAIT_S)
    messages = consumer.consume(batch_size, 0)
    if not messages:
        messages = consumer.consume(1, WAIT_S)
        if messages:
            messages += consumer.consume(batch_size - 1, 0)
    return messages
