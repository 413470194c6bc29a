"""Delivery topics whose agent's buffer never stops Faust's one fetch loop.

Faust hands every fetched record to its agents from one loop. A record for an agent whose
buffer is full makes that loop wait until the agent takes one (``ConductorCompiler.build`` in
faust-streaming 0.15.3: ``queue.full()``, then ``await put``), and meanwhile no other agent gets
a record. A delivery agent whose integration is paused (circuit open, a 401) takes nothing for
as long as the outage lasts, so one fetch with more of its records than its buffer has room for
would hold the other integrations' records for that long (docs/design.md, Failures, "One fetch
loop").

Faust's flow control already bounds a buffer without blocking: once a buffer holds 80% of its
``maxsize`` (``FlowControlQueue.pressure_high_size``), the record's partition leaves the set the
consumer fetches (``Consumer.on_buffer_full``) until the buffer drains to 40%. A
``ReadAheadQueue`` keeps that and never reports itself full, so a record already fetched is
queued at once; what lies beyond ``maxsize`` is at most what one fetch returned for the
partition before it was paused (``kafka.consumer_max_fetch_bytes``).

A ``ReadAheadQueue`` counts the events its internal records carry, not the records: a backlog
fills a record with up to ``forward_max_events`` / partitions events, a live stream with one to a
few, and a bound in records sized for full ones paused a live stream's fetching after a few dozen
events. Every pause with fetched records left over stops aiokafka fetching the other partitions
of that broker for up to its 100 ms prefetch backoff, and at 1,000 events/s that kept the delivery
agents seconds behind for good (docs/performance.md, "A read-ahead counted in events").
"""

from __future__ import annotations

from typing import Any

import faust
from mode.utils.queues import ThrowableQueue


def events_carried(item: Any) -> int:
    """How many events a buffered internal record carries (the decoded value's ``events``), and 1
    for anything else: a record with none (an acknowledgement only) still takes a place."""
    value = getattr(item, "value", None)
    events = value.get("events") if isinstance(value, dict) else None
    return max(1, len(events)) if isinstance(events, list) else 1


class ReadAheadQueue(ThrowableQueue):
    """A Faust stream buffer that pauses its partitions at high pressure and never blocks a put;
    its size, which Faust's pressure checks read, is the events its records carry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._events = 0
        super().__init__(*args, **kwargs)

    def full(self) -> bool:
        """Never: a fetched record is always taken (the partition is paused instead)."""
        return False

    def qsize(self) -> int:
        """The events of the records buffered (0 only when no record is)."""
        return self._events

    def clear(self) -> None:
        super().clear()
        self._events = 0

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._events += events_carried(item)

    def _get(self) -> Any:
        item = super()._get()
        self._events -= events_carried(item)
        return item


class ReadAheadTopic(faust.Topic):
    """A Faust topic whose subscribers buffer in a ``ReadAheadQueue`` (its clones, which the
    agents iterate, are of this class too)."""

    @property
    def queue(self) -> ThrowableQueue:
        """The buffer of this channel, made on first use as ``Channel.queue`` makes it."""
        if self._queue is None:
            maxsize = self.maxsize if self.maxsize is not None else self.app.conf.stream_buffer_maxsize
            self._queue = ReadAheadQueue(
                maxsize=maxsize, flow_control=self.app.flow_control, clear_on_resume=True
            )
        return self._queue
