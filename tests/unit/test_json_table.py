"""Table values as compact JSON bytes: dicts in and out, one shared encoding per stored value."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.types import TP
from faust.utils import json as faust_json
from hypothesis import given, settings
from hypothesis import strategies as st

from signal_sync.planner import remember
from signal_sync.streams.json_table import JsonValues, compact_json
from signal_sync.streams.rocksdb_store import rocks_memory
from tests.unit.factories import event

TRAITS = {"email": "jane@example.com", "first_name": "Jane", "plan": "pro"}


def test_values_round_trip_and_missing_keys_give_the_default() -> None:
    table: dict[str, bytes] = {}
    values = JsonValues(table)
    values["anon:a1"] = TRAITS
    assert values["anon:a1"] == TRAITS and values.get("anon:a1") == TRAITS
    assert values.get("anon:nobody") is None and values.get("anon:nobody", {}) == {}
    assert isinstance(table["anon:a1"], bytes) and len(values) == 1 and list(values) == ["anon:a1"]
    del values["anon:a1"]
    assert "anon:a1" not in table


def test_values_an_older_worker_wrote_to_the_changelog_are_read_back() -> None:
    """Before, Faust's json serializer wrote the dicts; now the raw bytes are orjson's JSON."""
    table = {"k": faust_json.dumps(TRAITS)}  # bytes, as Faust wrote them
    assert JsonValues(table).get("k") == TRAITS
    JsonValues(table)["k"] = TRAITS
    assert faust_json.loads(table["k"]) == TRAITS


def test_identity_keys_of_one_event_share_one_encoded_value() -> None:
    table: dict[str, bytes] = {}
    remember(JsonValues(table), event(type="identify", anonymousId="a1", userId="u1", traits=TRAITS), TRAITS)
    assert len(table) >= 2
    first, *others = table.values()
    assert all(other is first for other in others)
    assert orjson.loads(first) == TRAITS


def test_a_new_value_under_the_same_content_is_encoded_afresh() -> None:
    table: dict[str, bytes] = {}
    values = JsonValues(table)
    values["a"] = {"plan": "pro"}
    values["b"] = {"plan": "team"}  # a different object: never the cached bytes of the previous one
    assert values["a"] == {"plan": "pro"} and values["b"] == {"plan": "team"}


class CountingTable(dict[str, bytes]):
    """A table that counts writes: each would be a changelog record in Faust."""

    writes = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def test_writing_the_value_already_stored_writes_nothing() -> None:
    table = CountingTable()
    values = JsonValues(table)
    values["a"] = {"plan": "pro"}
    values["a"] = {"plan": "pro"}  # same content, new object: no changelog record
    assert table.writes == 1
    values["a"] = {"plan": "team"}
    assert table.writes == 2 and values["a"] == {"plan": "team"}


def test_compact_json_does_not_keep_orjsons_write_buffer() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [compact_json({"plan": "pro", "n": n}) for n in range(1000)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_value < 200, f"{per_value:.0f} bytes per small value"


def test_reads_go_to_a_faust_tables_store_without_the_tables_lookup_path() -> None:
    """The table's own ``get`` calls the sensors and raises a KeyError per unknown key."""
    table = faust.App("json-table-test", store="memory://").Table("t", value_type=bytes)
    table.data["k"] = compact_json(TRAITS)  # the store: what recovery fills

    def no_lookup_through_the_table(key: str) -> None:
        raise AssertionError(f"read {key!r} through the table")

    table.on_key_get = no_lookup_through_the_table  # type: ignore[method-assign]
    values = JsonValues(table)
    assert values.get("k") == TRAITS and values["k"] == TRAITS
    assert values.get("unknown") is None


def test_a_value_whose_changelog_record_would_be_too_large_is_refused_and_nothing_is_stored() -> None:
    from signal_sync.streams.json_table import ValueTooLargeError

    table: dict[str, bytes] = {}
    values = JsonValues(table, max_record_bytes=1_000)
    values["a:small"] = TRAITS
    with pytest.raises(ValueTooLargeError) as refused:
        values["a:big"] = {"bio": "x" * 1_000}
    assert refused.value.limit == 1_000 and refused.value.size > 1_000
    with pytest.raises(ValueTooLargeError):  # the key counts too, as Faust serializes it
        values["u:" + "\U0001f600" * 300] = TRAITS
    assert set(table) == {"a:small"}


