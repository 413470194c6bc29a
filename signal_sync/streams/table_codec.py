"""Table keys and values encoded as Faust encodes them, without its serializer registry per call.

Faust encodes a table's key on every read and write of its store and again for the write's changelog
record, and a value on every write and read, each through its serializer registry: several lookups
and calls, about 2 µs a key, and an event makes about four reads and two or three writes. The
worker's tables have text keys under Faust's ``json`` codec and ``bytes`` values under ``raw``:
``TableCodec`` encodes those with the codec object the registry ends up calling, so the bytes are
Faust's (existing stores and changelogs read the same), and hands anything else to the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.serializers import codecs


class TableCodec:
    """Encodes one table's keys and values (its key and value types and serializers)."""

    __slots__ = (
        "_json_key",
        "_raw_values",
        "_registry",
        "key_serializer",
        "key_type",
        "value_serializer",
        "value_type",
    )

    def __init__(
        self, app: Any, key_type: Any, key_serializer: Any, value_type: Any, value_serializer: Any
    ) -> None:
        self._registry = app.serializers
        self.key_type = key_type
        self.key_serializer = key_serializer
        self.value_type = value_type
        self.value_serializer = value_serializer
        self._json_key: Callable[[Any], bytes] | None = (
            codecs.get_codec("json").dumps if key_type is None and key_serializer == "json" else None
        )
        self._raw_values = value_type is bytes and value_serializer == "raw"

    def dumps_key(self, key: Any) -> bytes | None:
        if self._json_key is not None and type(key) is str:
            return self._json_key(key)
        return self._registry.dumps_key(self.key_type, key, serializer=self.key_serializer)

    def dumps_value(self, value: Any) -> bytes | None:
        if self._raw_values and type(value) is bytes:
            return value
        return self._registry.dumps_value(self.value_type, value, serializer=self.value_serializer)

    def loads_value(self, value: bytes | None) -> Any:
        if self._raw_values and type(value) is bytes:
            return value
        return self._registry.loads_value(self.value_type, value, serializer=self.value_serializer)
