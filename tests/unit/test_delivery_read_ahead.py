"""What a delivery agent reads ahead: bounded in events, however many its internal records carry,
and buffered so that a paused integration never holds Faust's one fetch loop (``streams.read_ahead``)."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.config import load_settings
from signal_sync.runtime import create_runtime
from signal_sync.streams.internal import MIN_READ_AHEAD_RECORDS, READ_AHEAD_IN_FLIGHTS, delivery_read_ahead
from signal_sync.streams.read_ahead import ReadAheadQueue, ReadAheadTopic
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW


@given(
    max_in_flight=st.integers(1, 100_000),
    forward_max_events=st.integers(1, 100_000),
    partitions=st.integers(1, 512),
)
def test_the_read_ahead_holds_a_few_in_flight_windows_of_events(
    max_in_flight: int, forward_max_events: int, partitions: int
) -> None:
    events = delivery_read_ahead(max_in_flight, forward_max_events, partitions)
    per_record = max(1, forward_max_events // partitions)
    # The in-flight window several times over, and never fewer than a few full records' events.
    assert events >= READ_AHEAD_IN_FLIGHTS * max_in_flight
    assert events >= MIN_READ_AHEAD_RECORDS * per_record
    assert events in (READ_AHEAD_IN_FLIGHTS * max_in_flight, MIN_READ_AHEAD_RECORDS * per_record)


def test_the_delivery_topics_buffer_a_bounded_number_of_events_by_default(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    config = {"kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "integrations": [MAUTIC_RAW, MAILGUN_RAW]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(path, environ={})
    partitions = 12
    runtime = create_runtime(settings, partitions=partitions)
    delivery = settings.delivery
    assert runtime.delivery_topics.keys() == {MAUTIC_RAW["id"], MAILGUN_RAW["id"]}
    for topic in runtime.delivery_topics.values():
        assert isinstance(topic, ReadAheadTopic)
        assert isinstance(topic.queue, ReadAheadQueue)
        # Counted in events: a few in-flight windows of work, whatever the records carry.
        assert topic.maxsize == READ_AHEAD_IN_FLIGHTS * delivery.max_in_flight
    assert runtime.source.maxsize is None  # the source topic keeps worker.stream_buffer_maxsize
