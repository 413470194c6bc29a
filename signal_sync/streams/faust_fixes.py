"""Two deliberate changes to faust-streaming 0.15.3's consumer.

**Never commit past unread offsets.** When Faust's fetch loop sees offsets jump (say 85 then
98), it records 86..97 as a "gap" and later commits past it, treating those offsets as if they
did not exist. That is right for transaction markers, but around a rebalance's seek the records
86..97 do exist and were simply not handed to the agent (our chaos suite reproduced it):
committing past them loses them for good. We turn gap recording off, so the commit point only
moves over offsets the agents acknowledged: records skipped that way are read again after the
next restart or rebalance (duplicates and late, out-of-order deliveries; never loss). The cost:
a source topic written by a *transactional* producer would hold its commit point at the first
transaction marker (duplicates on restart, never loss) — see docs/design.md.

**Fetch settings.** Faust builds its aiokafka consumer with Kafka's ``fetch.min.bytes`` of 1 (and
a fixed ``fetch.max.wait.ms``), so the broker answers each fetch as soon as one record arrives. The
worker reads some 36 partitions; at a few hundred events per second every produced batch then
costs a fetch round trip through aiokafka's thread and Faust's fetch loop, about 40% of the
worker's CPU at 150 events/s (measured: docs/performance-history.md, fifth release).
``fetch_with`` sets both for one app.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP


async def _never_skip(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
    """Replacement for ``Consumer._add_gap``: unread offsets are never treated as done."""
    return None


def never_commit_past_unread_offsets() -> None:
    """Install the change (idempotent)."""
    Consumer._add_gap = _never_skip  # type: ignore[method-assign]


_fetch_settings: WeakKeyDictionary[faust.App, tuple[int, int]] = WeakKeyDictionary()
_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_with_fetch_settings(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    """Faust's consumer, with the app's fetch settings where ``fetch_with`` gave some."""
    consumer = _create_worker_consumer(self, transport)
    settings = _fetch_settings.get(self.app)
    if settings is not None:
        if not hasattr(consumer, "_fetch_min_bytes") or not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("this aiokafka version keeps its fetch settings elsewhere: update faust_fixes")
        # AIOKafkaConsumer hands these to its fetcher in start(), which has not run yet.
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = settings
    return consumer


def fetch_with(app: faust.App, min_bytes: int, max_wait_ms: int) -> None:
    """Make ``app``'s consumer fetch with these ``fetch.min.bytes`` and ``fetch.max.wait.ms``."""
    _fetch_settings[app] = (min_bytes, max_wait_ms)
    AIOKafkaConsumerThread._create_worker_consumer = _create_with_fetch_settings  # type: ignore[method-assign]
