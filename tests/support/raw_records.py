"""Reading a topic's records as the bytes the broker holds (framed values that are not JSON)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError


def read_values(
    bootstrap: str, topic: str, count: int, timeout: float, check: Callable[[], None] = lambda: None
) -> list[bytes | None]:
    """The values of ``topic``'s records, read from the start with a new consumer group until there
    are ``count`` or the deadline passes (``check`` runs at every poll: a dead worker fails it)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    values: list[bytes | None] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.subscribe([topic])
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            check()
            if message is None:
                continue
            if message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                continue
            values.append(message.value())
    finally:
        consumer.close()
    return values
