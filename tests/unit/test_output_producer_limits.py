"""The output producer refuses a record its topic would refuse, before anything is queued."""

from __future__ import annotations

import pytest

from signal_sync.streams.output_producer import (
    DEFAULT_MESSAGE_MAX_BYTES,
    HEADER_OVERHEAD_BYTES,
    RECORD_OVERHEAD_BYTES,
    OutputProducer,
    RecordTooLargeError,
    record_size,
)

NOWHERE = {"bootstrap.servers": "127.0.0.1:1"}


def test_a_topics_limit_is_the_smaller_of_its_own_and_the_producers_less_the_overhead() -> None:
    producer = OutputProducer(NOWHERE, {"small": 2_000, "large": 5_000_000})
    assert producer.record_limit("small") == 2_000 - RECORD_OVERHEAD_BYTES
    assert producer.record_limit("large") == DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES
    assert producer.record_limit("unknown") == DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES
    assert OutputProducer({**NOWHERE, "message.max.bytes": 3_000}).record_limit("x") == 3_000 - 1024


def test_batches_are_bounded_by_the_strictest_topic() -> None:
    producer = OutputProducer(NOWHERE, {"small": 2_000, "large": 5_000_000})
    assert producer._config["batch.size"] == 2_000
    assert "batch.size" not in OutputProducer(NOWHERE, {"default": 1_048_588})._config


async def test_an_oversize_record_is_refused_synchronously_with_nothing_queued() -> None:
    producer = OutputProducer(NOWHERE, {"small": 2_000})
    limit = producer.record_limit("small")
    with pytest.raises(RecordTooLargeError) as refused:
        producer.send_soon("small", b"key", b"x" * (limit - 2))
    assert (refused.value.topic, refused.value.size, refused.value.limit) == ("small", limit + 1, limit)
    with pytest.raises(RecordTooLargeError):
        await producer.send("small", None, b"x" * (limit + 1))
    assert producer._client is None and producer.waiting == 0, "nothing was handed to librdkafka"
    producer.check("small", b"k", b"x" * (limit - 1))  # fits exactly


def test_headers_count_towards_a_records_size() -> None:
    producer = OutputProducer(NOWHERE, {"small": 2_000})
    limit = producer.record_limit("small")
    headers = [("name", b"value"), ("null", None)]
    added = len("name") + len("value") + len("null") + 2 * HEADER_OVERHEAD_BYTES
    assert record_size(b"k", b"v", headers) == 2 + added
    producer.check("small", b"k", b"x" * (limit - 1 - added), headers)  # fits exactly
    with pytest.raises(RecordTooLargeError):
        producer.send_soon("small", b"k", b"x" * (limit - added), headers=headers)
    assert producer._client is None and producer.waiting == 0
