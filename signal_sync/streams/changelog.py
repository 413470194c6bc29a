"""Faust tables whose changelog records go through the worker's librdkafka producer.

Faust writes a changelog record for every table write through its own producer (aiokafka:
about 66 µs of the worker's one CPU per record, see ``streams/output_producer.py``). The
identities table takes one write per identity key of every event that teaches something, the
destination-state table one per changed contact: together more records than events. Sending them
through the ``OutputProducer`` instead keeps everything else as Faust does it: the same topic,
partition (the source event's), key and value bytes, so recovery, standbys and older
changelogs are unchanged. At-least-once still holds: Faust's flush before every commit waits
for this producer too (``flush_with_faust``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import Message
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from faust.types.stores import StoreT

from signal_sync.streams.output_producer import OutputProducer
from signal_sync.streams.table_codec import TableCodec

if TYPE_CHECKING:
    from signal_sync.streams.rocksdb_store import RocksMemory


@dataclass(frozen=True, slots=True)
class QueuedChangelog:
    """What a Faust table reads back from ``send_changelog``: ``result.message.partition``."""

    partition: int

    @property
    def message(self) -> QueuedChangelog:
        return self


_record_partition: ContextVar[int | None] = ContextVar("signal_sync_record_partition", default=None)


@contextlib.contextmanager
def writes_to_partition(partition: int) -> Iterator[None]:
    """Table writes made inside go to ``partition``: for a record Faust never handed out (read back
    by the tail watch), which has no Faust event to take the partition from. Tasks started inside
    inherit it, as they inherit Faust's current event."""
    token = _record_partition.set(partition)
    try:
        yield
    finally:
        _record_partition.reset(token)


def record_partition() -> int | None:
    """The partition ``writes_to_partition`` set for the table writes made now, if any."""
    return _record_partition.get()


class OutputChangelogTable(faust.Table):
    """A ``faust.Table`` that hands its changelog records to an ``OutputProducer``; with
    ``rocksdb://`` its store is ``PartitionedRocksStore`` within the worker's ``RocksMemory``."""

    def __init__(
        self,
        app: faust.App,
        *,
        outputs: OutputProducer,
        rocks: RocksMemory | None = None,
        tombstones_kept_ms: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.rocks = rocks
        self.tombstones_kept_ms = tombstones_kept_ms or {}
        """``delete.retention.ms`` by changelog topic, as read at start (absent: unknown, so nothing
        the store keeps on disk for it is trusted)."""
        super().__init__(app, **kwargs)
        self.outputs = outputs
        topic = self.changelog_topic
        self.codec = TableCodec(
            app, topic.key_type, topic.key_serializer, topic.value_type, topic.value_serializer
        )

    def _new_store_by_url(self, url: Any) -> StoreT:
        if self.rocks is None or str(url).partition(":")[0] != "rocksdb":
            return super()._new_store_by_url(url)
        from signal_sync.streams.rocksdb_store import PartitionedRocksStore  # imports this module

        changelog = self.changelog_topic.get_topic_name()
        return PartitionedRocksStore(
            url,
            self.app,
            self,
            memory=self.rocks,
            tombstones_kept_ms=self.tombstones_kept_ms.get(changelog, 0),  # unknown: trust nothing kept
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    def partition_for_key(self, key: Any) -> int | None:
        """The partition of the record being handled: Faust takes it from its current event, which
        a record read back by the tail watch does not have (``writes_to_partition``)."""
        partition = _record_partition.get()
        return partition if partition is not None else super().partition_for_key(key)

    def send_changelog(  # type: ignore[override]
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> QueuedChangelog:
        """Same record as Faust's, other producer. The partition is the current event's
        (``use_partitioner`` is off), so it is known before the record is sent."""
        if partition is None:
            raise ValueError(f"table {self.name}: changelog writes need the source event's partition")
        topic = self.changelog_topic
        if key_serializer is None and value_serializer is None:  # the table's own: Faust's bytes, faster
            key_bytes, value_bytes = self.codec.dumps_key(key), self.codec.dumps_value(value)
        else:
            key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
            value_bytes, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        # What Faust's own callback does: a RocksDB store keeps the offset it holds data up to
        # (recovery starts there). The memory store keeps none: no callback per record for it.
        persist = None if isinstance(self.data, MemoryStore) else self._persist_offset
        self.outputs.send_soon(topic.get_topic_name(), key_bytes, value_bytes, partition, persist)
        return QueuedChangelog(partition)

    def _persist_offset(self, message: Message) -> None:
        self.data.set_persisted_offset(TP(message.topic(), message.partition()), message.offset())


def output_changelog_table(
    app: faust.App,
    outputs: OutputProducer,
    name: str,
    rocks: RocksMemory | None = None,
    tombstones_kept_ms: Mapping[str, int] | None = None,
    **kwargs: Any,
) -> faust.Table:
    """Declare a table as ``app.Table(name, **kwargs)`` would, with its changelog through ``outputs``
    (and, with ``rocksdb://``, its store within ``rocks``, trusting a kept partition by its
    changelog's ``delete.retention.ms`` in ``tombstones_kept_ms``)."""
    table = OutputChangelogTable(
        app,
        outputs=outputs,
        rocks=rocks,
        tombstones_kept_ms=tombstones_kept_ms,
        name=name,
        beacon=app.tables.beacon,
        **kwargs,
    )
    return app.tables.add(table)
