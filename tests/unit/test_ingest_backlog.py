"""When the ingest stage counts as behind (it then forwards fuller internal records)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from signal_sync.agents.ingest import in_backlog
from tests.unit.factories import FakeConsumer

SOURCE = TP("signal.events", 2)


def message(offset: int) -> SimpleNamespace:
    return SimpleNamespace(tp=SOURCE, offset=offset)


def test_behind_when_more_than_the_threshold_waits_in_the_partition():
    consumer = FakeConsumer({SOURCE: 10_000})
    assert in_backlog(consumer, message(100), threshold=500)
    assert not in_backlog(consumer, message(9_600), threshold=500)


def test_not_behind_before_the_first_record_or_without_a_high_water_mark():
    assert not in_backlog(FakeConsumer({SOURCE: 10_000}), None, threshold=500)
    assert not in_backlog(FakeConsumer({SOURCE: None}), message(0), threshold=500)


def test_not_behind_once_the_partition_was_revoked():
    assert not in_backlog(FakeConsumer({}), message(100), threshold=500)
