"""``work_floor``: signal-sync's work per event in ``librdkafka_floor``'s loop, without the path around it.

The worker's own functions do the work, on records a confluent-kafka consumer reads up to
``BATCH`` at a time: decode and validate (``decode_event``), stitch, plan and remember the identity
(``plan_event``, ``remember``), plan each integration's jobs against the contact's destination state
and send them in bulk calls through the worker's ``Batcher``, ``Jobs.send_batch``, gate and sender
(one of each per integration, made as the delivery agents make them), and build one outcome per event and
integration, written through librdkafka with the worker's producer settings. Both tables are dicts
that write a changelog-sized record per change (the worker's tables do that through the same
producer). Offsets are committed every second after the producer is flushed, up to the last batch
whose outcomes are all written.

What it leaves out is the path the worker wraps around that work: Faust's per-record hand-over, the
internal topics (produce, fetch and decode again), a task per event in the delivery agents'
scheduler, the sequence guard, and the RocksDB store under the tables. So it
is the floor of a pipeline that reads the source in batches and delivers a worker's own contacts
without the internal topic: against ``passthrough`` it says whether such a pipeline could reach the
throughput target on this machine at all. It is a measurement, not that pipeline: it has no
rebalance handling beyond the consumer's own and no dead letters; each contact's order holds within
the one process because the batchers receive the events in the order read.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections import deque
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Message, Producer, TopicPartition
from faust_common import load_config, stop_when_orphaned
from faust_floor_app import produce_queued
from librdkafka_floor_app import batch_consumer
from workload import bench_integrations

from signal_sync import collector
from signal_sync.agents.ingest import source_of_record
from signal_sync.codecs.events import decode_event, peek_message_id
from signal_sync.config import DeliverySettings
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.delivery import Sender
from signal_sync.engine.batch_send import guarded_send, make_send_batch
from signal_sync.engine.batcher import Batcher, Placed
from signal_sync.engine.gate import IntegrationGate
from signal_sync.engine.jobs import ContactStates, Job, JobResult, Jobs
from signal_sync.errors import InvalidEventError
from signal_sync.outcomes import OutcomeBuilder, SourceRecord, encode
from signal_sync.planner import plan_event, remember, remembered_for
from signal_sync.streams.output_producer import SETTINGS
from signal_sync.streams.partition_reader import raw_record

BATCH = 500
"""Records taken from the consumer's queue per call, as ``librdkafka_floor``."""
IN_FLIGHT = 8
"""Batches whose deliveries may be under way at once (4,000 events; a delivery agent of the worker
holds ``delivery.max_in_flight``, 1,024). With 2 the drain waited on the destinations' round trips."""
COMMIT_INTERVAL_S = 1.0


class ChangelogDict(dict[str, Any]):
    """A table kept in a dict whose every write also produces a changelog-sized record (the JSON of
    the value under its key), as the worker's tables write their changelogs."""

    def __init__(self, producer: Producer, topic: str) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        produce_queued(self.producer, self.topic, orjson.dumps(value), key.encode())


@dataclass
class Batch:
    """One consume call's records: the offsets a commit may name once ``done`` (every outcome of
    the batch handed to the producer)."""

    offsets: dict[tuple[str, int], int]
    done: asyncio.Future[Any]


