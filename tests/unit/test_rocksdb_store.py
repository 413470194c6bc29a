"""The rocksdb:// table store: writes on their changelog's partition, reads across the worker's
partitions, one memory budget for every database, and a state folder checked at start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest
import yaml

from signal_sync.config import WorkerSettings, load_settings
from signal_sync.errors import ConfigError
from signal_sync.streams.changelog import output_changelog_table, writes_to_partition
from signal_sync.streams.rocksdb_store import (
    MIB,
    PartitionedRocksStore,
    RocksMemory,
    prepare_state_dir,
    rocks_memory,
)


class RecordingOutputs:
    """Stands in for the OutputProducer: records what ``send_soon`` was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send_soon(self, topic: str, key: Any, value: Any, partition: int = -1, callback: Any = None) -> None:
        self.sent.append((topic, key, value, partition))


def rocks_table(tmp_path: Path, memory: RocksMemory, name: str = "identities") -> tuple[faust.Table, Any]:
    app = faust.App(
        "rocks-unit",
        broker="kafka://127.0.0.1:1",
        store="rocksdb://",
        datadir=str(tmp_path),
        autodiscover=False,
    )
    outputs = RecordingOutputs()
    table = output_changelog_table(app, outputs, name, rocks=memory, partitions=4, value_type=bytes)  # type: ignore[arg-type]
    return table, outputs


@pytest.fixture
def memory() -> RocksMemory:
    return rocks_memory(block_cache_mb=8, write_buffer_mb=8, max_open_files=64)


async def test_a_write_lands_on_its_changelog_partition_and_is_read_from_any(tmp_path: Path, memory) -> None:
    table, outputs = rocks_table(tmp_path, memory)
    store = table.data
    assert isinstance(store, PartitionedRocksStore)

    async def handle() -> None:  # the tail watch's case: no Faust event, a partition given
        table["anon-1"] = b'{"email":"a@example.com"}'

    with writes_to_partition(3):
        await asyncio.create_task(handle())
    assert outputs.sent == [("rocks-unit-identities-changelog", b'"anon-1"', b'{"email":"a@example.com"}', 3)]
    assert store._dbs[3].get(b'"anon-1"') == b'{"email":"a@example.com"}'  # where recovery puts it
    with writes_to_partition(1):  # a batch planned under another partition's record still finds it
        assert store.get("anon-1") == b'{"email":"a@example.com"}'
        assert "anon-1" in store
        assert store.get("anon-2") is None
    assert store.get("anon-1") == b'{"email":"a@example.com"}'
    await store.stop()


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
