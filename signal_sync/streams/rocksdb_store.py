"""The tables' RocksDB store: one database per table, memory bounded per process, writes on the
right partition.

Faust's ``rocksdb://`` store opens one RocksDB database per table partition, each with its own
2 GiB block cache and three 64 MiB write buffers: with 12 partitions and two tables that is a
memory ceiling in the gigabytes, reached as the tables grow. ``RocksMemory`` is one budget for the
whole worker instead: every database shares one LRU block cache (which also holds their index and
filter blocks, so those count against it) and one write buffer manager that caps all memtables
together and flushes the largest when the cap is near. The worker's memory then no longer grows
with the number of contacts in its tables; the tables' size is on disk (``worker.state_dir``).

``PartitionedRocksStore`` keeps a table in one database, ``{tabledir}/{table}.db``, for all of
its partitions: one key space, as the in-memory store keeps one dict, so a read is one lookup
whichever partition stored the key. A delivery batch plans contacts of several partitions under
one current event, and an identity key (a ``user_id``) can be learned on any source partition: with
a database per partition a key found nowhere cost a lookup in every partition the worker holds
(about 27 per event with 12 partitions). Each stored value starts with two bytes naming the
partition it was stored for, and a read returns only values of partitions the worker holds
(assigned, recovering, or written to): a partition taken away leaves its values on disk, unread,
as Faust leaves its database. A key written for two partitions holds the last write (the in-memory
store's rule; a replay after a crash applies each partition's records from its own persisted
offset, in the order Faust recovers them).

A value goes to the partition its changelog record goes to (``streams.changelog.record_partition``,
else Faust's current event), the rule ``OutputChangelogTable.partition_for_key`` follows; Faust's own
store asserts a current event and would put a write made by the tail watch (which has none)
nowhere. Each partition's persisted offset (the changelog offset the database holds its data up
to) is a key of its own, written once its changelog record is acknowledged, its value having been
stored before the record was sent; recovery writes a batch's values and offsets in one atomic
write. A restart over a kept ``state_dir`` then reads only the changelog written since.

Writes skip RocksDB's write-ahead log, as Kafka Streams' RocksDB stores do: the changelog topic is
what the tables are recovered from, and a put that also appends to a log file cost about 4% of a
drain's CPU (docs/performance.md). A crash loses the writes still in the memtables; what survives
is the database as of its last flush, data, persisted offsets and held times together (they are one
database, flushed as one), so an offset still never leads the data it covers, and recovery reads the
changelog on from it. Closing flushes the memtables, and so does every held-time refresh
(``HELD_REFRESH_S``), so a crash of an idle worker does not go back further than that.

A partition's values on disk are only as complete as the changelog that brought them up to date: a
partition held by another worker meanwhile gets its changes from the records written since the
persisted offset, and a deletion among them (an erasure's tombstone) is in the changelog only until
the broker's compaction removes it, ``delete.retention.ms`` after compaction reached it (one day by
Kafka's default). So each partition also keeps the wall-clock time it was last held with its
recovery complete (refreshed with the offsets, every ``HELD_REFRESH_S``, at a revoke and at a stop):
every record written after that time is after the persisted offset and is still in the changelog for
at least ``delete.retention.ms``. A partition last held more than half that long ago (or whose held
time is over a minute ahead of this host's clock, or whose recovery never completed; a standby copy
counts once it is being read) is forgotten: its values and offset are deleted, so an erased
contact's data cannot come back from a kept state folder, and recovery reads its whole changelog if
the worker takes it up. That happens when the database opens (for every such partition, in one pass
over the table), after each rebalance (partitions this worker does not hold) and when a partition is
taken up. A changelog whose ``delete.retention.ms`` could not be read at start trusts nothing kept.

A state folder in Faust's layout (``{table}-{partition}.db``, written by an older worker) holds no
held times, so its partitions could not be trusted: those databases are removed at the first start
(``remove_partition_dbs``) and the partitions' changelogs are read. One worker process uses a
``state_dir`` at a time (RocksDB locks the database).
"""

from __future__ import annotations

import gc
import glob
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic, time
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event
from faust.types import TP
from mode import Service

from signal_sync.errors import ConfigError
from signal_sync.streams.changelog import record_partition
from signal_sync.streams.table_codec import TableCodec

log = logging.getLogger(__name__)

