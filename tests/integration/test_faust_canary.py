"""Canaries on the real broker: a running Faust app still goes through the names we patch.

tests/unit/test_faust_canary.py runs Faust's fetch loop and commit path on a consumer fed by a
stand-in; here a real Faust app (the worker's patches installed, as ``create_runtime`` installs
them) joins a group on the session's broker, an agent consumes real records, and Faust's own
commit is checked to await the output producer's flush before the offsets reach the broker; the
aiokafka consumer Faust built when it started is checked to carry the fetch settings and its group
membership task to be the one the worker watches.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer, TopicPartition
from faust.transport.consumer import Consumer
from mode.threads import WorkerThread

from signal_sync.streams.faust_fixes import (
    AppLoopConsumerService,
    ConsumerSettings,
    _never_skip,
    consume_on_app_loop,
    coordination_task,
    deliver_fetched_records_eagerly,
    never_commit_past_unread_offsets,
)
from signal_sync.streams.output_producer import flush_with_faust

pytestmark = pytest.mark.integration

RECORDS = 5
FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS = 4_096, 80


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0, as the broker has it (-1001: none)."""
    return await asyncio.to_thread(committed_offset, bootstrap, group, topic)


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


class CanaryApp:
    """A running Faust app with the worker's patches, one agent on ``topic``, and a log of steps."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic
        self.handled: list[bytes] = []
        self.steps: list[str] = []
        self.stopped_for: list[BaseException] = []

    async def stop(self, reason: BaseException) -> None:
        self.stopped_for.append(reason)


@pytest.fixture
async def canary_app(kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path) -> AsyncIterator[CanaryApp]:
    never_commit_past_unread_offsets()
    deliver_fetched_records_eagerly()
    topic = kafka_topics("canary", partitions=1)
    app = faust.App(
        f"canary-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{kafka_bootstrap}",
        autodiscover=False,
        web_enabled=False,
        store="memory://",
        datadir=str(tmp_path / "faust"),
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=3600,  # only the test commits
    )
    canary = CanaryApp(app, topic)
    consume_on_app_loop(app, ConsumerSettings(FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS, canary.stop))

    async def outputs_flush() -> None:
        await asyncio.sleep(0.2)  # a flush that takes a while: the commit must wait for it
        canary.steps.append("outputs flushed")

    flush_with_faust(app, outputs_flush)

    @app.agent(app.topic(topic, key_serializer="raw", value_serializer="raw"))
    async def handle(stream: Any) -> None:
        async for value in stream:
            canary.handled.append(value)

    await app.start()
    try:
        yield canary
    finally:
        await asyncio.wait_for(app.stop(), 60)


def log_end(bootstrap: str, topic: str, isolation: str) -> int:
    """Partition 0's end offset for a consumer of this ``isolation.level``: the high watermark for
    ``read_uncommitted``; for ``read_committed`` the last stable offset, which stays at a
    transaction's first record until the transaction's marker is in the partition."""
    consumer = KafkaConsumer(
        {"bootstrap.servers": bootstrap, "group.id": "canary", "isolation.level": isolation}
    )
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, count: int, transactional: bool = False) -> None:
    """``count`` records to partition 0; ``transactional``: in one committed transaction, whose
    commit marker takes an offset of its own that no consumer ever receives, right after its
    records: this returns once the marker is in the partition."""
    config = {"bootstrap.servers": bootstrap}
    first = log_end(bootstrap, topic, "read_uncommitted") if transactional else 0
    if transactional:
        config["transactional.id"] = f"canary-{uuid.uuid4().hex}"
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    for n in range(count):
        producer.produce(topic, value=f"record-{n}".encode(), key=b"k", partition=0)
    if transactional:
        producer.commit_transaction(30)
    assert producer.flush(30) == 0
    if transactional:
        # commit_transaction returns once the coordinator has logged the decision; the broker
        # appends the marker to the partition after that (on a fresh broker only once the
        # coordinator has opened its marker channel), so records produced meanwhile would take
        # the offsets before the marker. The last stable offset passes the records and the
        # marker only once the marker is in.
        deadline = time.monotonic() + 30
        while log_end(bootstrap, topic, "read_committed") != first + count + 1:
            assert time.monotonic() < deadline, "the transaction's commit marker never reached the partition"
            time.sleep(0.05)


async def test_faust_s_commit_awaits_the_output_producer_s_flush(
    canary_app: CanaryApp, kafka_bootstrap: str
) -> None:
    app, topic, steps = canary_app.app, canary_app.topic, canary_app.steps
    produce(kafka_bootstrap, topic, RECORDS)
    await until(lambda: len(canary_app.handled) == RECORDS, "the agent to handle every record")

    consumer = app.consumer
    commit_to_broker: Callable[[Any], Awaitable[bool]] = consumer._commit

    async def spy(offsets: Any) -> bool:
        steps.append(f"commit {sorted((tp.topic, tp.partition, offset) for tp, offset in offsets.items())}")
        done = await commit_to_broker(offsets)
        steps.append("committed")
        return done

    consumer._commit = spy  # type: ignore[method-assign]
    group = app.conf.id
    # Faust acks a record once its agent asks for the next one: commit until all of them are.
    deadline = time.monotonic() + 30
    while not await consumer.commit() or await committed(kafka_bootstrap, group, topic) != RECORDS:
        assert time.monotonic() < deadline, f"never committed {RECORDS}: {steps}"
        await asyncio.sleep(0.1)
    last = len(steps) - 1 - steps[::-1].index("outputs flushed")
    assert steps[last:] == ["outputs flushed", f"commit {[(topic, 0, RECORDS)]}", "committed"], steps


async def test_the_consumer_faust_starts_fetches_with_the_configured_settings(canary_app: CanaryApp) -> None:
    aiokafka_consumer = canary_app.app.consumer._thread._consumer  # built by Faust's own start
    fetcher = aiokafka_consumer._fetcher
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS)


async def test_the_consumer_runs_on_the_app_s_loop_and_stops_with_the_app(canary_app: CanaryApp) -> None:
    """``consume_on_app_loop``: aiokafka's consumer (its group membership, its fetches) runs on the
    app's loop, no consumer thread is running, and the app's stop closes the consumer."""
    app = canary_app.app
    service = app.consumer._thread
    assert isinstance(service, AppLoopConsumerService)
    await until(lambda: bool(app.consumer.assignment()), "the app to join its group")
    aiokafka_consumer = service._consumer
    membership = coordination_task(aiokafka_consumer)
    assert membership.get_loop() is asyncio.get_running_loop()
    assert [t for t in threading.enumerate() if isinstance(t, WorkerThread) and t.service is service] == []
    await asyncio.wait_for(app.stop(), 60)
    assert aiokafka_consumer._closed
    assert membership.done()


async def test_the_membership_task_the_worker_watches_is_the_running_consumer_s(
    canary_app: CanaryApp,
) -> None:
    """aiokafka keeps the group membership in ``_coordinator._coordination_task``: the worker stops
    when it fails (``ConsumerSettings.on_membership_lost``; tests/integration/test_static_membership.py has
    it fail), so a renamed or moved task must fail here, not leave a worker running without
    partitions."""
    await until(lambda: bool(canary_app.app.consumer.assignment()), "the app to join its group")
    task = coordination_task(canary_app.app.consumer._thread._consumer)
    assert not task.done()
    assert canary_app.stopped_for == []


async def test_a_running_app_never_commits_past_an_offset_it_did_not_hand_out(
    canary_app: CanaryApp, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction's commit marker is an offset without a record: the fetch loop sees 3, then 5,
    and reports the jump through ``_add_gap``. Faust's own ``_add_gap`` marks 4 done, so the next
    commit passes it; with the patch the commit stops at 4. Records Faust skipped around a
    rebalance are such a jump too, and they do exist."""
    app, topic = canary_app.app, canary_app.topic
    installed = Consumer._add_gap
    assert installed is _never_skip
    jumps: list[tuple[int, int]] = []

    async def spy(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
        jumps.append((offset_from, offset_to))
        await installed(self, tp, offset_from, offset_to)

    monkeypatch.setattr(Consumer, "_add_gap", spy)
    produce(kafka_bootstrap, topic, 3)  # offsets 0..2
    produce(kafka_bootstrap, topic, 1, transactional=True)  # 3, and its commit marker at 4
    produce(kafka_bootstrap, topic, 2)  # 5, 6
    # The agent asks for record 6 only after acking 5: once 6 is handled, 0..3 and 5 are acked.
    await until(lambda: len(canary_app.handled) == 6, "the agent to handle every record")
    assert jumps == [(4, 5)]  # the running app's fetch loop called the patched name
    assert await app.consumer.commit()
    assert await committed(kafka_bootstrap, app.conf.id, topic) == 4  # Faust's own _add_gap: 6 or 7