class Pipeline:
    """Handles consumed batches: the work of both of the worker's stages per event, the deliveries
    through one ``Batcher`` per integration, which keeps each contact's events in order."""

    def __init__(self, config: dict[str, Any], producer: Producer) -> None:
        self.producer = producer
        self.outcome_topic = config["outcome_topic"]
        self.integrations = bench_integrations(config["mautic_url"], config["mailgun_url"])
        self.builder = OutcomeBuilder()
        self.identities: MutableMapping[str, Any] = ChangelogDict(producer, config["changelog_topic"])
        states = ChangelogDict(producer, config["changelog_topic"])
        delivery = DeliverySettings()
        self.sender = Sender(delivery)
        self.batchers: dict[str, Batcher] = {}
        for integration in self.integrations:  # as the worker's delivery agents make them
            gate = IntegrationGate(integration.id, max_in_flight=integration.max_concurrency)
            batch_size = integration.batch_max_items or destination_of(integration).batch.max_items
            jobs = Jobs(
                integration,
                ContactStates(integration, states),
                guarded_send(self.sender, gate, integration),
                make_send_batch(self.sender, gate, integration, batch_size),
            )
            self.batchers[integration.id] = Batcher(
                jobs.send_batch, batch_size, delivery.batch_linger_ms / 1000, integration.max_concurrency
            )

    def write(self, outcome: dict[str, Any]) -> None:
        key = (outcome["contact_id"] or outcome["message_id"]).encode()
        produce_queued(self.producer, self.outcome_topic, encode(outcome), key)

    def start(self, messages: list[Message]) -> Batch:
        """Stage 1's work for the batch now (drops and invalid records get their outcomes at once);
        its deliveries placed into the batchers, in the order read."""
        offsets: dict[tuple[str, int], int] = {}
        now = time.time()
        jobs: dict[str, list[tuple[Job, SourceRecord]]] = {i.id: [] for i in self.integrations}
        for message in messages:
            if message.error() is not None:
                continue
            source = source_of_record(raw_record(message))
            offsets[(source.topic, source.partition)] = source.offset + 1
            try:
                event = decode_event(source.value)
            except InvalidEventError as exc:
                for outcome in self.builder.build_each(
                    [(integration, "invalid_event") for integration in self.integrations],
                    message_id=peek_message_id(source.value),
                    event_name=None,
                    email=None,
                    status="invalid",
                    source=source,
                    now=now,
                    error=str(exc),
                ):
                    self.write(outcome)
                continue
            plan = plan_event(event, self.integrations, remembered_for(event, self.identities))
            remember(self.identities, event, plan.learned)
            resolved = plan.resolved
            assert event.message_id is not None
            drops = []
            for (integration, reason), operation in zip(plan.decisions, plan.operations, strict=True):
                if reason is None:
                    assert operation is not None and resolved.contact_id is not None
                    jobs[integration.id].append((Job(resolved, operation), source))
                else:
                    drops.append((integration, reason))
            if drops:
                for outcome in self.builder.dropped(drops, resolved, source, now):
                    self.write(outcome)
        deliveries = [self.deliver(integration, jobs[integration.id]) for integration in self.integrations]
        return Batch(offsets, asyncio.ensure_future(asyncio.gather(*deliveries)))

    def deliver(self, integration: Integration, jobs: list[tuple[Job, SourceRecord]]) -> Awaitable[None]:
        """Place the batch's jobs for one integration into its batcher now (which keeps each contact's
        order across batches, as in the worker); their outcomes once all are answered."""
        batcher = self.batchers[integration.id]
        return self.write_when_answered(integration, jobs, [batcher.put(job.contact, job) for job, _ in jobs])

    async def write_when_answered(
        self,
        integration: Integration,
        jobs: list[tuple[Job, SourceRecord]],
        futures: list[asyncio.Future[Placed[JobResult]]],
    ) -> None:
        placed = await asyncio.gather(*futures)
        now = time.time()
        for (job, source), done in zip(jobs, placed, strict=True):
            self.write(self.builder.delivery(integration, job.resolved, done.result, source, now))


async def run(config: dict[str, Any], stopping: asyncio.Event) -> None:
    consumer = batch_consumer(config)
    producer = Producer({**SETTINGS, "bootstrap.servers": config["bootstrap"]})
    pipeline = Pipeline(config, producer)
    loop = asyncio.get_running_loop()
    in_flight: deque[Batch] = deque()
    finished: dict[tuple[str, int], int] = {}
    committed_at = time.monotonic()

    def retire() -> None:
        """Take the finished batches at the head of the queue: their offsets may be committed."""
        while in_flight and in_flight[0].done.done():
            batch = in_flight.popleft()
            batch.done.result()  # a delivery that raised stops the run: nothing past it is committed
            finished.update(batch.offsets)

    def commit() -> None:
        retire()
        if finished:
            producer.flush()  # every outcome on the broker before its record's offset is committed
            offsets = [
                TopicPartition(topic, partition, offset) for (topic, partition), offset in finished.items()
            ]
            consumer.commit(offsets=offsets, asynchronous=False)
            finished.clear()

    consumer.subscribe([config["source_topic"]])
    collector.freeze_startup_objects()
    try:
        while not stopping.is_set():
            while len(in_flight) >= IN_FLIGHT:
                await asyncio.wait([in_flight[0].done])
                retire()
            messages = await loop.run_in_executor(None, consumer.consume, BATCH, 0.1)
            if messages:
                in_flight.append(pipeline.start(messages))
            producer.poll(0)
            await asyncio.sleep(0)  # let the batches' calls go on between consume calls
            if time.monotonic() - committed_at >= COMMIT_INTERVAL_S:
                commit()
                committed_at = time.monotonic()
        for batch in in_flight:
            await batch.done
        commit()
    finally:
        await pipeline.sender.close()
        producer.flush()
        consumer.close()


def main() -> None:
    config = load_config()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(collector.YOUNG_THRESHOLD, middle, oldest)  # the worker's settings (collector.install)
    stop_when_orphaned()

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await run(config, stopping)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
