"""Validated events handed from the ingest stage to this process's delivery agents.

An event reaches stage 2 through an internal topic as its original bytes (dead letters and
replays need them) and would be validated again there, once per integration: pydantic was
about 4% of the worker's CPU in stage 2 alone (py-spy, 50k-event benchmark). When stage 1 ran
in the same process (always with one worker, mostly with several) it already holds the
validated event, and events are immutable, so it leaves it here for the integrations it
forwarded the event to; stage 2 takes it by the record's source position and decodes only on
a miss (another worker ingested it, a restart, or more than ``capacity`` events in between).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from signal_sync.streams.records import SignalEvent

Position = tuple[str, int | None, int | None]
"""Source topic, partition and offset of the input record."""

DEFAULT_CAPACITY = 4096


@dataclass(slots=True)
class _Left:
    event: SignalEvent
    takers: int


class DecodedEvents:
    """A bounded map from source position to (event, integrations still to take it)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        # OrderedDict: dropping the oldest of a plain dict that had many entries deleted from its
        # front scans past their slots (measured ~1% of the worker's CPU).
        self._events: OrderedDict[Position, _Left] = OrderedDict()

    def keep(self, position: Position, event: SignalEvent, takers: int) -> None:
        """Leave ``event`` for ``takers`` delivery agents; the oldest entry goes when full."""
        if len(self._events) >= self.capacity:
            self._events.popitem(last=False)
        self._events[position] = _Left(event, takers)

    def take(self, position: Position) -> SignalEvent | None:
        """The event left at ``position``, if still here; the last taker removes it."""
        left = self._events.get(position)
        if left is None:
            return None
        left.takers -= 1
        if left.takers <= 0:
            del self._events[position]
        return left.event

    def __len__(self) -> int:
        return len(self._events)
