"""The rocksdb:// table store: one database per table, each value tagged with its changelog's
partition and read whichever partition stored it (among those the worker holds), recovery and
persisted offsets per partition, a state folder in Faust's layout moved in, one memory budget for
every database, and a state folder checked at start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
import rocksdict
import yaml
from faust.types import TP

from signal_sync.config import WorkerSettings, load_settings
from signal_sync.errors import ConfigError
from signal_sync.streams import rocksdb_store
from signal_sync.streams.changelog import output_changelog_table, writes_to_partition
from signal_sync.streams.rocksdb_store import (
    MIB,
    OFFSET_KEY,
    PartitionedRocksStore,
    RocksMemory,
    held_key,
    offset_key,
    prepare_state_dir,
    rocks_memory,
    stored_key,
)


class RecordingOutputs:
    """Stands in for the OutputProducer: records what ``send_soon`` was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send_soon(self, topic: str, key: Any, value: Any, partition: int = -1, callback: Any = None) -> None:
        self.sent.append((topic, key, value, partition))


DAY_MS = 86_400_000


def rocks_table(
    tmp_path: Path, memory: RocksMemory, name: str = "identities", retention_ms: int | None = DAY_MS
) -> tuple[faust.Table, Any]:
    """A table on ``rocksdb://`` whose changelog's ``delete.retention.ms`` was read as
    ``retention_ms`` (None: it could not be read)."""
    app = faust.App(
        "rocks-unit",
        broker="kafka://127.0.0.1:1",
        store="rocksdb://",
        datadir=str(tmp_path),
        autodiscover=False,
    )
    outputs = RecordingOutputs()
    kept = None if retention_ms is None else {f"rocks-unit-{name}-changelog": retention_ms}
    table = output_changelog_table(
        app, outputs, name, rocks=memory, tombstones_kept_ms=kept, partitions=4, value_type=bytes
    )  # type: ignore[arg-type]
    return table, outputs


def small_memory() -> RocksMemory:
    """A budget small enough for the tests' few keys (the ``memory`` fixture's, and the killed
    writer's in its own process)."""
    return rocks_memory(block_cache_mb=8, write_buffer_mb=8, max_open_files=64)


@pytest.fixture
def memory() -> RocksMemory:
    return small_memory()


async def test_a_write_lands_on_its_changelog_partition_and_is_read_from_any(tmp_path: Path, memory) -> None:
    table, outputs = rocks_table(tmp_path, memory)
    store = table.data
    assert isinstance(store, PartitionedRocksStore)

    async def handle() -> None:  # the tail watch's case: no Faust event, a partition given
        table["anon-1"] = b'{"email":"a@example.com"}'

    with writes_to_partition(3):
        await asyncio.create_task(handle())
    assert outputs.sent == [("rocks-unit-identities-changelog", b'"anon-1"', b'{"email":"a@example.com"}', 3)]
    db = store._db_for_partition(3)
    assert db.get(b'"anon-1"') == b'\x00\x03{"email":"a@example.com"}'  # tagged with its partition
    assert db is store._db_for_partition(1)  # one database for every partition
    assert store.db_path == tmp_path / "v1" / "tables" / "identities.db"
    with writes_to_partition(1):  # a batch planned under another partition's record still finds it
        assert store.get("anon-1") == b'{"email":"a@example.com"}'
        assert "anon-1" in store
        assert store.get("anon-2") is None
    assert store.get("anon-1") == b'{"email":"a@example.com"}'
    await store.stop()


CHANGELOG = "rocks-unit-identities-changelog"


