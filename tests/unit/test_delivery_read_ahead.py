"""What a delivery agent reads ahead: bounded in events, although its internal records each carry many,
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
def test_the_read_ahead_holds_a_few_in_flight_windows_of_full_records(
    max_in_flight: int, forward_max_events: int, partitions: int
) -> None:
    records = delivery_read_ahead(max_in_flight, forward_max_events, partitions)
    per_record = max(1, forward_max_events // partitions)
    assert records >= MIN_READ_AHEAD_RECORDS
    # Full records fill the in-flight window several times over, and not much more than that.
    assert records * per_record >= READ_AHEAD_IN_FLIGHTS * max_in_flight
    if records > MIN_READ_AHEAD_RECORDS:
        assert (records - 1) * per_record < READ_AHEAD_IN_FLIGHTS * max_in_flight


def test_the_delivery_topics_buffer_a_bounded_number_of_events_by_default(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    config = {"kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "integrations": [MAUTIC_RAW, MAILGUN_RAW]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(path, environ={})
    partitions = 12
    runtime = create_runtime(settings, partitions=partitions)
    delivery = settings.delivery
    events_per_record = delivery.forward_max_events // partitions
    assert runtime.delivery_topics.keys() == {MAUTIC_RAW["id"], MAILGUN_RAW["id"]}
    for topic in runtime.delivery_topics.values():
        assert isinstance(topic, ReadAheadTopic)
        assert isinstance(topic.queue, ReadAheadQueue)
        assert topic.maxsize is not None
        # Well below the source topic's buffer (one event per record) and a few windows of work.
        assert topic.maxsize < settings.worker.stream_buffer_maxsize
        assert topic.maxsize * events_per_record <= (READ_AHEAD_IN_FLIGHTS + 1) * delivery.max_in_flight
    assert runtime.source.maxsize is None  # the source topic keeps worker.stream_buffer_maxsize
