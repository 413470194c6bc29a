"""The tables' RocksDB store: Faust's, with memory bounded per process and writes on the right partition.

Faust's ``rocksdb://`` store opens one RocksDB database per table partition, each with its own
2 GiB block cache and three 64 MiB write buffers: with 12 partitions and two tables that is a
memory ceiling in the gigabytes, reached as the tables grow. ``RocksMemory`` is one budget for the
whole worker instead: every database shares one LRU block cache (which also holds their index and
filter blocks, so those count against it) and one write buffer manager that caps all memtables
together and flushes the largest when the cap is near. The worker's memory then no longer grows
with the number of contacts in its tables; the tables' size is on disk (``worker.state_dir``).

``PartitionedRocksStore`` keeps Faust's layout on disk (a database per partition, the changelog
offset it holds data up to under Faust's key, so a restart over a kept ``state_dir`` reads only
the changelog written since) and changes where a value goes: to the partition its changelog
record goes to (``streams.changelog.record_partition``, else Faust's current event), the rule
``OutputChangelogTable.partition_for_key`` follows. Faust's own store asserts a current event
and would put a write made by the tail watch (which has none) nowhere. A read looks in that
partition first and then in the other partitions this worker holds, as the in-memory store (one
dict for every partition) answers: a delivery batch plans contacts of several partitions under
one current event, and an identity key (a ``user_id``) can be learned on any source partition.
The bloom filters make the other partitions' misses cheap.
"""

from __future__ import annotations

import gc
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event

from signal_sync.errors import ConfigError
from signal_sync.streams.changelog import record_partition

MIB = 1024 * 1024
BLOOM_BITS_PER_KEY = 10
"""About 1% false positives: a key absent from a partition is rarely read from its files."""


@dataclass(frozen=True)
class RocksMemory:
    """One memory budget for every RocksDB database of a worker (``worker.rocksdb``)."""

    block_cache_bytes: int
    write_buffer_bytes: int
    max_open_files: int
    _cache: Any = field(init=False, repr=False, compare=False)
    _write_buffers: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", rocksdict.Cache(self.block_cache_bytes))
        # allow_stall: writers wait for a flush rather than let memtables pass the cap.
        manager = rocksdict.WriteBufferManager(self.write_buffer_bytes, True)
        object.__setattr__(self, "_write_buffers", manager)

    @property
    def memtable_bytes(self) -> int:
        """One memtable's size: a quarter of the budget, so several partitions fill it together."""
        return max(MIB, self.write_buffer_bytes // 4)

    def options(self) -> rocksdict.Options:
        """Options for one database, sharing this budget's cache and write buffer manager."""
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.memtable_bytes)
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(self._write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, True)
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options

    def cache_usage_bytes(self) -> int:
        """Bytes the shared block cache holds now (blocks, indexes, filters)."""
        return int(self._cache.get_usage())

    def write_buffer_usage_bytes(self) -> int:
        """Bytes all memtables hold now."""
        return int(self._write_buffers.get_usage())


class BoundedRocksDBOptions(faust_rocksdb.RocksDBOptions):
    """Faust's options object, opening every database with a ``RocksMemory``'s options."""

    def __init__(self, memory: RocksMemory, **kwargs: Any) -> None:
        super().__init__(use_rocksdict=True, **kwargs)
        self.memory = memory

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        db = rocksdict.Rdict(
            str(path), options=self.memory.options(), access_type=rocksdict.AccessType.read_write()
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db

    def as_options(self) -> rocksdict.Options:
        return self.memory.options()


class PartitionedRocksStore(faust_rocksdb.Store):
    """Faust's RocksDB store within a ``RocksMemory`` budget, each write on its changelog's partition."""

    def __init__(self, url: Any, app: Any, table: Any, *, memory: RocksMemory, **kwargs: Any) -> None:
        super().__init__(url, app, table, driver="rocksdict", **kwargs)
        self.rocksdb_options = BoundedRocksDBOptions(memory)

    @staticmethod
    def _partition() -> int | None:
        """The partition a table write made now goes to: the changelog table's rule."""
        partition = record_partition()
        if partition is not None:
            return partition
        event = current_event()
        return None if event is None else event.message.partition

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = self._partition()
        if partition is None:
            raise ValueError(f"table {self.table_name}: a write needs the partition of the record it is for")
        self._db_for_partition(partition).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        partition = self._partition()
        if partition is not None:
            value = self._db_for_partition(partition).get(key)
            if value is not None:
                return value
        for other, db in list(self._dbs.items()):
            if other != partition and db.key_may_exist(key):
                value = db.get(key)
                if value is not None:
                    return value
        return None

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        """``Mapping.get`` without raising and catching a KeyError for every absent key."""
        value = self._get(self._encode_key(key))
        return default if value is None else self._decode_value(value)

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        """Close the databases of partitions taken away, so a later assignment can open them again."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    db.close()

    async def stop(self) -> None:
        """Close every database (its memtables stay in its write-ahead log) and release the files."""
        dbs = list(self._dbs.values())
        self._dbs.clear()
        for db in dbs:
            db.close()
        gc.collect()


def rocks_memory(block_cache_mb: int, write_buffer_mb: int, max_open_files: int) -> RocksMemory:
    """The worker's budget from ``worker.rocksdb`` (sizes in MiB)."""
    return RocksMemory(block_cache_mb * MIB, write_buffer_mb * MIB, max_open_files)


def prepare_state_dir(path: Path) -> None:
    """Create ``worker.state_dir`` if missing and check that files can be written in it, so a bad
    folder fails the start naming the field rather than when the first partition's table opens."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"worker.state_dir: cannot keep the tables' state in {str(path)!r}: {exc.strerror or exc}"
        ) from None
