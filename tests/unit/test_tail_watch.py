"""The tail watch hands an idle agent the records Faust left at the end of its partitions."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.types import TP

from signal_sync.streams.changelog import output_changelog_table
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.sequence import SequenceGuard
from signal_sync.streams.tail_watch import SLOW_S, TailWatch
from tests.unit.factories import FakeConsumer
from tests.unit.test_changelog_table import RecordingOutputs
from tests.unit.test_sequence_guard import FakeReader

TOPIC = "t"
P0, P1, OTHER = TP(TOPIC, 0), TP(TOPIC, 1), TP("other", 0)


def make_app(highwaters: dict[TP, int | None]) -> SimpleNamespace:
    completed = asyncio.Event()
    completed.set()
    return SimpleNamespace(
        should_stop=False,
        rebalancing=False,
        consumer=FakeConsumer(highwaters),
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
    )


async def test_an_idle_agent_gets_its_partitions_tails_in_offset_order() -> None:
    guard = SequenceGuard(FakeReader({P0: 0, P1: 2, OTHER: 0}))
    app = make_app({P0: 3, P1: 4, OTHER: 9})
    watch = TailWatch(app, guard, TOPIC)
    handed: list[RawRecord] = []
    outputs = RecordingOutputs()
    faust_app = faust.App("tail-watch-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
    table = output_changelog_table(faust_app, outputs, "state", partitions=2, value_type=bytes)  # type: ignore[arg-type]

    async def handle(record: RawRecord) -> None:
        handed.append(record)
        table[f"key-{record.offset}"] = b"{}"  # as a delivery does; Faust alone would raise here

    assert await guard.admit(P0, 0) == []
    seen = await watch.look(handle, None)
    assert handed == [], "the first look only notes where the agent is"
    seen = await watch.look(handle, seen)
    assert [(r.partition, r.offset) for r in handed] == [(0, 1), (0, 2), (1, 2), (1, 3)]
    assert all(r.topic == TOPIC for r in handed), "other topics belong to other agents"
    assert [sent[3] for sent in outputs.sent] == [0, 0, 1, 1], "table writes go to the record's partition"
    handed.clear()
    assert await watch.look(handle, seen) is not None and handed == [], "nothing left to hand out"


async def test_no_tail_is_read_while_the_agent_moves_or_the_app_is_busy() -> None:
    guard = SequenceGuard(FakeReader({P0: 0}))
    app = make_app({P0: 5})
    watch = TailWatch(app, guard, TOPIC)

    async def handle(record: RawRecord) -> None:
        raise AssertionError(f"handed {record.offset} to a busy agent")

    assert await guard.admit(P0, 0) == []
    seen = await watch.look(handle, None)
    assert await guard.admit(P0, 1) == []
    seen = await watch.look(handle, seen)  # the agent moved since the last look
    async with watch.lock:  # the agent is handling a record
        assert await watch.look(handle, seen) is None
    app.should_stop = True  # stopping: the fetcher stopped handing records out on purpose
    assert await watch.look(handle, seen) is None
    app.should_stop = False
    app.rebalancing = True
    assert await watch.look(handle, seen) is None
    app.rebalancing = False
    app.tables.recovery.completed.clear()
    assert await watch.look(handle, seen) is None
    app.consumer.highwaters[P0] = None  # not fetched yet: unknown, so not read
    app.tables.recovery.completed.set()
    assert await watch.look(handle, seen) == {P0: 2}


async def test_records_faust_has_not_handed_out_yet_are_left_to_it_until_the_agent_waited_long() -> None:
    """While a backlog drains, Faust's one fetcher can keep a delivery agent waiting for seconds:
    those records are late, not skipped, and reading them as well would be done twice."""
    guard = SequenceGuard(FakeReader({P0: 0, P1: 0}))
    app = make_app({P0: 3, P1: 3})
    app.consumer._read_offset = {P0: 0, P1: 2}  # P0: only offset 0 handed out so far; P1: all three
    watch = TailWatch(app, guard, TOPIC, idle_s=SLOW_S / 3)
    handed: list[tuple[int, int]] = []

    async def handle(record: RawRecord) -> None:
        handed.append((record.partition, record.offset))

    assert await guard.admit(P0, 0) == [] and await guard.admit(P1, 0) == []
    seen = await watch.look(handle, None)
    seen = await watch.look(handle, seen)
    assert handed == [(1, 1), (1, 2)], "Faust handed P1's records out and the agent never got them"
    for _ in range(2):  # the agent had work (from P1): it has waited less than SLOW_S since
        seen = await watch.look(handle, seen)
        assert handed == [(1, 1), (1, 2)], "P0's records are still Faust's to hand out"
    await watch.look(handle, seen)
    assert handed[2:] == [(0, 1), (0, 2)], "after SLOW_S without progress they are read anyway"
