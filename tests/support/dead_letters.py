"""Reading dead letters back from Kafka in integration tests, and writing some to replay."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from signal_sync.dead_letters import DeadLetterRecord, Letter, read_letter
from signal_sync.streams.records import DeadLetterHeaders


@dataclass(frozen=True)
class Stored:
    """A record of the dead-letter topic as a consumer sees it, and the letter read from it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None
    letter: Letter

    @property
    def context(self) -> dict[str, str]:
        return self.letter.context

    def get(self, name: str) -> str | None:
        """An error header by its short name (``reason``: ``signal_sync.reason``)."""
        return self.letter.context.get(f"signal_sync.{name}")


def stored_letter(message: Message) -> Stored:
    """A consumed record of the dead-letter topic and the letter read from it; it must be a dead
    letter."""
    kind, stamp = message.timestamp()
    timestamp_ms = stamp if kind else None
    headers = tuple(message.headers() or ())
    letter = read_letter(message.key(), message.value(), headers, timestamp_ms)
    assert letter is not None and not letter.legacy, f"not a dead letter: {message.value()!r:.200}"
    return Stored(message.key(), message.value(), headers, timestamp_ms, letter)


def consume_letters(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Stored]], bool],
    timeout: float,
    check: Callable[[], None] = lambda: None,
) -> list[Stored]:
    """Read the dead-letter topic from the start until ``done(letters)`` or the deadline; every record
    must be a dead letter whose headers follow ``DeadLetterHeaders``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 8 * 1024 * 1024,
        }
    )
    consumer.subscribe([topic])
    letters: list[Stored] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(letters):
            message = consumer.poll(0.5)
            check()
            if message is None or message.error():
                continue
            stored = stored_letter(message)
            DeadLetterHeaders.model_validate(stored.context)
            letters.append(stored)
    finally:
        consumer.close()
    return letters


def produce_records(
    bootstrap: str, topic: str, records: list[DeadLetterRecord | dict[str, Any]]
) -> list[tuple[int, int]]:
    """Write records to ``topic`` in order: ``DeadLetterRecord``s, or ``Producer.produce`` keyword
    arguments. Returns each record's (partition, offset)."""
    errors: list[str] = []
    positions: list[tuple[int, int]] = [(-1, -1)] * len(records)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    def report(n: int) -> Callable[[Any, Any], None]:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                positions[n] = (message.partition(), message.offset())

        return delivered

    for n, record in enumerate(records):
        fields = (
            record
            if isinstance(record, dict)
            else {
                "key": record.key,
                "value": record.value,
                "headers": record.headers,
                "timestamp": record.timestamp_ms or 0,
            }
        )
        producer.produce(topic, on_delivery=report(n), **fields)
        producer.poll(0)
    assert producer.flush(30) == 0, "records not flushed"
    assert not errors, errors[:3]
    return positions
