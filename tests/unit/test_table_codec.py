"""``TableCodec``: a table's key and value bytes are Faust's, for every key and value, and the store
and changelog writes of the worker's tables go through it."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.runtime import create_runtime
from signal_sync.streams.changelog import writes_to_partition
from signal_sync.streams.table_codec import TableCodec
from tests.unit.factories import settings

APP = faust.App("table-codec-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
TABLE = TableCodec(APP, None, "json", bytes, "raw")
OTHER = TableCodec(APP, None, "raw", None, "json")  # not the worker's tables' codecs: the registry's path
KEYS = st.one_of(st.text(), st.binary(), st.integers(), st.none())


def registry_key(key: Any, serializer: str) -> bytes | None:
    return APP.serializers.dumps_key(None, key, serializer=serializer)


@given(KEYS)
def test_keys_are_faust_s_bytes(key: Any) -> None:
    for codec, serializer in ((TABLE, "json"), (OTHER, "raw")):
        try:
            expected: Any = registry_key(key, serializer)
        except Exception as exc:  # what Faust cannot encode, neither can the codec
            expected = type(exc)
        try:
            got: Any = codec.dumps_key(key)
        except Exception as exc:
            got = type(exc)
        assert got == expected


@given(st.one_of(st.binary(), st.text(), st.dictionaries(st.text(), st.integers(-(2**63), 2**63 - 1))))
def test_values_are_faust_s_bytes_both_ways(value: Any) -> None:
    registry = APP.serializers
    assert TABLE.dumps_value(value) == registry.dumps_value(bytes, value, serializer="raw")
    assert OTHER.dumps_value(value) == registry.dumps_value(None, value, serializer="json")
    encoded = registry.dumps_value(bytes, value, serializer="raw")
    assert TABLE.loads_value(encoded) == registry.loads_value(bytes, encoded, serializer="raw")
    assert TABLE.loads_value(None) is None


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def send_soon(self, topic: str, key: Any, value: Any, partition: int = -1, callback: Any = None) -> None:
        self.records.append((topic, key, value, partition))


class Counting(TableCodec):
    """Counts the keys it encodes (to see that Faust's store calls reach it)."""

    __slots__ = ()
    calls = 0

    def dumps_key(self, key: Any) -> bytes | None:
        Counting.calls += 1
        return super().dumps_key(key)


@given(st.dictionaries(st.text(min_size=1), st.binary(), min_size=1, max_size=8))
def test_the_worker_tables_store_and_changelog_use_faust_s_bytes(values: dict[str, bytes]) -> None:
    """Canary: Faust's store reads and writes call ``_encode_key``, ``_encode_value`` and
    ``_decode_value`` (the ``rocksdb://`` store's overrides), and a write's changelog record is the one
    Faust's topic would prepare."""

    async def scenario() -> None:
        runtime = create_runtime(settings(), partitions=2)
        table = runtime.identities.table
        store = table.data
        store.codec.__class__ = Counting
        table.outputs = Sent()
        topic = table.changelog_topic
        before = Counting.calls
        with writes_to_partition(1):
            for key, value in values.items():
                table[key] = value
        expected = [
            (topic.get_topic_name(), topic.prepare_key(key, None)[0], topic.prepare_value(value, None)[0], 1)
            for key, value in values.items()
        ]
        assert table.outputs.records == expected
        assert {key: store.get(key) for key in values} == values
        assert Counting.calls - before >= 2 * len(values), "Faust's store no longer calls _encode_key"

    asyncio.run(scenario())
