"""One deliberate change to faust-streaming 0.15.3's consumer: never commit past unread offsets.

When Faust's fetch loop sees offsets jump (say 85 then 98), it records 86..97 as a "gap"
and later commits past it, treating those offsets as if they did not exist. That is
right for transaction markers, but around a rebalance's seek the records 86..97 do exist
and were simply not handed to the agent (our chaos suite reproduced it): committing past
them loses them for good. We turn gap recording off, so the commit point only moves over
offsets the agents acknowledged: records skipped that way are read again after the next
restart or rebalance (duplicates and late, out-of-order deliveries; never loss).
The cost: a source topic written by a *transactional* producer would hold its commit point
at the first transaction marker (duplicates on restart, never loss) — see docs/design.md.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer
from faust.types import TP


async def _never_skip(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
    """Replacement for ``Consumer._add_gap``: unread offsets are never treated as done."""
    return None


def never_commit_past_unread_offsets() -> None:
    """Install the change (idempotent)."""
    Consumer._add_gap = _never_skip  # type: ignore[method-assign]
