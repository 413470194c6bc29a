"""When the ingest stage counts as behind (it then forwards fuller internal records)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from signal_sync.agents.ingest import in_backlog

SOURCE = TP("signal.events", 2)


class Highwaters:
    """Stands in for Faust's consumer: the high-water mark per partition, as of the last fetch."""

    def __init__(self, marks: dict[TP, int | None]) -> None:
        self.marks = marks

    def assignment(self) -> set[TP]:
        return set(self.marks)

    def highwater(self, tp: TP) -> int | None:
        assert tp in self.marks, "aiokafka asserts the partition is assigned"
        return self.marks[tp]


def message(offset: int) -> SimpleNamespace:
    return SimpleNamespace(tp=SOURCE, offset=offset)


def test_behind_when_more_than_the_threshold_waits_in_the_partition():
    consumer = Highwaters({SOURCE: 10_000})
    assert in_backlog(consumer, message(100), threshold=500)
    assert not in_backlog(consumer, message(9_600), threshold=500)


def test_not_behind_before_the_first_record_or_without_a_high_water_mark():
    assert not in_backlog(Highwaters({SOURCE: 10_000}), None, threshold=500)
    assert not in_backlog(Highwaters({SOURCE: None}), message(0), threshold=500)


def test_not_behind_once_the_partition_was_revoked():
    assert not in_backlog(Highwaters({}), message(100), threshold=500)
