"""Per-partition bookkeeping of what this process handled since it was assigned a partition.

When a Faust worker starts or rebalances, a fetch issued before recovery's "seek to
committed offsets" hands the agent records that are fetched again after the seek (a
replay), and records buffered around the seek can be dropped so that the agent sees
offset 99 right after 89 (a gap; the chaos suite caught both in faust-streaming 0.15.3).
The guard skips replays (a record is skipped only if this very process already handled
it, so at-least-once holds) and reports a gap once, so the agent can seek back and read
the missing records; a gap that persists after that seek is real (transaction markers,
compaction) and accepted. Everything about a partition is forgotten when it is revoked,
because its next owner decides from the committed offsets.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable

from faust.types import TP

log = logging.getLogger(__name__)


class Seen(enum.Enum):
    NEW = "new"
    REPLAY = "replay"
    GAP = "gap"


class ReplayGuard:
    """Per-partition high-water mark of handled offsets, and gaps already sought back once."""

    def __init__(self) -> None:
        self._handled: dict[TP, int] = {}
        self._sought: dict[TP, int] = {}
        self.skipped = 0
        self.gaps = 0

    def check(self, tp: TP, offset: int) -> Seen:
        """Classify a record; NEW records are recorded as handled."""
        handled = self._handled.get(tp)
        if handled is not None and offset <= handled:
            self.skipped += 1
            return Seen.REPLAY
        if handled is not None and offset > handled + 1 and self._sought.get(tp) != handled + 1:
            self._sought[tp] = handled + 1
            self.gaps += 1
            log.warning(
                "offsets %s..%s of %s were not delivered to the agent; reading them again",
                handled + 1,
                offset - 1,
                tp,
            )
            return Seen.GAP
        self._handled[tp] = offset
        return Seen.NEW

    def resume_offset(self, tp: TP) -> int:
        """Where to seek back to after a GAP."""
        return self._handled[tp] + 1

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions left this worker: their next owner decides from committed offsets."""
        for tp in tps:
            self._handled.pop(tp, None)
            self._sought.pop(tp, None)
