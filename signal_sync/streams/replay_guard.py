"""Skip records this process has already handled since it was assigned their partition.

When a Faust worker starts or rebalances, a fetch issued before recovery's "seek to
committed offsets" can hand the agent records that are then fetched again after the
seek, so the same record would be delivered twice in a clean start. Remembering the
highest offset handled per partition (forgotten when the partition is revoked, because
another worker may then process it) drops those replays without weakening
at-least-once: a record is skipped only if this very process already handled it.
"""

from __future__ import annotations

from collections.abc import Iterable

from faust.types import TP


class ReplayGuard:
    """Per-partition high-water mark of handled offsets."""

    def __init__(self) -> None:
        self._handled: dict[TP, int] = {}
        self.skipped = 0

    def is_replay(self, tp: TP, offset: int) -> bool:
        """True if ``offset`` was already handled in this assignment; else record it."""
        if offset <= self._handled.get(tp, -1):
            self.skipped += 1
            return True
        self._handled[tp] = offset
        return False

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions left this worker: their next owner decides from committed offsets."""
        for tp in tps:
            self._handled.pop(tp, None)
