"""A worker runtime for unit tests of the agents' functions: Faust's app is built (it connects
nowhere), the tables are dicts, and the output producer records what it is handed."""

from __future__ import annotations

from typing import Any

import orjson

from signal_sync.dead_letters import Letter, read_letter
from signal_sync.engine.forwarder import Forwarder
from signal_sync.runtime import Runtime, create_runtime
from signal_sync.streams.json_table import JsonValues
from signal_sync.streams.output_producer import Headers, check_fits
from tests.unit.factories import settings


class RecordingOutputs:
    """Stands in for the ``OutputProducer``: one record limit for every topic, and what was sent."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.default_limit = limit
        self.records: list[tuple[str, bytes | None, bytes | None, int, Headers | None, int | None]] = []
        """topic, key, value, partition, headers, timestamp_ms"""
        self.refuse: BaseException | None = None
        """When set, every send raises it (a producer that lost its broker for good)."""

    def record_limit(self, topic: str) -> int:
        return self.default_limit

    def check(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        check_fits(topic, key, value, headers, self.record_limit(topic))

    def send_soon(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        *,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.check(topic, key, value, headers)
        self.records.append((topic, key, value, partition, headers, timestamp_ms))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        *,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        self.send_soon(topic, key, value, partition, headers=headers, timestamp_ms=timestamp_ms)

    waiting = 0
    """Records waiting for room: none, every record is taken at once."""

    async def room(self) -> None:
        return None

    def on(self, topic: str) -> list[dict[str, Any]]:
        """The JSON records sent to ``topic``."""
        return [orjson.loads(record[2] or b"") for record in self.records if record[0] == topic]

    def letters(self, topic: str) -> list[Letter]:
        """The dead letters sent to ``topic``, read back."""
        letters = [
            read_letter(key, value, headers, stamp)
            for name, key, value, _, headers, stamp in self.records
            if name == topic
        ]
        assert all(letter is not None for letter in letters), "every record on the topic is a dead letter"
        return letters  # type: ignore[return-value]


class Stops:
    """Records ``Runtime.stop_worker`` calls."""

    def __init__(self) -> None:
        self.reasons: list[BaseException] = []

    async def __call__(self, reason: BaseException) -> None:
        self.reasons.append(reason)


def fake_runtime(limit: int = 1_000_000, state_limit: int | None = None) -> tuple[Runtime, RecordingOutputs]:
    """A runtime whose records go to a ``RecordingOutputs`` (each at most ``limit`` bytes) and whose
    ``stop_worker`` is a ``Stops``."""
    runtime = create_runtime(settings(), partitions=1)
    outputs = RecordingOutputs(limit)
    runtime.outputs = outputs  # type: ignore[assignment]
    runtime.forwarder = Forwarder(
        outputs,  # type: ignore[arg-type]
        dict(runtime.forwarder.topics),
        partitions=1,
        max_items=500,
    )
    runtime.identities = JsonValues({}, limit)
    runtime.destination_state = JsonValues({}, state_limit or limit)
    runtime.stop_worker = Stops()  # type: ignore[method-assign]
    return runtime, outputs
