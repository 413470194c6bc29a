"""Per-contact table values kept as compact JSON bytes rather than dicts.

The identities and destination-state tables hold one small dict per contact. With 100k contacts
in the in-memory store those dicts were about 125 MB of a worker's memory; the same values
as JSON bytes take about 70 MB (measured over the 1M-event benchmark input). Reads decode
(a few microseconds with orjson), writes encode once per value even when several identity
keys share it, and a write of the value already stored is skipped (it would cost a changelog
record).

Whether the value is already stored is known without reading the key again when it was read
since the store last changed: a store that counts its changes (``generation``, the rocksdb://
store) lets this view keep the bytes it read and wrote while the count is the one it last saw
(its own writes move it along); any other change (recovery, a rebalance, a delete made on the
table itself) forgets them, and the key is read again. A store without a count (the in-memory
store, whose read is a dict lookup) is always read again.

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

KEPT_READS = 4096
"""Most read values kept for a later write's check; more and they are forgotten (read again)."""


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
        self._seen: dict[str, bytes | None] = {}
        """Stored bytes by key (None: absent) as of the store's ``_seen_at`` generation."""
        self._seen_at: int | None = None

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

    def _read(self, key: str) -> bytes | None:
        """The stored bytes, kept for a later write's check when the store counts its changes."""
        stored = self._stored()
        raw = stored.get(key)
        generation = getattr(stored, "generation", None)
        if generation is not None:
            seen = self._seen
            if generation != self._seen_at or len(seen) >= KEPT_READS:
                seen.clear()
                self._seen_at = generation
            seen[key] = raw
        return raw

    def _stored_now(self, key: str) -> bytes | None:
        """What the store holds under ``key``: the bytes kept, while nothing else changed it since."""
        stored = self._stored()
        if self._seen_at is not None and self._seen_at == getattr(stored, "generation", None):
            seen = self._seen
            if key in seen:
                return seen[key]
        return stored.get(key)

    def _wrote(self, key: str, raw: bytes | None, before: int | None) -> None:
        """After this view's write of ``key`` (made at the store's generation ``before``): the kept
        bytes still hold when they held before and the write was the store's one change (not also,
        say, a partition that became readable), else they are forgotten."""
        if before is None:
            return
        after = getattr(self._stored(), "generation", None)
        if before == self._seen_at and after == before + 1:
            self._seen[key] = raw
            self._seen_at = after
        else:
            self._seen.clear()
            self._seen_at = None

    def __getitem__(self, key: str) -> Any:
        raw = self._read(key)
        if raw is None:
            raise KeyError(key)
        return orjson.loads(raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._read(key)
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
        if self._stored_now(key) != encoded:
            before = getattr(self._stored(), "generation", None)
            self.table[key] = encoded
            self._wrote(key, encoded, before)

    def __delitem__(self, key: str) -> None:
        before = getattr(self._stored(), "generation", None)
        del self.table[key]
        self._wrote(key, None, before)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
