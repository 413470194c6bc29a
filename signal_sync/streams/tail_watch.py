"""Hand an idle agent the records Faust left unhanded at the end of its partitions.

The sequence guard notices records Faust skipped once a later record of the partition
arrives. Records skipped at the end of a partition have no later record to reveal them:
they would wait, uncommitted, until the next rebalance. faust-streaming 0.15.3 skips exactly
those after a restart: when table recovery completes it resumes the stream partitions, the
running fetcher queues their first records for the agents, and only then does
``flow_control.resume()`` clear the agents' queues (``clear_on_resume``). The seek to the
committed offsets in between does nothing for a partition without a committed offset, and
for the others the read offsets of the batch still being iterated drop the refetch. The
chaos suite caught it after a SIGTERM with a hung Mautic (nothing of its internal
partitions committed): the restarted worker was ready and idle with 44 records of those
partitions never handed to the agent, while Faust's position said they were read.

So each agent that reads through Faust runs a watch. When the agent has handled nothing for
``IDLE_S`` and the app is neither stopping, rebalancing nor recovering tables, every assigned
partition of its topic whose high watermark (as of the consumer's last fetch) is above the
guard's next offset, and whose records up to there Faust says it handed out, is read straight
from Kafka and handed to the agent, in order, under the agent's lock. Records Faust has not
handed out yet are usually just late: its one fetcher hands records to all agents in turn, and
a partition whose agent's buffer passed Faust's high-pressure mark keeps its fetched records in
the client until the buffer drains (``streams.read_ahead``), so while a backlog drains a delivery
agent can wait seconds for records already fetched. Those are read only after ``SLOW_S`` without
progress (read after ``IDLE_S``, every record of the delivery topics would be read a second time in
a 100k-event drain). Table writes for records read here go to the record's partition:
Faust takes it from its current event, which such a record lacks. A false alarm costs one read:
Faust's own copies of those records are then replays, which the guard skips, exactly as after a
recovered gap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP

from signal_sync.streams.changelog import writes_to_partition
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.sequence import SequenceGuard

log = logging.getLogger(__name__)

IDLE_S = 2.0
"""How long an agent must have handled nothing before its partitions' tails are checked: far
longer than a fetch takes, so records Faust is about to hand out are not read twice."""

SLOW_S = 30.0
"""How long an agent waits for records Faust fetched but has not handed out before they are read
anyway (a record Faust dropped before handing it out, which it should seek back to)."""

READ_LIMIT = 100
"""Most offsets read per partition and look (an internal record can carry hundreds of events, so
this bounds the memory of one look); a later look reads on."""


class TailWatch:
    """Watches one agent's topic; the agent holds ``lock`` while it admits and queues a record."""

    def __init__(self, app: Any, guard: SequenceGuard, topic: str, idle_s: float = IDLE_S) -> None:
        self.lock = asyncio.Lock()
        self._app = app
        self._guard = guard
        self._topic = topic
        self._idle_s = idle_s
        self._quiet_looks = 0

    async def run(self, handle: Callable[[RawRecord], Awaitable[None]]) -> None:
        """Forever: look every ``idle_s``; records found go to ``handle`` one by one, in order."""
        last: dict[TP, int | None] | None = None
        while True:
            await asyncio.sleep(self._idle_s)
            try:
                last = await self.look(handle, last)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next look tries again; the records stay uncommitted meanwhile
                log.exception("checking %s for records not handed to its agent failed", self._topic)

    async def look(
        self, handle: Callable[[RawRecord], Awaitable[None]], last: dict[TP, int | None] | None
    ) -> dict[TP, int | None] | None:
        """One look. ``last`` is what the previous look saw; returns what this one saw (None: the
        app was busy). Tails are read only if the agent's positions did not move in between."""
        app = self._app
        if (
            self.lock.locked()
            or app.should_stop  # stopping: the fetcher no longer hands records out, by design
            or app.rebalancing
            or not app.tables.recovery.completed.is_set()
        ):
            return None
        consumer = app.consumer
        tps = sorted(tp for tp in consumer.assignment() if tp.topic == self._topic)
        positions = {tp: self._guard.position(tp) for tp in tps}
        if positions != last:
            self._quiet_looks = 0
            return positions  # the agent handled something since (or this is the first look)
        self._quiet_looks += 1
        patient = self._quiet_looks * self._idle_s >= SLOW_S
        async with self.lock:
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or not (patient or handed_out(consumer, tp, positions[tp])):
                    continue
                for record in await self._guard.tail(tp, highwater, READ_LIMIT):
                    self._quiet_looks = 0  # the agent has work now
                    with writes_to_partition(record.partition):  # no Faust event to take it from
                        await handle(record)
        return {tp: self._guard.position(tp) for tp in tps}


def handed_out(consumer: Any, tp: TP, position: int | None) -> bool:
    """Whether Faust's fetcher says it handed the agent the record at ``position`` (or, before the
    partition's first record, anything). faust-streaming 0.15.3 keeps the offset of the last record
    it queued for the agents in ``Consumer._read_offset``, and the committed offset after a seek."""
    read = consumer._read_offset.get(tp)
    return read is not None and (position is None or read >= position)