MIB = 1024 * 1024
TAG_BYTES = 2
"""A stored value's first bytes: the partition it was stored for (big-endian)."""
OFFSET_KEY = faust_rocksdb.Store.offset_key
"""Faust's key of a database's persisted offset; a partition's is this key and its number."""
HELD_KEY = OFFSET_KEY + b"held:"
"""A partition's key ``HELD_KEY`` and its number holds when (ms since the epoch) the worker last
held it with its recovery complete."""
STORED_KEY = OFFSET_KEY + b"stored:"
"""A partition's key ``STORED_KEY`` and its number exists once a worker stored a value for it outside
recovery, written before that value: a worker that stops before the partition's first persisted offset
is written (``OFFSET_WRITE_INTERVAL_S``) leaves values without an offset, and this key still lists the
partition among those kept, so it is forgotten like any other it cannot trust."""
CLOCK_SKEW_MS = 60_000
"""How far ahead of this host's clock a held time may be and still be trusted (a volume moved to a
host whose clock is behind); further ahead, the clock that wrote it cannot be relied on."""
FORGET_BATCH = 10_000
"""Deletes per write while a partition is forgotten: the batch's memory stays small with millions
of keys."""
OFFSET_WRITE_INTERVAL_S = 1.0
"""Most seconds a persisted offset waits to be written: a crash replays at most this much more of
the changelog, and a record's own write of its offset (a RocksDB put per record) is saved."""
HELD_REFRESH_S = 60.0
"""How often the held times of the partitions held now are written even without writes of their
own, and the memtables flushed: a partition that saw no change for hours and whose worker was
killed (no stop to write them) is still trusted at the next start."""
BLOOM_BITS_PER_KEY = 10
"""About 1% false positives: a key absent from a table file is rarely read from it."""
METADATA_BLOCK_BYTES = 4096
"""Size of one partition of a table file's index and filter: what a read loads into the cache."""


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
        # Index and bloom filters partitioned, in the shared cache with only their top level pinned:
        # a table file's whole index and filter in the cache (one block each) are megabytes once a
        # table holds a million keys, and a 16 MB cache evicting and re-reading them made a read
        # cost 100-400 µs instead of 2-7 µs (1M keys, one database).
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(METADATA_BLOCK_BYTES)
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options

    def cache_usage_bytes(self) -> int:
        """Bytes the shared block cache holds now (blocks, indexes, filters)."""
        return int(self._cache.get_usage())

    def write_buffer_usage_bytes(self) -> int:
        """Bytes all memtables hold now."""
        return int(self._write_buffers.get_usage())


def unlogged_writes() -> rocksdict.WriteOptions:
    """Write options without the write-ahead log (the changelog topic recovers the tables)."""
    options = rocksdict.WriteOptions()
    options.disable_wal = True
    return options


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
        db.set_write_options(unlogged_writes())
        return db

    def as_options(self) -> rocksdict.Options:
        return self.memory.options()


