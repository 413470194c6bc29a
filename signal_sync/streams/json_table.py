"""Per-contact table values kept as compact JSON bytes rather than dicts.

The identities and destination-state tables hold one small dict per contact. With 100k contacts
in the in-memory store those dicts were about 125 MB of a worker's memory; the same values
as JSON bytes take about 70 MB (measured over the 1M-event benchmark input). Reads decode
(a few microseconds with orjson), writes encode once per value even when several identity
keys share it, and a write of the value already stored is skipped (it would cost a changelog
record).

The changelog values are JSON as before (Faust wrote them with its json serializer; the
tables' value type is ``bytes``, i.e. raw), so a changelog written by an older worker
recovers unchanged.

Each write is a changelog record, so a value whose record would be larger than the changelog
topic accepts (``max_record_bytes``) is refused with ``ValueTooLargeError`` before anything is
stored: the caller decides what that means (the identity stage keeps what it knew, the Mailgun
agent says so in the event's outcome) instead of a record the broker refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import orjson
from faust.utils import json as faust_json


class ValueTooLargeError(ValueError):
    """A table value whose changelog record would be too large; nothing was stored."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a table value of {size} bytes (with its key) is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


def compact_json(value: Any) -> bytes:
    """``orjson.dumps(value)`` in a bytes object of its own size: orjson's result keeps the
    4 KiB buffer it was written into, which is most of the memory of a small kept value."""
    return bytes(memoryview(orjson.dumps(value)))


class JsonValues(MutableMapping[str, Any]):
    """A dict-like view of a table whose values are JSON bytes: dicts in, dicts out."""

    def __init__(self, table: MutableMapping[str, bytes], max_record_bytes: int | None = None) -> None:
        """``max_record_bytes``: the most bytes of key and value one changelog record may have."""
        self.table = table
        self.max_record_bytes = max_record_bytes
        self._last: tuple[Any, bytes] = (None, b"null")
        self._reads: Mapping[str, bytes] | None = None

    def _stored(self) -> Mapping[str, bytes]:
        """Where values are read: a Faust table's store (the in-memory store's dict itself) rather
        than the table, whose ``get`` calls the sensors and raises and catches a KeyError for each
        unknown key (~4% of the worker's CPU in the benchmark). Faust keeps one store per table."""
        if self._reads is None:
            store = getattr(self.table, "data", self.table)
            self._reads = getattr(store, "data", store)
        return self._reads

    def stored(self) -> Mapping[str, bytes]:
        """The stored JSON bytes by key, undecoded (for a search over every value)."""
        return self._stored()

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self._stored()[key])

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._stored().get(key)
        return default if raw is None else orjson.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        # The planner stores one value under each of an event's identity keys: encode it once and
        # let the keys share the bytes. Holding the value keeps its identity from being reused;
        # stored values are never changed in place (planner.remember, build_request make new ones).
        if value is not self._last[0]:
            self._last = (value, compact_json(value))
        encoded = self._last[1]
        limit = self.max_record_bytes
        # The key goes out as Faust's JSON: n characters take at most 12n + 2 bytes (a character
        # outside the BMP escaped as a surrogate pair); measured only when that bound is too much.
        if limit is not None and len(encoded) + 12 * len(key) + 2 > limit:
            size = len(encoded) + len(faust_json.dumps(key))
            if size > limit:
                raise ValueTooLargeError(size, limit)
        # A write is a changelog record (a Kafka send): skip it when the value did not change.
        if self._stored().get(key) != encoded:
            self.table[key] = encoded

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
