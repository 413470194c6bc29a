"""Hand an agent every record of an assigned partition once, in offset order, whatever Faust does.

Around a (re)assignment faust-streaming 0.15.3 can hand an agent the same records twice (a
fetch issued before recovery's seek to the committed offsets, then the same records after
it), and can skip records: its stream iterator drops records fetched while the flow is
suspended, and its read-offset bookkeeping then drops their refetch. The chaos suite saw
both after SIGKILL and SIGTERM restarts. A duplicate reorders a contact's updates; a skip
delivers events late and out of order, or loses them once a later commit passes them.

So every agent asks the guard about each record before handling it. The guard keeps, per
partition, the next offset this assignment must handle; it starts at the group's committed
offset (the log start when there is none), looked up when the partition's first record
arrives. A record below it is a replay and is skipped. A record above it means Faust skipped
the records in between: the guard reads them straight from Kafka (``PartitionReader``) and
returns them, to be handled first. Records Faust skipped at the end of a partition have no
later record to reveal them: ``tail`` reads those for an idle agent (``streams.tail_watch``).
Revocation forgets the partition: its next owner starts again from the committed offset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from faust.types import TP, ConsumerT, EventT, Message, StreamT

from signal_sync.streams.partition_reader import PartitionReader, RawRecord

log = logging.getLogger(__name__)


class SequenceGuard:
    """Per partition: the next offset to handle in this assignment."""

    def __init__(self, reader: PartitionReader) -> None:
        self._reader = reader
        self._next: dict[TP, int] = {}
        self._revocations = 0
        self.replays = 0
        """Records skipped because this assignment already handled them (or they were committed)."""
        self.recovered = 0
        """Records Faust skipped that the guard read from Kafka itself."""

    async def admit(self, tp: TP, offset: int) -> list[RawRecord] | None:
        """``None`` if the record was already handled (skip it); otherwise the records Faust
        skipped before it, to handle first, in order (usually none)."""
        revocations = self._revocations
        expected = self._next.get(tp)
        if expected is None:
            expected = await self._reader.start_offset(tp.topic, tp.partition)
            if revocations != self._revocations:  # revoked while we asked: the next owner decides
                return []
        if offset < expected:
            self.replays += 1
            return None
        missing: list[RawRecord] = []
        if offset > expected:
            missing = await self._reader.read(tp.topic, tp.partition, expected, offset)
            if revocations != self._revocations:
                return []
            self.recovered += len(missing)
            log.warning(
                "%s[%s]: offsets %s..%s were not handed to the agent; read %d record(s) from Kafka",
                tp.topic,
                tp.partition,
                expected,
                offset - 1,
                len(missing),
                extra={"topic": tp.topic, "partition": tp.partition, "first": expected, "last": offset - 1},
            )
        self._next[tp] = offset + 1
        return missing

    def position(self, tp: TP) -> int | None:
        """The next offset this assignment must handle (None before the partition's first record or tail)."""
        return self._next.get(tp)

    async def tail(self, tp: TP, highwater: int, limit: int) -> list[RawRecord]:
        """The records below ``highwater`` not yet handled in this assignment (at most ``limit``
        offsets' worth), marked handled: for an agent whose stream stopped handing them out."""
        revocations = self._revocations
        expected = self._next.get(tp)
        if expected is None:
            expected = await self._reader.start_offset(tp.topic, tp.partition)
            if revocations != self._revocations:
                return []
            self._next[tp] = expected
        if expected >= highwater:
            return []
        end = min(highwater, expected + limit)
        records = await self._reader.read(tp.topic, tp.partition, expected, end)
        if revocations != self._revocations:
            return []
        self._next[tp] = end  # offsets without a record (transaction markers) count as handled
        self.recovered += len(records)
        log.warning(
            "%s[%s]: offsets %s..%s at the end of the partition were not handed to the idle agent; "
            "read %d record(s) from Kafka",
            tp.topic,
            tp.partition,
            expected,
            end - 1,
            len(records),
            extra={"topic": tp.topic, "partition": tp.partition, "first": expected, "last": end - 1},
        )
        return records

    async def close(self) -> None:
        await self._reader.close()

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions left this worker: their next owner starts from the committed offsets."""
        self._revocations += 1
        for tp in tps:
            self._next.pop(tp, None)


async def acknowledge(stream: StreamT, consumer: ConsumerT, item: EventT | RawRecord) -> None:
    """Tell Faust a record is done: an event through its stream; a record Faust never handed out
    (read back by the guard) straight to the consumer, so its commit can move past it."""
    if not isinstance(item, RawRecord):
        await stream.ack(item)
        return
    consumer.ack(
        Message(item.topic, item.partition, item.offset, 0.0, 0, item.headers, item.key, item.value, None)
    )