class PartitionedRocksStore(faust_rocksdb.Store):
    """Faust's RocksDB store as one database per table within a ``RocksMemory`` budget, each value
    tagged with its changelog's partition (see the module's docstring)."""

    def __init__(
        self,
        url: Any,
        app: Any,
        table: Any,
        *,
        memory: RocksMemory,
        tombstones_kept_ms: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, app, table, driver="rocksdict", **kwargs)
        self.tombstones_kept_ms = tombstones_kept_ms
        """The changelog's ``delete.retention.ms``: a partition held within half of it is trusted
        (0: unknown, nothing kept is trusted)."""
        self.rocksdb_options = BoundedRocksDBOptions(memory)
        self._db: rocksdict.Rdict | None = None
        self.generation = 0
        """Counts the changes to what a read can return (writes, deletes, recovered batches, partitions
        assigned or revoked): a reader that remembers what it read is up to date while it is unchanged."""
        self._offsets: dict[int, int] = {}
        """Persisted offsets by partition not yet written (``set_persisted_offset``)."""
        self._offsets_due = 0.0
        self._complete: set[int] = set()
        """Partitions held now whose recovery completed: their held time is refreshed."""
        self._stored: set[int] = set()
        """Partitions whose ``STORED_KEY`` this process has written (and not forgotten since)."""
        self.codec = TableCodec(
            app, self.key_type, self.key_serializer, self.value_type, self.value_serializer
        )

    def _encode_key(self, key: Any) -> bytes:
        """Faust's key bytes (``SerializedStore._encode_key``), through ``TableCodec``."""
        key_bytes = self.codec.dumps_key(key)
        if key_bytes is None:
            raise TypeError("Table key cannot be None")
        return key_bytes

    def _encode_value(self, value: Any) -> bytes | None:
        return self.codec.dumps_value(value)

    def _decode_value(self, value: bytes | None) -> Any:
        return self.codec.loads_value(value)

    @property
    def db_path(self) -> Path:
        """The table's database: ``{tabledir}/{table}.db``."""
        return self._path_with_suffix(self.path / self.basename)

    def _open(self) -> rocksdict.Rdict:
        """The table's database; at its first opening every partition kept in it that cannot be
        trusted any more is forgotten, whether or not this worker takes it up again."""
        if self._db is None:
            remove_partition_dbs(self.path, str(self.basename))
            self._db = self.rocksdb_options.open(self.db_path)
            self._forget_untrusted(self._db, set())
        return self._db

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        """The table's database, with ``partition``'s values visible from now on (Faust opens a
        partition's database on assignment, recovery and a write); a partition taken up whose
        values may miss deletions is forgotten first."""
        db = self._dbs.get(partition)
        if db is None:
            db = self._open()
            if is_kept(db, partition) and not self._trusted(held_time(db, partition)):
                self._forget(db, {partition})
            self._dbs[partition] = db
            self.generation += 1
        return db

    def _trusted(self, held: int | None) -> bool:
        """Whether the changelog still holds every deletion since the persisted offset of a partition
        last held at ``held`` (None: its recovery never completed): held within half of
        ``delete.retention.ms``, and not later than ``CLOCK_SKEW_MS`` ahead of this host's clock."""
        if held is None or self.tombstones_kept_ms <= 0:
            return False
        age_ms = wall_ms() - held
        return -CLOCK_SKEW_MS <= age_ms < self.tombstones_kept_ms / 2

    def _forget_untrusted(self, db: rocksdict.Rdict, held_now: Iterable[int]) -> None:
        """Forget, in one pass over the table, every kept partition not in ``held_now`` that cannot be
        trusted (``_trusted``)."""
        untrusted = {
            partition
            for partition, held in kept_partitions(db).items()
            if partition not in held_now and not self._trusted(held)
        }
        if untrusted:
            self._forget(db, untrusted)

    def _forget(self, db: rocksdict.Rdict, partitions: set[int]) -> None:
        """Delete the values of ``partitions`` and their persisted offsets (one pass over the table,
        ``FORGET_BATCH`` deletes per write). Their held times go first and their offsets (and
        ``STORED_KEY``) last: a start cut short leaves partitions kept without a held time, which the
        next start forgets whatever it reads for ``delete.retention.ms``."""
        started = monotonic()
        forgotten = dict.fromkeys(partitions, 0)
        write = rocksdict.WriteBatch(raw_mode=True)
        for partition in partitions:
            write.delete(held_key(partition))
        db.write(write)
        write = rocksdict.WriteBatch(raw_mode=True)
        for key, raw in db.items():
            if not key.startswith(OFFSET_KEY) and (partition := tagged_partition(raw)) in forgotten:
                write.delete(key)
                forgotten[partition] += 1
                if write.len() >= FORGET_BATCH:
                    db.write(write)
                    write = rocksdict.WriteBatch(raw_mode=True)
        for partition in partitions:
            write.delete(offset_key(partition))
            write.delete(stored_key(partition))
        db.write(write)
        self._stored -= partitions
        log.warning(
            "table %s: partitions %s were last held too long ago for their changelog to hold every "
            "deletion since (or their recovery did not complete); %d values dropped in %.1f s, their "
            "whole changelogs are read when they are taken up",
            self.table_name,
            sorted(partitions),
            sum(forgotten.values()),
            monotonic() - started,
            extra={"table": self.table_name, "partitions": sorted(partitions), "forgotten": forgotten},
        )

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        """From now on the held time of these partitions is refreshed: the active ones are complete,
        and a standby copy applies each record as it is fetched (its lag behind the changelog must
        stay under half of ``delete.retention.ms``, hours against its usual milliseconds). Kept
        partitions this worker does not hold are forgotten once they cannot be trusted."""
        changelogs = self.table.changelog_topic.topics
        self._complete |= {
            tp.partition
            for tp in (*active_tps, *standby_tps)
            if tp.topic in changelogs and tp.partition in self._dbs
        }
        self._write_offsets()
        self._forget_untrusted(self._open(), self._dbs)

    @staticmethod
    def _partition() -> int | None:
        """The partition a table write made now goes to: the changelog table's rule."""
        partition = record_partition()
        if partition is not None:
            return partition
        event = current_event()
        return None if event is None else event.message.partition

    def _set(self, key: bytes, value: bytes) -> None:
        partition = self._partition()
        if partition is None:
            raise ValueError(f"table {self.table_name}: a write needs the partition of the record it is for")
        db = self._db_for_partition(partition)
        if partition not in self._stored:
            db.put(stored_key(partition), b"")
            self._stored.add(partition)
        db.put(key, partition_tag(partition) + value)
        self.generation += 1

    def _get(self, key: bytes) -> bytes | None:
        db = self._db
        raw = None if db is None else db.get(key)
        if raw is None or tagged_partition(raw) not in self._dbs:
            return None  # absent, or stored by a partition this worker does not hold
        return raw[TAG_BYTES:]

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        """``Mapping.get`` without raising and catching a KeyError for every absent key."""
        value = self._get(self._encode_key(key))
        return default if value is None else self._decode_value(value)

    def _del(self, key: bytes) -> None:
        """Delete the key whichever partition stored it, as the in-memory store's one dict does."""
        self._open().delete(key)
        self.generation += 1

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Recovery: the records' values (a tombstone deletes the key) and each partition's persisted
        offset in one atomic write, so the offset is never ahead of the data."""
        write = rocksdict.WriteBatch(raw_mode=True)
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            partition = message.partition
            self._db_for_partition(partition)
            offsets[partition] = max(offsets.get(partition, message.offset), message.offset)
            if message.value is None:
                write.delete(message.key)
            else:
                write.put(message.key, partition_tag(partition) + message.value)
        put_offsets(write, offsets)
        if offsets:
            self._open().write(write)
            self.generation += 1

    def persisted_offset(self, tp: TP) -> int | None:
        """The changelog offset the database holds ``tp``'s data up to (recovery reads on from it)."""
        db = self._db_for_partition(tp.partition)
        self._write_offsets()
        offset = db.get(offset_key(tp.partition))
        return None if offset is None else int(offset)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Called once a changelog record is written, its value having been stored before it was
        sent. The offsets are written together at most every ``OFFSET_WRITE_INTERVAL_S`` (and when a
        partition is revoked or the store closes): the database's offset can lag, never lead."""
        self._offsets[tp.partition] = offset
        if self._db is None or monotonic() >= self._offsets_due:
            self._write_offsets()

    def _write_offsets(self) -> None:
        """Write the offsets waiting and, with them, now as the held time of every complete partition."""
        offsets, self._offsets = self._offsets, {}
        self._offsets_due = monotonic() + OFFSET_WRITE_INTERVAL_S
        if offsets or self._complete:
            write = rocksdict.WriteBatch(raw_mode=True)
            put_offsets(write, offsets)
            now = b"%d" % wall_ms()
            for partition in self._complete:
                write.put(held_key(partition), now)
            self._open().write(write)

    @Service.task
    async def _keep_held_times_fresh(self) -> None:
        """Every ``HELD_REFRESH_S``, write the held times (and offsets waiting) of the partitions held
        now and flush the memtables in the background: while it holds a partition, this worker
        writes every change of it, so its values are complete up to now whether or not there were
        any, and a crash goes back at most to the flush."""
        while not self.should_stop:
            await self.sleep(HELD_REFRESH_S)
            self.refresh()

    def refresh(self, *, wait: bool = False) -> None:
        """Write the held times and offsets waiting, then flush the memtables (in the background
        unless ``wait``)."""
        if self._db is not None:
            self._write_offsets()
            self._db.flush(wait=wait)

    def _items(self) -> Iterator[tuple[bytes, bytes]]:
        """The keys and values of the partitions this worker holds (the offset keys left out)."""
        if self._db is None:
            return
        for key, raw in self._db.items():
            if not key.startswith(OFFSET_KEY) and tagged_partition(raw) in self._dbs:
                yield key, raw[TAG_BYTES:]

    def _iterkeys(self) -> Iterator[bytes]:
        for key, _ in self._items():
            yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _, value in self._items():
            yield value

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        return self._items()

    def _size(self) -> int:
        return sum(1 for _ in self._items())

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        """Partitions taken away: their values stay on disk (with their persisted offsets, for a
        later assignment) and are no longer read."""
        self._write_offsets()
        for tp in tps:
            if tp.topic in table.changelog_topic.topics and self._dbs.pop(tp.partition, None) is not None:
                self._complete.discard(tp.partition)
                self.generation += 1

    def reset_state(self) -> None:
        """Remove this table's database (Faust's removes the whole ``tabledir``)."""
        self._close()
        rocksdict.Rdict.destroy(str(self.db_path))

    def _close(self) -> None:
        self._write_offsets()
        db, self._db = self._db, None
        self._dbs.clear()
        self._complete.clear()
        self._stored.clear()
        self.generation += 1
        if db is not None:
            db.close()
        gc.collect()

    async def stop(self) -> None:
        """Close the database (closing flushes its memtables) and release its files."""
        self._close()


