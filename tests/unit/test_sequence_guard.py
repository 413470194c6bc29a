"""The sequence guard: replays are skipped, records Faust skipped are read back, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from faust.types import TP

from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.sequence import SequenceGuard

P0 = TP("t", 0)
P1 = TP("t", 1)


class FakeReader:
    """Committed offsets per partition and the offsets that exist in the log."""

    def __init__(self, committed: dict[TP, int], missing_offsets: set[int] = frozenset()) -> None:
        self.committed = committed
        self.missing_offsets = missing_offsets  # e.g. transaction markers: no record there
        self.reads: list[tuple[int, int]] = []
        self.lookups: list[list[tuple[str, int]]] = []  # the partitions of each start-offset lookup
        self.pause: asyncio.Event | None = None
        self.failure: Exception | None = None  # raised by the next lookup of several partitions

    async def start_offset(self, topic: str, partition: int) -> int:
        self.lookups.append([(topic, partition)])
        if self.pause is not None:
            await self.pause.wait()
        return self.committed[TP(topic, partition)]

    async def start_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self.lookups.append(list(partitions))
        if self.pause is not None:
            await self.pause.wait()
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return {(topic, partition): self.committed[TP(topic, partition)] for topic, partition in partitions}

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
        self.reads.append((start, end))
        return [
            RawRecord(topic, partition, offset, None, b"k", b"v%d" % offset, [])
            for offset in range(start, end)
            if offset not in self.missing_offsets
        ]

    async def close(self) -> None:
        return None


async def test_records_in_order_from_the_committed_offset_are_handled_and_replays_skipped() -> None:
    guard = SequenceGuard(FakeReader({P0: 5, P1: 0}))
    assert await guard.admit(P0, 3) is None, "below the committed offset: handled by an earlier owner"
    assert [await guard.admit(P0, o) for o in (5, 6, 7)] == [[], [], []]
    assert await guard.admit(P0, 6) is None, "handled in this assignment: a replay"
    assert await guard.admit(P1, 0) == [], "partitions are independent"
    assert guard.replays == 2 and guard.recovered == 0


async def test_skipped_records_are_read_back_before_the_record_after_them() -> None:
    reader = FakeReader({P0: 10}, missing_offsets={12})
    guard = SequenceGuard(reader)
    missing = await guard.admit(P0, 14)
    assert [r.offset for r in missing] == [10, 11, 13], "the gap, minus offsets with no record"
    assert reader.reads == [(10, 14)]
    assert guard.recovered == 3
    assert await guard.admit(P0, 11) is None, "the refetch of a recovered record is a replay"
    assert await guard.admit(P0, 15) == []


async def test_admit_after_hands_the_skipped_records_over_first_and_says_whether_to_handle() -> None:
    guard = SequenceGuard(FakeReader({P0: 10}))
    handled: list[int] = []

    async def handle_missing(record: RawRecord) -> None:
        handled.append(record.offset)

    assert await guard.admit_after(P0, 13, handle_missing) is True
    assert handled == [10, 11, 12], "the gap before the record, in order"
    assert await guard.admit_after(P0, 12, handle_missing) is False, "a replay: only its ack"
    assert await guard.admit_after(P0, 14, handle_missing) is True
    assert handled == [10, 11, 12]


async def test_revocation_restarts_from_the_committed_offset() -> None:
    reader = FakeReader({P0: 10})
    guard = SequenceGuard(reader)
    assert await guard.admit(P0, 10) == []
    guard.forget({P0})
    reader.committed[P0] = 8  # whatever the group holds now
    assert [r.offset for r in await guard.admit(P0, 9)] == [8]


async def test_a_revocation_during_the_lookup_does_not_pin_a_stale_position() -> None:
    reader = FakeReader({P0: 10})
    reader.pause = asyncio.Event()
    guard = SequenceGuard(reader)
    admitting = asyncio.create_task(guard.admit(P0, 12))
    await asyncio.sleep(0)
    guard.forget({P0})
    reader.pause.set()
    assert await admitting == [], "handled (a duplicate at worst), nothing read back"
    reader.pause = None
    reader.committed[P0] = 12
    assert await guard.admit(P0, 12) == [], "the position is looked up again"


async def test_an_assignment_is_looked_up_at_once_and_its_first_records_use_that() -> None:
    reader = FakeReader({P0: 5, P1: 2})
    guard = SequenceGuard(reader)
    guard.prefetch([P0, P1])
    assert [r.offset for r in await guard.admit(P1, 3)] == [2], "read back from the prefetched offset"
    assert await guard.admit(P0, 5) == []
    assert reader.lookups == [[("t", 0), ("t", 1)]], "one lookup for the whole assignment"
    guard.prefetch([P0, P1])
    assert len(reader.lookups) == 1, "partitions with a position are not looked up again"


async def test_a_prefetched_offset_does_not_outlive_a_revocation() -> None:
    reader = FakeReader({P0: 5})
    guard = SequenceGuard(reader)
    guard.prefetch([P0])
    await asyncio.sleep(0)
    guard.forget({P0})
    reader.committed[P0] = 9  # committed by the partition's owner meanwhile
    assert await guard.admit(P0, 9) == [], "looked up again: nothing to read back from 5"
    assert reader.lookups[-1] == [("t", 0)] and reader.reads == []


async def test_a_revocation_while_the_assignment_is_looked_up_pins_nothing() -> None:
    reader = FakeReader({P0: 10})
    reader.pause = asyncio.Event()
    guard = SequenceGuard(reader)
    guard.prefetch([P0])
    admitting = asyncio.create_task(guard.admit(P0, 12))
    await asyncio.sleep(0)
    guard.forget({P0})
    reader.pause.set()
    assert await admitting == [] and guard.position(P0) is None, "the next owner decides"
    assert reader.reads == []


async def test_a_failed_assignment_lookup_falls_back_to_one_lookup_per_partition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = FakeReader({P0: 3, P1: 0})
    reader.failure = RuntimeError("offset of t[1]: Broker: Coordinator load in progress")
    guard = SequenceGuard(reader)
    guard.prefetch([P0, P1])
    assert [r.offset for r in await guard.admit(P0, 4)] == [3]
    assert await guard.admit(P1, 0) == []
    assert reader.lookups == [[("t", 0), ("t", 1)], [("t", 0)], [("t", 1)]]
    assert "Coordinator load in progress" in caplog.text


@pytest.mark.parametrize("offset", [0, 1])
async def test_the_log_start_counts_when_nothing_is_committed(offset: int) -> None:
    guard = SequenceGuard(FakeReader({P0: 0}))
    assert [r.offset for r in await guard.admit(P0, offset)] == list(range(offset))


def answering(answers: list[object], clients: list[object]) -> Callable[[object], object]:
    """A reader call that records the client it is given and answers (or raises) in turn."""

    def call(client: object) -> object:
        clients.append(client)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


def test_the_reader_retries_a_retriable_broker_error_and_gives_up_on_others() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from signal_sync.streams.partition_reader import PartitionReader

    reader = PartitionReader({"bootstrap.servers": "127.0.0.1:1"}, group_id="g", timeout_s=5)
    clients: list[object] = []
    call = answering([KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)), 7], clients)
    assert reader._retrying(call) == 7, "a coordinator still loading is waited for"
    assert clients[0] is clients[1], "a broker's 'not yet' is asked again with the same client"
    fatal = KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))
    with pytest.raises(KafkaException):
        reader._retrying(lambda client: (_ for _ in ()).throw(fatal))
    reader._discard_client()


@pytest.mark.parametrize("code", ["_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "_ALL_BROKERS_DOWN"])
def test_the_reader_asks_again_with_a_new_client_when_its_view_of_the_cluster_failed(code: str) -> None:
    from confluent_kafka import KafkaError, KafkaException

    from signal_sync.streams.partition_reader import PartitionReader

    reader = PartitionReader({"bootstrap.servers": "127.0.0.1:1"}, group_id="g", timeout_s=5)
    stale = KafkaException(KafkaError(getattr(KafkaError, code)))
    clients: list[object] = []
    assert reader._retrying(answering([stale, stale, 3], clients)) == 3
    assert len({id(client) for client in clients}) == 3, "each retry after a stale view uses a new client"
    reader._discard_client()


async def test_tail_reads_what_was_not_handed_out_up_to_the_high_watermark() -> None:
    reader = FakeReader({P0: 10, P1: 4}, missing_offsets={13})
    guard = SequenceGuard(reader)
    assert await guard.admit(P0, 10) == []
    assert [r.offset for r in await guard.tail(P0, 14, limit=100)] == [11, 12]
    assert guard.position(P0) == 14, "an offset without a record (a transaction marker) counts as handled"
    assert await guard.tail(P0, 14, limit=100) == [] and reader.reads == [(11, 14)], "nothing left to read"
    assert await guard.admit(P0, 12) is None, "Faust's late copy is a replay"
    assert guard.position(P1) is None
    tail = await guard.tail(P1, 9, limit=3)
    assert [r.offset for r in tail] == [4, 5, 6], "from the committed offset, capped"
    assert [r.offset for r in await guard.tail(P1, 9, limit=3)] == [7, 8]
    assert guard.recovered == 7


async def test_a_revocation_during_a_tail_read_hands_nothing_out() -> None:
    reader = FakeReader({P0: 10})
    reader.pause = asyncio.Event()
    guard = SequenceGuard(reader)
    reading = asyncio.create_task(guard.tail(P0, 12, limit=100))
    await asyncio.sleep(0)
    guard.forget({P0})
    reader.pause.set()
    assert await reading == [] and guard.position(P0) is None, "the next owner reads them"
