"""Table changelog records through the OutputProducer: the same record Faust would have written."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from signal_sync.streams.changelog import output_changelog_table, writes_to_partition


class RecordingOutputs:
    """Stands in for the OutputProducer: records what ``send_soon`` was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.callbacks: list[Any] = []

    def send_soon(self, topic: str, key: Any, value: Any, partition: int = -1, callback: Any = None) -> None:
        self.sent.append((topic, key, value, partition))
        self.callbacks.append(callback)


@pytest.fixture
def table_and_outputs() -> tuple[faust.Table, RecordingOutputs]:
    app = faust.App("changelog-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
    outputs = RecordingOutputs()
    table = output_changelog_table(app, outputs, "identities", partitions=6, value_type=bytes)  # type: ignore[arg-type]
    return table, outputs


def test_a_write_is_faust_s_changelog_record_on_the_events_partition(table_and_outputs):
    table, outputs = table_and_outputs
    queued = table.send_changelog(4, "anon-1", b'{"email":"a@example.com"}')
    # Faust's table serializes keys as JSON and these values raw; it reads the partition back.
    topic = "changelog-unit-identities-changelog"
    assert outputs.sent == [(topic, b'"anon-1"', b'{"email":"a@example.com"}', 4)]
    assert queued.message.partition == 4


def test_a_delete_is_a_tombstone(table_and_outputs):
    table, outputs = table_and_outputs
    table.send_changelog(2, "anon-1", None, value_serializer="raw")
    assert outputs.sent == [("changelog-unit-identities-changelog", b'"anon-1"', None, 2)]


def test_a_write_without_the_events_partition_is_refused(table_and_outputs):
    table, outputs = table_and_outputs
    with pytest.raises(ValueError, match="identities"):
        table.send_changelog(None, "anon-1", b"{}")
    assert outputs.sent == []


def test_the_memory_store_gets_no_delivery_callback_per_record(table_and_outputs):
    table, outputs = table_and_outputs  # memory:// (the default): it keeps no persisted offsets
    table.send_changelog(1, "anon-1", b"{}")
    assert outputs.callbacks == [None]


async def test_a_write_outside_stream_iteration_goes_to_the_partition_of_the_record_being_handled(
    table_and_outputs,
):
    table, outputs = table_and_outputs
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table["anon-1"] = b"{}"  # Faust's rule: no current event, no partition

    async def handle() -> None:
        table["anon-2"] = b"{}"

    with writes_to_partition(5):
        task = asyncio.create_task(handle())  # a delivery task started while handling the record
    await task
    assert outputs.sent == [("changelog-unit-identities-changelog", b'"anon-2"', b"{}", 5)]