def partition_tag(partition: int) -> bytes:
    """The bytes before a stored value that say the partition it was stored for."""
    return partition.to_bytes(TAG_BYTES, "big")


def tagged_partition(raw: bytes) -> int:
    """The partition a stored value (``partition_tag`` and the value) was stored for."""
    return int.from_bytes(raw[:TAG_BYTES], "big")


def offset_key(partition: int) -> bytes:
    """Where the database keeps the changelog offset it holds ``partition``'s data up to."""
    return OFFSET_KEY + b"%d" % partition


def held_key(partition: int) -> bytes:
    """Where the database keeps when ``partition`` was last held with its recovery complete."""
    return HELD_KEY + b"%d" % partition


def wall_ms() -> int:
    """Milliseconds since the epoch: held times outlive the process."""
    return int(time() * 1000)


def stored_key(partition: int) -> bytes:
    """Where the database notes that a value was stored for ``partition`` outside recovery."""
    return STORED_KEY + b"%d" % partition


def is_kept(db: rocksdict.Rdict, partition: int) -> bool:
    """Whether ``db`` may hold values of ``partition``: a persisted offset, or a value stored before
    the first offset was written."""
    return db.get(offset_key(partition)) is not None or db.get(stored_key(partition)) is not None


def held_time(db: rocksdict.Rdict, partition: int) -> int | None:
    """When ``partition`` was last held with its recovery complete (None: never)."""
    held = db.get(held_key(partition))
    return None if held is None else int(held)