async def test_a_write_after_a_read_of_a_rocksdb_table_does_not_read_the_key_again(tmp_path) -> None:
    from signal_sync.streams.changelog import writes_to_partition
    from tests.unit.test_rocksdb_store import rocks_table

    table, outputs = rocks_table(tmp_path, rocks_memory(8, 8, 64))
    store, reads = table.data, []
    values = JsonValues(table)
    with writes_to_partition(1):
        values["a"] = {"plan": "pro"}
        read = store._get
        store._get = lambda key: reads.append(key) or read(key)  # type: ignore[method-assign]
        assert values.get("a") == {"plan": "pro"} and values.get("b") is None
        values["a"] = {"plan": "pro"}  # unchanged: no record, no second read
        values["b"] = {"plan": "team"}
        values["b"] = {"plan": "team"}  # the bytes it wrote are what is stored
        del values["b"]
        values["b"] = {"plan": "team"}
    assert reads == [b'"a"', b'"b"']
    assert [(key, value) for _, key, value, _ in outputs.sent] == [
        (b'"a"', b'{"plan":"pro"}'),
        (b'"b"', b'{"plan":"team"}'),
        (b'"b"', None),
        (b'"b"', b'{"plan":"team"}'),
    ]
    await store.stop()


async def test_a_change_made_outside_the_view_after_its_read_is_never_taken_for_the_stored_value(
    tmp_path,
) -> None:
    from signal_sync.streams.changelog import writes_to_partition
    from tests.unit.test_rocksdb_store import changelog_record, rocks_table

    table, outputs = rocks_table(tmp_path, rocks_memory(8, 8, 64))
    values = JsonValues(table)
    with writes_to_partition(1):
        values["a"] = {"plan": "pro"}
        values["b"] = {"plan": "pro"}
        assert values.get("a") == {"plan": "pro"} and values.get("b") == {"plan": "pro"}
        table.data["a"] = b'{"plan":"team"}'  # on the table itself, not through the view
        table.data.apply_changelog_batch([changelog_record(1, 9, b'"b"', b"{}")], None, None)
        sent = len(outputs.sent)
        values["a"] = {"plan": "pro"}
        values["b"] = {"plan": "pro"}
    assert [key for _, key, _, _ in outputs.sent[sent:]] == [b'"a"', b'"b"']
    assert values.get("a") == {"plan": "pro"} and values.get("b") == {"plan": "pro"}
    await table.data.stop()


KEYS = ("a", "b", "c", "d")
VIEW_VALUES = st.fixed_dictionaries({"plan": st.sampled_from(["pro", "team", "free"])})
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.sampled_from(KEYS)),
        st.tuples(st.just("write"), st.sampled_from(KEYS), VIEW_VALUES),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("outside write"), st.sampled_from(KEYS), VIEW_VALUES),
        st.tuples(st.just("recovered"), st.sampled_from(KEYS), st.none() | VIEW_VALUES),
        st.tuples(st.just("revoke"), st.sampled_from([0, 1])),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS)
def test_a_rocksdb_table_read_through_the_view_always_gives_what_is_stored(
    steps: list[tuple[Any, ...]],
) -> None:
    """Reads, writes and deletes through the view, mixed with changes it never sees (writes on the
    table itself, recovered changelog records, a partition revoked and taken up again by a write):
    every read gives what a plain mapping of the same changes holds."""
    from signal_sync.streams.changelog import writes_to_partition
    from tests.unit.test_rocksdb_store import CHANGELOG, changelog_record, rocks_table

    def partition(key: str) -> int:
        return KEYS.index(key) % 2

    with tempfile.TemporaryDirectory() as directory:
        table, _ = rocks_table(Path(directory), rocks_memory(8, 8, 64))
        store = table.data
        values = JsonValues(table)
        stored: dict[str, Any] = {}
        held: set[int] = set()
        offset = 0
        try:
            for step in steps:
                kind, key = step[0], step[1]
                if kind == "revoke":  # its recovery never completed: taken up again, it starts empty
                    store.revoke_partitions(table, {TP(CHANGELOG, key)})
                    held.discard(key)
                    stored = {k: v for k, v in stored.items() if partition(k) != key}
                    continue
                visible = {k: v for k, v in stored.items() if partition(k) in held}
                if kind == "read":
                    assert values.get(key) == visible.get(key), (key, steps)
                    continue
                with writes_to_partition(partition(key)):
                    if kind == "write":
                        values[key] = stored[key] = step[2]
                    elif kind == "delete":
                        if key in visible:
                            del values[key]
                            del stored[key]
                        continue
                    elif kind == "outside write":
                        table.data[key] = compact_json(step[2])
                        stored[key] = step[2]
                    else:  # recovered
                        offset += 1
                        raw = None if step[2] is None else compact_json(step[2])
                        record = changelog_record(partition(key), offset, faust_json.dumps(key), raw)
                        store.apply_changelog_batch([record], None, None)
                        if raw is None:
                            stored.pop(key, None)
                        else:
                            stored[key] = step[2]
                held.add(partition(key))
        finally:
            store._close()