def changelog_record(partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    """What Faust's recovery hands ``apply_changelog_batch``: an event with its message."""
    tp = TP(CHANGELOG, partition)
    return SimpleNamespace(
        message=SimpleNamespace(tp=tp, partition=partition, offset=offset, key=key, value=value)
    )


async def test_only_the_partitions_the_worker_holds_are_read(tmp_path: Path, memory) -> None:
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    for partition in range(4):
        with writes_to_partition(partition):
            table.data[f"k{partition}"] = b"v%d" % partition
    await store.on_recovery_completed({TP(CHANGELOG, partition) for partition in range(4)}, set())
    assert sorted(store.keys()) == ["k0", "k1", "k2", "k3"]
    assert len(store) == 4
    store.revoke_partitions(table, {TP(CHANGELOG, 2)})
    assert store.get("k2") is None  # kept on disk, not read
    assert "k2" not in store
    assert sorted(store.items()) == [("k0", b"v0"), ("k1", b"v1"), ("k3", b"v3")]
    store._db_for_partition(2)  # assigned again: its values (and persisted offset) are there
    assert store.get("k2") == b"v2"
    await store.stop()


async def test_recovery_writes_values_and_offsets_per_partition(tmp_path: Path, memory) -> None:
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    with writes_to_partition(1):
        table.data["gone"] = b"old"
    store.apply_changelog_batch(
        [
            changelog_record(0, 5, b'"a"', b"1"),
            changelog_record(3, 7, b'"b"', b"2"),
            changelog_record(0, 6, b'"a"', b"3"),
            changelog_record(3, 8, b'"gone"', None),  # a tombstone: the key goes, as from the dict
        ],
        None,
        None,
    )
    assert (store.get("a"), store.get("b"), store.get("gone")) == (b"3", b"2", None)
    assert store.persisted_offset(TP(CHANGELOG, 0)) == 6
    assert store.persisted_offset(TP(CHANGELOG, 3)) == 8
    assert store.persisted_offset(TP(CHANGELOG, 2)) is None  # replayed from the start
    await store.stop()


def write_partition_db(path: Path, values: dict[bytes, bytes], offset: int) -> None:
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in values.items():
        db[key] = value
    db[OFFSET_KEY] = str(offset).encode()
    db.close()


async def test_a_state_folder_in_fausts_layout_is_removed(tmp_path: Path, memory) -> None:
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    write_partition_db(tables / "identities-0.db", {b'"a"': b'{"n":1}'}, 10)
    write_partition_db(tables / "identities-3.db", {b'"b"': b'{"n":2}'}, 42)
    write_partition_db(tables / "identities-extra-3.db", {b'"x"': b"{}"}, 7)  # another table's
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    assert store.persisted_offset(TP(CHANGELOG, 3)) is None  # no held time: the changelog is read
    assert (store.get("a"), store.get("b")) == (None, None)
    assert sorted(path.name for path in tables.glob("*.db")) == ["identities-extra-3.db", "identities.db"]
    await store.stop()


@pytest.fixture
def wall_clock(monkeypatch) -> list[int]:
    """The store's wall clock in ms since the epoch: the test moves it."""
    now_ms = [1_700_000_000_000]
    monkeypatch.setattr(rocksdb_store, "wall_ms", lambda: now_ms[0])
    return now_ms


def kept_folder(tmp_path: Path, memory: RocksMemory, complete: bool = True) -> None:
    """A stopped worker's folder: partitions 1 (active) and 2 (a standby copy) with a value each and a
    persisted offset, their recovery completed (or not) now."""
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    for partition in (1, 2):
        with writes_to_partition(partition):
            table.data[f"k{partition}"] = b"v%d" % partition
        store.set_persisted_offset(TP(CHANGELOG, partition), 10 * partition)
    if complete:
        asyncio.run(store.on_recovery_completed({TP(CHANGELOG, 1)}, {TP(CHANGELOG, 2)}))
    asyncio.run(store.stop())


@pytest.mark.parametrize(
    ("away_ms", "kept"), [(0, True), (43_199_000, True), (43_200_001, False), (10**10, False)]
)
def test_a_partition_is_trusted_for_half_the_changelogs_delete_retention(
    tmp_path: Path, memory, wall_clock, away_ms: int, kept: bool
) -> None:
    """An erasure's tombstone written while another worker held the partition is in the changelog
    for at least ``delete.retention.ms``: a partition taken up later than half of it is read anew."""
    kept_folder(tmp_path, memory)
    wall_clock[0] += away_ms
    app = faust.App("rocks-unit", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = output_changelog_table(
        app,
        RecordingOutputs(),
        "identities",
        rocks=memory,
        tombstones_kept_ms={CHANGELOG: DAY_MS, "another-changelog": 1},
        partitions=4,
        value_type=bytes,
    )  # type: ignore[arg-type]
    store = table.data
    assert store.tombstones_kept_ms == DAY_MS  # its own changelog's
    assert store.persisted_offset(TP(CHANGELOG, 2)) == (20 if kept else None)
    with writes_to_partition(2):
        assert store.get("k2") == (b"v2" if kept else None)
    assert store.persisted_offset(TP(CHANGELOG, 1)) == (10 if kept else None)  # each partition by itself
    assert store.get("k1") == (b"v1" if kept else None)
    asyncio.run(store.stop())


def test_a_partition_whose_recovery_never_completed_is_read_anew(tmp_path: Path, memory, wall_clock) -> None:
    kept_folder(tmp_path, memory, complete=False)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    assert store.persisted_offset(TP(CHANGELOG, 1)) is None
    assert store.get("k1") is None
    asyncio.run(store.stop())


async def test_a_partition_is_forgotten_in_batches_beside_one_that_is_kept(
    tmp_path: Path, memory, wall_clock, monkeypatch
) -> None:
    monkeypatch.setattr(rocksdb_store, "FORGET_BATCH", 2)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    for partition, count in ((1, 5), (2, 1)):
        for n in range(count):
            with writes_to_partition(partition):
                table.data[f"k{partition}-{n}"] = b"v"
        store.set_persisted_offset(TP(CHANGELOG, partition), 7)
    await store.on_recovery_completed({TP(CHANGELOG, 2)}, set())  # partition 1's never completed
    await store.stop()

    again, _ = rocks_table(tmp_path, memory)
    assert again.data.persisted_offset(TP(CHANGELOG, 1)) is None
    assert again.data.persisted_offset(TP(CHANGELOG, 2)) == 7
    assert sorted(again.data.keys()) == ["k2-0"]
    await again.data.stop()
    assert sorted(key for key in raw_keys(again.data) if not key.startswith(OFFSET_KEY)) == [b'"k2-0"']


def raw_keys(store: PartitionedRocksStore) -> set[bytes]:
    """Every key of a stopped store's database, offset and held keys included."""
    db = rocksdict.Rdict(str(store.db_path), options=rocksdict.Options(raw_mode=True))
    try:
        return set(db.keys())
    finally:
        db.close()


@pytest.mark.parametrize(("ahead_ms", "kept"), [(59_000, True), (61_000, False)])
def test_a_held_time_ahead_of_the_clock_is_trusted_only_within_the_skew(
    tmp_path: Path, memory, wall_clock, ahead_ms: int, kept: bool
) -> None:
    """A volume moved to a host whose clock is behind: a held time far in the future says nothing."""
    kept_folder(tmp_path, memory)
    wall_clock[0] -= ahead_ms
    table, _ = rocks_table(tmp_path, memory)
    assert table.data.persisted_offset(TP(CHANGELOG, 1)) == (10 if kept else None)
    assert table.data.get("k1") == (b"v1" if kept else None)
    asyncio.run(table.data.stop())


def test_nothing_kept_is_trusted_when_the_changelogs_retention_is_unknown(
    tmp_path: Path, memory, wall_clock
) -> None:
    kept_folder(tmp_path, memory)
    table, _ = rocks_table(tmp_path, memory, retention_ms=None)
    assert table.data.persisted_offset(TP(CHANGELOG, 1)) is None
    assert table.data.get("k1") is None
    asyncio.run(table.data.stop())


def test_partitions_that_cannot_be_trusted_are_forgotten_at_open_even_if_never_taken_up(
    tmp_path: Path, memory, wall_clock
) -> None:
    """An erased person's values of a partition another worker holds now do not stay on disk."""
    kept_folder(tmp_path, memory)
    wall_clock[0] += DAY_MS
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    assert store.persisted_offset(TP(CHANGELOG, 0)) is None  # takes up partition 0 only
    asyncio.run(store.stop())
    assert {b'"k1"', b'"k2"', offset_key(1), offset_key(2), held_key(1), held_key(2)}.isdisjoint(
        raw_keys(store)
    )


def test_a_partition_that_went_stale_while_the_worker_ran_is_forgotten_when_taken_up(
    tmp_path: Path, memory, wall_clock
) -> None:
    kept_folder(tmp_path, memory)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    assert store.persisted_offset(TP(CHANGELOG, 0)) is None  # the database opens: 1 and 2 trusted
    wall_clock[0] += DAY_MS // 2  # no rebalance meanwhile
    assert store.persisted_offset(TP(CHANGELOG, 1)) is None
    assert store.get("k1") is None
    asyncio.run(store.stop())


async def test_a_kept_partition_not_held_is_forgotten_at_a_rebalance_once_it_cannot_be_trusted(
    tmp_path: Path, memory, wall_clock
) -> None:
    await asyncio.to_thread(kept_folder, tmp_path, memory)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    assert store.persisted_offset(TP(CHANGELOG, 1)) == 10  # partition 2 stays on disk, not held
    await store.on_recovery_completed({TP(CHANGELOG, 1), TP(CHANGELOG, 3)}, set())
    assert store.get("k1") == b"v1"
    wall_clock[0] += DAY_MS // 2
    await store.on_recovery_completed({TP(CHANGELOG, 1)}, set())
    await store.stop()
    keys = raw_keys(store)
    assert {b'"k1"', offset_key(1), held_key(1)} <= keys  # held: its time is fresh
    assert {b'"k2"', offset_key(2), held_key(2)}.isdisjoint(keys)
    assert held_key(3) not in keys  # not opened here: never counted as held


class FailingWrites:
    """A database whose ``nth`` write fails, as a start cut short would (the rest passes through)."""

    def __init__(self, db: rocksdict.Rdict, nth: int) -> None:
        self.db, self.left = db, nth

    def items(self) -> Any:
        return self.db.items()

    def write(self, batch: rocksdict.WriteBatch) -> None:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("stopped")
        self.db.write(batch)


def test_a_forget_cut_short_is_never_trusted_again(tmp_path: Path, memory, wall_clock, monkeypatch) -> None:
    """The held time goes first: a partition left half forgotten is forgotten again at the next
    start, even if that start reads a longer ``delete.retention.ms``."""
    monkeypatch.setattr(rocksdb_store, "FORGET_BATCH", 2)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    for n in range(5):
        with writes_to_partition(1):
            table.data[f"k{n}"] = b"v"
    store.set_persisted_offset(TP(CHANGELOG, 1), 50)
    asyncio.run(store.on_recovery_completed({TP(CHANGELOG, 1)}, set()))
    store.revoke_partitions(table, {TP(CHANGELOG, 1)})  # held until now, as a folder a worker left
    with pytest.raises(RuntimeError, match="stopped"):  # the held time, two values, then it stops
        store._forget(FailingWrites(store._open(), nth=3), {1})  # type: ignore[arg-type]
    asyncio.run(store.stop())
    assert raw_keys(store) == {offset_key(1), stored_key(1), b'"k2"', b'"k3"', b'"k4"'}  # no held time

    again, _ = rocks_table(tmp_path, memory, retention_ms=7 * DAY_MS)
    assert again.data.persisted_offset(TP(CHANGELOG, 1)) is None
    assert list(again.data.keys()) == []
    asyncio.run(again.data.stop())


@pytest.mark.parametrize(("away_ms", "kept"), [(0, True), (DAY_MS // 2 + 1, False)])
def test_values_stored_before_the_first_persisted_offset_are_kept_and_forgotten_like_any_others(
    tmp_path: Path, memory, wall_clock, away_ms: int, kept: bool
) -> None:
    """A worker killed before a partition's first offset is written leaves values without an offset;
    they count as kept, so a later start forgets them once the changelog may have lost a deletion
    since (an erased person's values do not come back)."""
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    with writes_to_partition(1):
        table.data["k1"] = b"v1"
    asyncio.run(store.on_recovery_completed({TP(CHANGELOG, 1)}, set()))  # its held time written now
    store._db.close()  # killed: no offset written, the database left as it is  # type: ignore[union-attr]
    store._db = None
    assert offset_key(1) not in raw_keys(store)

    wall_clock[0] += away_ms
    again, _ = rocks_table(tmp_path, memory)
    assert again.data.persisted_offset(TP(CHANGELOG, 0)) is None  # opens the database only
    asyncio.run(again.data.stop())
    assert (b'"k1"' in raw_keys(again.data)) is kept
    assert (stored_key(1) in raw_keys(again.data)) is kept


def test_a_partition_forgotten_and_written_again_notes_its_values_again(
    tmp_path: Path, memory, wall_clock
) -> None:
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    with writes_to_partition(1):
        table.data["k1"] = b"v1"
    asyncio.run(store.on_recovery_completed({TP(CHANGELOG, 1)}, set()))
    store.revoke_partitions(table, {TP(CHANGELOG, 1)})
    wall_clock[0] += DAY_MS
    with writes_to_partition(1):  # taken up again: forgotten first, then written
        table.data["k2"] = b"v2"
    store._db.close()  # killed before an offset was written  # type: ignore[union-attr]
    store._db = None
    assert {stored_key(1), b'"k2"'} <= raw_keys(store)
    assert b'"k1"' not in raw_keys(store)


async def test_an_idle_held_partition_s_held_time_is_refreshed_without_writes(
    tmp_path: Path, memory, wall_clock, monkeypatch
) -> None:
    """A worker killed after hours without a change of its partitions: their held times are recent,
    so the next start trusts them rather than reading their whole changelogs."""
    monkeypatch.setattr(rocksdb_store, "HELD_REFRESH_S", 0.01)
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    await store.start()
    try:
        assert store.persisted_offset(TP(CHANGELOG, 1)) is None
        await store.on_recovery_completed({TP(CHANGELOG, 1)}, set())
        db = store._open()
        assert rocksdb_store.held_time(db, 1) == wall_clock[0]
        wall_clock[0] += DAY_MS  # a day without a write
        deadline = asyncio.get_running_loop().time() + 10
        while rocksdb_store.held_time(db, 1) != wall_clock[0]:
            assert asyncio.get_running_loop().time() < deadline, "the held time was never refreshed"
            await asyncio.sleep(0.01)
    finally:
        await store.stop()


async def test_a_held_partition_keeps_its_time_fresh_and_a_revoked_one_its_last(
    tmp_path: Path, memory, wall_clock
) -> None:
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    for partition in (0, 1):
        with writes_to_partition(partition):
            table.data[f"k{partition}"] = b"v"
        store.set_persisted_offset(TP(CHANGELOG, partition), 5)
    await store.on_recovery_completed({TP(CHANGELOG, 0), TP(CHANGELOG, 1)}, set())
    wall_clock[0] += 60_000
    store.revoke_partitions(table, {TP(CHANGELOG, 1)})  # held until now
    wall_clock[0] += 30_000
    store.set_persisted_offset(TP(CHANGELOG, 0), 6)
    wall_clock[0] += 30_000
    await store.stop()  # partition 0 held until the stop
    db = rocksdict.Rdict(str(store.db_path), options=rocksdict.Options(raw_mode=True))
    try:
        held = {p: int(db[held_key(p)]) for p in (0, 1)}
    finally:
        db.close()
    assert held == {0: 1_700_000_120_000, 1: 1_700_000_060_000}


async def test_reset_state_removes_only_its_tables_database(tmp_path: Path, memory) -> None:
    identities, _ = rocks_table(tmp_path, memory, "identities")
    states, _ = rocks_table(tmp_path, memory, "destination-state")
    for table in (identities, states):
        with writes_to_partition(0):
            table.data["k"] = b"v"
    identities.data.reset_state()
    assert not identities.data.db_path.exists()
    assert states.data.get("k") == b"v"
    assert identities.data.get("k") is None
    await states.data.stop()


async def test_a_write_without_a_partition_is_refused(tmp_path: Path, memory) -> None:
    table, _ = rocks_table(tmp_path, memory)
    with pytest.raises(ValueError, match="identities"):
        table.data["anon-1"] = b"{}"


async def test_a_kept_folder_gives_back_values_and_the_persisted_offset(tmp_path: Path, memory) -> None:
    table, _ = rocks_table(tmp_path, memory)
    with writes_to_partition(2):
        table.data["anon-1"] = b'{"plan":"pro"}'
    tp = faust.types.TP("rocks-unit-identities-changelog", 2)
    table.data.set_persisted_offset(tp, 41)
    await table.data.on_recovery_completed({tp}, set())
    await table.data.stop()

    again, _ = rocks_table(tmp_path, memory)
    assert again.data.persisted_offset(tp) == 41  # recovery reads the changelog from offset 42 on
    with writes_to_partition(2):
        assert again.data.get("anon-1") == b'{"plan":"pro"}'
    await again.data.stop()


async def test_every_database_shares_one_write_budget(tmp_path: Path) -> None:
    budget = rocks_memory(block_cache_mb=1, write_buffer_mb=4, max_open_files=64)
    identities, _ = rocks_table(tmp_path, budget, "identities")
    states, _ = rocks_table(tmp_path, budget, "destination-state")
    value = b"x" * 200
    for index in range(40_000):  # ~9 MB of writes over 8 databases, over twice the budget
        table = identities if index % 2 else states
        with writes_to_partition(index % 4):
            table.data[f"contact-{index}"] = value
    used = budget.write_buffer_usage_bytes()
    assert 0 < used <= 4 * MIB + MIB  # counted for every database, flushed near the cap
    assert budget.cache_usage_bytes() <= 1 * MIB + MIB // 4
    await identities.data.stop()
    await states.data.stop()


def test_a_state_dir_that_cannot_hold_files_fails_naming_the_field(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"^worker\.state_dir: cannot keep the tables' state in"):
        prepare_state_dir(occupied)
    prepare_state_dir(tmp_path / "new" / "state")
    assert (tmp_path / "new" / "state").is_dir()


@pytest.mark.parametrize(
    ("worker", "field"),
    [
        ({"store": "redis://"}, "worker.store"),
        ({"rocksdb": {"block_cache_mb": 0}}, "worker.rocksdb.block_cache_mb"),
        ({"rocksdb": {"write_buffer_mb": 1}}, "worker.rocksdb.write_buffer_mb"),
        ({"rocksdb": {"cache_mb": 64}}, "worker.rocksdb.cache_mb"),
    ],
)
def test_a_bad_store_config_fails_naming_the_field(
    tmp_path: Path, worker: dict[str, Any], field: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"worker": worker, "integrations": []}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert any(line.startswith(f"{field}: ") for line in str(info.value).splitlines()), str(info.value)


def test_rocksdb_is_the_default_store() -> None:
    assert WorkerSettings().store == "rocksdb://"


async def test_persisted_offsets_are_written_together_lagging_never_leading(
    tmp_path: Path, memory, monkeypatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(rocksdb_store, "monotonic", lambda: now[0])
    table, _ = rocks_table(tmp_path, memory)
    store = table.data
    written = store._db_for_partition(0).get
    store.set_persisted_offset(TP(CHANGELOG, 0), 5)  # the first one is written at once
    await store.on_recovery_completed({TP(CHANGELOG, partition) for partition in range(3)}, set())
    store.set_persisted_offset(TP(CHANGELOG, 0), 6)
    store.set_persisted_offset(TP(CHANGELOG, 1), 3)
    assert (written(offset_key(0)), written(offset_key(1))) == (b"5", None)  # lagging
    now[0] += rocksdb_store.OFFSET_WRITE_INTERVAL_S
    store.set_persisted_offset(TP(CHANGELOG, 0), 7)
    assert (written(offset_key(0)), written(offset_key(1))) == (b"7", b"3")
    store.set_persisted_offset(TP(CHANGELOG, 2), 9)
    store.revoke_partitions(table, {TP(CHANGELOG, 2)})  # written before the partition goes
    assert written(offset_key(2)) == b"9"
    store.set_persisted_offset(TP(CHANGELOG, 1), 4)
    assert store.persisted_offset(TP(CHANGELOG, 1)) == 4  # what recovery reads is written first
    store.set_persisted_offset(TP(CHANGELOG, 0), 8)
    await store.stop()  # and everything when the store closes

    again, _ = rocks_table(tmp_path, memory)
    assert again.data.persisted_offset(TP(CHANGELOG, 0)) == 8
    await again.data.stop()


KILLED_WRITER = """
import asyncio, os, sys
from pathlib import Path
from faust.types import TP
from signal_sync.streams import rocksdb_store
from signal_sync.streams.changelog import writes_to_partition
from tests.unit.test_rocksdb_store import CHANGELOG, rocks_table, small_memory

rocksdb_store.OFFSET_WRITE_INTERVAL_S = 0.0  # every offset written at once
table, _ = rocks_table(Path(sys.argv[1]), small_memory())
refresh_at, last = int(sys.argv[2]), int(sys.argv[3])
tp = TP(CHANGELOG, 0)
table.data._db_for_partition(0)  # assigned, as Faust opens it
asyncio.run(table.data.on_recovery_completed({tp}, set()))
for offset in range(last + 1):
    with writes_to_partition(0):
        table.data[f"k{offset}"] = b"v%d" % offset
    table.data.set_persisted_offset(tp, offset)
    if offset == refresh_at:
        table.data.refresh(wait=True)  # what the store does every HELD_REFRESH_S (there in the background)
os._exit(0)  # killed: the store is never closed
"""


@pytest.mark.parametrize("refresh_at", [0, 150, 299])
async def test_a_killed_worker_keeps_its_data_up_to_the_persisted_offset(
    tmp_path: Path, memory, refresh_at: int
) -> None:
    """Writes skip the write-ahead log: a kill loses what the memtables held, yet the persisted
    offset the database keeps never leads the values it covers, and a refresh's flush is kept."""
    last = 299
    code = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(refresh_at), str(last)],
        cwd=Path(__file__).parents[2],  # the checkout, where ``tests`` imports from
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert code.returncode == 0, code.stderr.decode()[-2000:]
    again, _ = rocks_table(tmp_path, memory)
    offset = again.data.persisted_offset(TP(CHANGELOG, 0))
    assert offset is not None and refresh_at <= offset <= last
    with writes_to_partition(0):
        assert [again.data.get(f"k{n}") for n in range(offset + 1)] == [b"v%d" % n for n in range(offset + 1)]
    await again.data.stop()