def kept_partitions(db: rocksdict.Rdict) -> dict[int, int | None]:
    """The partitions ``db`` may hold values of (``is_kept``), with their held times (None: none)."""
    kept, held = set(), {}
    for key, value in db.items(from_key=OFFSET_KEY):
        if not key.startswith(OFFSET_KEY):
            break  # the offset, held and stored keys sort together
        if key.startswith(HELD_KEY):
            held[int(key[len(HELD_KEY) :])] = int(value)
        elif key.startswith(STORED_KEY):
            kept.add(int(key[len(STORED_KEY) :]))
        elif key[len(OFFSET_KEY) :].isdigit():
            kept.add(int(key[len(OFFSET_KEY) :]))
    return {partition: held.get(partition) for partition in kept}


def put_offsets(write: rocksdict.WriteBatch, offsets: dict[int, int]) -> None:
    """Add each partition's persisted offset to ``write``."""
    for partition, offset in offsets.items():
        write.put(offset_key(partition), str(offset).encode())


def partition_db_paths(tabledir: Path, table: str) -> dict[int, Path]:
    """The databases a table had in Faust's layout, ``{table}-{partition}.db``, by partition."""
    found = {}
    for path in tabledir.glob(f"{glob.escape(table)}-*.db"):
        number = path.name[len(table) + 1 : -len(".db")]  # not another table's: "{table}-state-3.db"
        if number.isdigit() and path.is_dir():
            found[int(number)] = path
    return found


def remove_partition_dbs(tabledir: Path, table: str) -> None:
    """Remove a table's databases in Faust's layout (one per partition, no held times): their
    partitions are recovered from their changelogs."""
    olds = partition_db_paths(tabledir, table)
    if olds:
        log.warning(
            "table %s: removing %d partition databases written by an older worker; their changelogs "
            "are read instead",
            table,
            len(olds),
        )
    for old_path in olds.values():
        shutil.rmtree(old_path, ignore_errors=True)


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
