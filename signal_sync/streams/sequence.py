"""Hand an agent every record of an assigned partition once, in offset order, whatever Faust does.

Around a (re)assignment faust-streaming 0.15.3 can hand an agent the same records twice (a
fetch issued before recovery's seek to the committed offsets, then the same records after
it), and can skip records: its stream iterator drops records fetched while the flow is
suspended, and its read-offset bookkeeping then drops their refetch. The chaos suite saw
both after SIGKILL and SIGTERM restarts. A duplicate reorders a contact's updates; a skip
delivers events late and out of order, or loses them once a later commit passes them.

So every agent that reads through Faust (the delivery and erasure agents; the ingest agent reads
the source through ``streams.source_reader``) asks the guard about each record before handling
it. The guard keeps, per partition, the next offset this assignment must handle; it starts at
the group's committed offset (the log start when there is none), looked up when the partition's
first record arrives, or for all of an assignment's partitions at once when the assignment is
announced (``prefetch``). A record below it is a replay and is skipped. A record above it means
Faust skipped the records in between: the guard reads them straight from Kafka
(``PartitionReader``) and returns them, to be handled first. Records Faust skipped at the end of
a partition have no later record to reveal them: ``tail`` reads those for an idle agent
(``streams.tail_watch``). Revocation forgets the partition: its next owner starts again from the
committed offset."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from faust.types import TP, ConsumerT, EventT, Message, StreamT

from signal_sync.streams.partition_reader import PartitionReader, RawRecord

log = logging.getLogger(__name__)


class SequenceGuard:
    """Per partition: the next offset to handle in this assignment."""

    def __init__(self, reader: PartitionReader) -> None:
        self._reader = reader
        self._next: dict[TP, int] = {}
        self._lookups: dict[TP, asyncio.Future[dict[tuple[str, int], int]]] = {}
        self._revocations = 0
        self.replays = 0
        """Records skipped because this assignment already handled them (or they were committed)."""
        self.recovered = 0
        """Records Faust skipped that the guard read from Kafka itself."""

    async def admit(self, tp: TP, offset: int) -> list[RawRecord] | None:
        """``None`` if the record was already handled (skip it); otherwise the records Faust
        skipped before it, to handle first, in order (usually none)."""
        expected = await self._expected(tp)
        if expected is None:  # revoked while we asked: the next owner decides
            return []
        if offset < expected:
            self.replays += 1
            return None
        missing: list[RawRecord] = []
        if offset > expected:
            read = await self._read_back(tp, expected, offset, "were not handed to the agent")
            if read is None:
                return []
            missing = read
        self._next[tp] = offset + 1
        return missing

    async def admit_after(
        self, tp: TP, offset: int, handle_missing: Callable[[RawRecord], Awaitable[None]]
    ) -> bool:
        """Whether the record at ``offset`` is to be handled (False: already handled, only its
        acknowledgement is due); the records Faust skipped before it are handled first, in order."""
        missing = await self.admit(tp, offset)
        if missing is None:
            return False
        for record in missing:
            await handle_missing(record)
        return True

    def position(self, tp: TP) -> int | None:
        """The next offset this assignment must handle (None before the partition's first record or tail)."""
        return self._next.get(tp)

    async def tail(self, tp: TP, highwater: int, limit: int) -> list[RawRecord]:
        """The records below ``highwater`` not yet handled in this assignment (at most ``limit``
        offsets' worth), marked handled: for an agent whose stream stopped handing them out."""
        expected = await self._expected(tp)
        if expected is None:
            return []
        self._next[tp] = expected
        if expected >= highwater:
            return []
        end = min(highwater, expected + limit)
        records = await self._read_back(
            tp, expected, end, "at the end of the partition were not handed to the idle agent"
        )
        if records is None:
            return []
        self._next[tp] = end  # offsets without a record (transaction markers) count as handled
        return records

    def prefetch(self, tps: Iterable[TP]) -> None:
        """Look up the start offsets of newly assigned partitions together, in the background.

        Looked up one at a time on their first records, the partitions of an assignment cost a
        round trip or two each, one after another, while the agent whose record waits reads
        nothing (about 0.2 s for the worker's 36 partitions on a local broker): the first
        events after a start or rebalance waited for them."""
        wanted = [tp for tp in tps if tp not in self._next and tp not in self._lookups]
        if not wanted:
            return
        partitions = [(tp.topic, tp.partition) for tp in wanted]
        lookup = asyncio.ensure_future(self._reader.start_offsets(partitions))
        lookup.add_done_callback(_note_failure)
        for tp in wanted:
            self._lookups[tp] = lookup

    async def _expected(self, tp: TP) -> int | None:
        """The next offset to handle, from the committed offset for a partition seen first; None
        if the partition was revoked while that was looked up."""
        expected = self._next.get(tp)
        if expected is None:
            revocations = self._revocations
            expected = await self._start_offset(tp)
            if revocations != self._revocations:
                return None
        return expected

    async def _start_offset(self, tp: TP) -> int:
        """The prefetched start offset of ``tp`` if its lookup succeeded, else one looked up now."""
        lookup = self._lookups.pop(tp, None)
        if lookup is not None:
            with contextlib.suppress(Exception):  # _note_failure logged it; ask for this one alone
                return (await asyncio.shield(lookup))[(tp.topic, tp.partition)]
        return await self._reader.start_offset(tp.topic, tp.partition)

    async def _read_back(self, tp: TP, start: int, end: int, what: str) -> list[RawRecord] | None:
        """The records ``start <= offset < end`` read straight from Kafka, counted and logged;
        None if the partition was revoked meanwhile (its next owner reads them)."""
        revocations = self._revocations
        records = await self._reader.read(tp.topic, tp.partition, start, end)
        if revocations != self._revocations:
            return None
        self.recovered += len(records)
        log.warning(
            "%s[%s]: offsets %s..%s %s; read %d record(s) from Kafka",
            tp.topic,
            tp.partition,
            start,
            end - 1,
            what,
            len(records),
            extra={"topic": tp.topic, "partition": tp.partition, "first": start, "last": end - 1},
        )
        return records

    async def close(self) -> None:
        await self._reader.close()

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions left this worker: their next owner starts from the committed offsets."""
        self._revocations += 1
        for tp in tps:
            self._next.pop(tp, None)
            self._lookups.pop(tp, None)


def _note_failure(lookup: asyncio.Future[dict[tuple[str, int], int]]) -> None:
    """Log a failed prefetch (each partition is then looked up on its own first record)."""
    if not lookup.cancelled() and lookup.exception() is not None:
        log.warning("looking up the start offsets of the assigned partitions failed: %s", lookup.exception())


async def acknowledge(stream: StreamT, consumer: ConsumerT, item: EventT | RawRecord) -> None:
    """Tell Faust a record is done: an event through its stream; a record Faust never handed out
    (read back by the guard) straight to the consumer, so its commit can move past it."""
    if not isinstance(item, RawRecord):
        await stream.ack(item)
        return
    consumer.ack(
        Message(item.topic, item.partition, item.offset, 0.0, 0, item.headers, item.key, item.value, None)
    )
