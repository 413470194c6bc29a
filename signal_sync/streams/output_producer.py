"""Writing outcomes and dead letters through librdkafka, flushed before Faust commits.

Every event gets two outcome records (one per integration) where the pass-through ceiling
writes one, and aiokafka, Faust's producer, spends about 66 µs of the worker's one CPU per
record. librdkafka (confluent-kafka) batches and sends in its own threads: about 2 µs of the
event loop per record, 9.5 µs of CPU with its threads (measured side by side, 100k
outcome-sized records).

At-least-once needs every outcome of an event on the broker before the event's offset is
committed. Faust guarantees that for its own producer by flushing it before each commit and
when partitions are revoked; ``flush_with_faust`` makes that same flush wait for this
producer too. A record the broker refused (after librdkafka's own retries, or after
``message.timeout.ms``, 5 minutes) makes this and every later flush raise: Faust's commit task
fails, its consumer crashes and the worker stops without committing past the record; the events
are read again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer

FLUSH_POLL_S = 0.002
FLUSH_WARN_S = 10.0
log = logging.getLogger(__name__)

SETTINGS = {
    "linger.ms": 5,
    "enable.idempotence": True,  # acks=all, no duplicates or reordering from librdkafka's retries
    "partitioner": "murmur2_random",  # the Java client's (and aiokafka's) partition for a key
    "queue.buffering.max.messages": 20_000,  # bounds memory while the broker is away
}


class OutputProducerError(KafkaException):
    """An outcome or dead letter could not be written: offsets must not be committed."""


class _Epoch:
    """Records produced between two flushes, and how many of them the broker has acknowledged.

    librdkafka's own ``flush()`` waits until its whole queue is empty, which under steady load
    can take seconds (measured: up to 10 s at 10k records/s) and would hold back every commit. A
    flush here only waits for the records queued before it started."""

    __slots__ = ("acknowledged", "produced")

    def __init__(self) -> None:
        self.produced = 0
        self.acknowledged = 0


class OutputProducer:
    """A confluent-kafka producer for the worker's output topics."""

    def __init__(self, client_config: dict[str, str]) -> None:
        self._config = {**client_config, **SETTINGS, "logger": log}
        self._client: Producer | None = None
        self._failure: KafkaError | None = None
        self._epoch = _Epoch()
        self._on_delivery = self._reporter(self._epoch)

    @property
    def _producer(self) -> Producer:
        """Created on first use, so building a runtime (tests, ``check-config``) connects nowhere."""
        if self._client is None:
            self._client = Producer(self._config)
        return self._client

    def _reporter(self, epoch: _Epoch) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of one epoch (one object per epoch, not per record)."""

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            epoch.acknowledged += 1
            if error is not None and self._failure is None:
                self._failure = error

        return on_delivery

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; waits (without blocking the loop) while librdkafka's queue is full."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0)
                await asyncio.sleep(FLUSH_POLL_S)
        self._epoch.produced += 1
        self._producer.poll(0)  # serve delivery reports and librdkafka's log lines

    async def flush(self) -> None:
        """Return once every record queued before this call is on the broker; waits as long as the
        broker is away (as Faust's own flush does). Raises if any record was ever refused."""
        if self._client is None:
            return
        epoch, self._epoch = self._epoch, _Epoch()
        self._on_delivery = self._reporter(self._epoch)
        waited = 0.0
        while epoch.acknowledged < epoch.produced:
            self._client.poll(0)  # delivery reports run here, in the event loop's thread
            await asyncio.sleep(FLUSH_POLL_S)
            waited += FLUSH_POLL_S
            if waited >= FLUSH_WARN_S:
                waited = 0.0
                log.warning(
                    "%d outcome/dead-letter record(s) still wait for the broker; offsets are not committed",
                    epoch.produced - epoch.acknowledged,
                    extra={"waiting_records": epoch.produced - epoch.acknowledged},
                )
        if self._failure is not None:
            # Sticky: a later flush must not let Faust commit past the record that was refused.
            raise OutputProducerError(self._failure)


def flush_with_faust(app: faust.App, flush: Callable[[], Awaitable[None]]) -> None:
    """Make every flush of Faust's producer (before each offset commit, on revocation) also await
    ``flush``. Call before the worker starts: it creates the app's producer."""
    producer = app.producer
    faust_flush = producer.flush

    async def flush_both() -> None:
        await faust_flush()
        await flush()

    producer.flush = flush_both  # type: ignore[method-assign]
