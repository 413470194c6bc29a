"""Writing outcomes, dead letters, internal-topic records and table changelogs through
librdkafka, flushed before Faust commits.

Every event gets two outcome records (one per integration) where the pass-through ceiling
writes one, plus table changelog records (``streams/changelog.py``), and aiokafka, Faust's
producer, spends about 66 µs of the worker's one CPU per record. librdkafka (confluent-kafka)
batches and sends in its own threads: about 2 µs of the event loop per record, 9.5 µs of CPU
with its threads (measured side by side, 100k outcome-sized records).

At-least-once needs every outcome of an event on the broker before the event's offset is
committed. Faust guarantees that for its own producer by flushing it before each commit and
when partitions are revoked; ``flush_with_faust`` makes that same flush wait for this
producer too. A record the broker refused (after librdkafka's own retries, or after
``message.timeout.ms``, 5 minutes) makes this and every later flush raise: Faust's commit task
fails, its consumer crashes and the worker stops without committing past the record; the events
are read again after the restart.

Every record is bounded: ``send_soon`` refuses one larger than the limit of its topic
(``record_limit``: the smaller of librdkafka's ``message.max.bytes`` and the topic's
``max.message.bytes`` as read at start, less ``RECORD_OVERHEAD_BYTES`` for the record's framing;
its key, value and headers count, ``record_size``) with a ``RecordTooLargeError`` before anything
is queued, so an oversize record is the caller's
decision (the ingest stage splits its forwards and rejects an event that cannot fit alone), never a
delivery failure that stops every later commit. ``batch.size`` is lowered to the smallest topic
limit too: librdkafka puts several records in one batch, and the broker checks the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from signal_sync.streams.client_properties import KEYED_PRODUCER

FLUSH_POLL_S = 0.002
BACKLOG_HOLD_S = 0.05
"""While the worker is behind its input (``OutputProducer.behind``), records wait this long here and
then go to librdkafka together: at its 5 ms ``linger.ms`` a backlog's records would go in many small
produce requests, which cost the broker (on the worker's machine, the CPU the worker needs) about
twice as much per record as requests of 50 ms (docs/performance.md, latency budget, row 3). A live
stream keeps the 5 ms."""
POLL_EVERY = 64
"""Serve delivery reports and librdkafka's log lines every this many records (and in each flush)."""
FLUSH_WARN_S = 10.0
log = logging.getLogger(__name__)

DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes`` (and ``batch.size``)."""
RECORD_OVERHEAD_BYTES = 1024
"""Room left in a limit for what a record adds to its key and value on the wire: the batch header
(61 bytes), the record's own header and length fields (at most about 40), with a wide margin."""

HEADER_OVERHEAD_BYTES = 10
"""What a record header adds on the wire beside its name and value: two varint lengths."""

Headers = Sequence[tuple[str, bytes | None]]
"""Record headers in order, as confluent-kafka takes and returns them (a value may be null)."""


def headers_size(headers: Headers | None) -> int:
    """The bytes ``headers`` add to a record."""
    if not headers:  # most records (outcomes, forwards, changelogs): no generator to set up
        return 0
    return sum(len(name.encode()) + len(value or b"") + HEADER_OVERHEAD_BYTES for name, value in headers)


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None = None) -> int:
    """What a record's limit is measured against: its key, value and headers."""
    return (len(key) if key else 0) + (len(value) if value else 0) + headers_size(headers)


SETTINGS = {
    # Forwards to the internal topics wait this long on the way to the delivery agents, outcomes on
    # the way to their readers (docs/performance.md, latency budget); at 5 ms a produce request
    # still carries every record handed over in that time, for all partitions of the broker.
    "linger.ms": 5,
    **KEYED_PRODUCER,
    "queue.buffering.max.messages": 20_000,  # bounds memory while the broker is away
}


class OutputProducerError(KafkaException):
    """A record (outcome, dead letter, forward or changelog) could not be written: offsets must not
    be committed."""


class RecordTooLargeError(ValueError):
    """A record larger than its topic accepts; it was not queued."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"a record of {size} bytes for {topic!r} is over its {limit}-byte limit")
        self.topic = topic
        self.size = size
        self.limit = limit


def check_fits(
    topic: str, key: bytes | None, value: bytes | None, headers: Headers | None, limit: int
) -> None:
    """Raise ``RecordTooLargeError`` unless a record of this key, value and headers (``record_size``)
    fits in ``limit`` bytes."""
    size = record_size(key, value, headers)
    if size > limit:
        raise RecordTooLargeError(topic, size, limit)


class _Epoch:
    """Records handed over between two flushes: waiting for room in librdkafka's queue, queued
    there, and acknowledged by the broker.

    librdkafka's own ``flush()`` waits until its whole queue is empty, which under steady load
    can take seconds (measured: up to 10 s at 10k records/s) and would hold back every commit. A
    flush here only waits for the records handed over before it started."""

    __slots__ = ("acknowledged", "on_delivery", "produced", "waiting")

    def __init__(self, producer: OutputProducer) -> None:
        self.waiting = 0
        self.produced = 0
        self.acknowledged = 0
        self.on_delivery = producer.reporter(self)  # one callback object per epoch, not per record

    @property
    def done(self) -> bool:
        return self.waiting == 0 and self.acknowledged == self.produced


Delivered = Callable[[Message], None]
"""Called (in the event loop's thread) with a record the broker acknowledged."""
_Record = tuple[str, bytes | None, bytes | None, int, _Epoch, Delivered | None, Headers | None, int]


class OutputProducer:
    """A confluent-kafka producer for the worker's output topics, internal topics and table
    changelogs."""

    def __init__(self, client_config: dict[str, Any], topic_limits: Mapping[str, int] | None = None) -> None:
        """``client_config``: librdkafka settings (``streams.clients.client_config``: connection,
        security, the ``kafka.client_config`` passthrough, the log router); they win over ``SETTINGS``.
        ``topic_limits``: ``max.message.bytes`` of the topics this producer writes, as the broker has
        them (a topic not named is bounded by ``message.max.bytes`` alone)."""
        self._config = {**SETTINGS, "logger": log, **client_config}
        message_max = int(self._config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self.default_limit = message_max - RECORD_OVERHEAD_BYTES
        limits = dict(topic_limits or {})
        self._limits = {
            topic: min(message_max, limit) - RECORD_OVERHEAD_BYTES for topic, limit in limits.items()
        }
        smallest = min(limits.values(), default=message_max)
        batch_size = int(self._config.get("batch.size", DEFAULT_MESSAGE_MAX_BYTES))
        if smallest < batch_size:  # one batch must fit the strictest topic's limit
            self._config["batch.size"] = smallest
        self._client: Producer | None = None
        self._failure: KafkaError | None = None
        self._backlog: deque[_Record] = deque()
        self._held: list[_Record] | None = None
        """Records held while the worker is behind (``BACKLOG_HOLD_S``); None when not holding."""
        self._hold_timer: asyncio.TimerHandle | None = None
        self.behind: Callable[[], bool] = _never
        """Whether the worker is behind its input; asked when a record arrives and none is held."""
        self._handed_over = 0
        self._epoch = _Epoch(self)

    @property
    def _producer(self) -> Producer:
        """Created on first use, so building a runtime (tests, ``check-config``) connects nowhere."""
        if self._client is None:
            self._client = Producer(self._config)
        return self._client

    def reporter(self, epoch: _Epoch) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of one epoch."""

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            epoch.acknowledged += 1
            if error is not None and self._failure is None:
                self._failure = error

        return on_delivery

    def record_limit(self, topic: str) -> int:
        """The most bytes of key, value and headers (``record_size``) a record for ``topic`` may have."""
        return self._limits.get(topic, self.default_limit)

    def check(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Raise ``RecordTooLargeError`` unless a record of this key, value and headers fits ``topic``."""
        check_fits(topic, key, value, headers, self.record_limit(topic))

    def send_soon(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        on_delivered: Delivered | None = None,
        *,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Hand over one record without waiting (-1: the partitioner picks the partition; a
        ``timestamp_ms`` of None: the producer's clock). While librdkafka's queue is full, records
        wait here, in order, and the next flush includes them. Raises ``RecordTooLargeError``
        (nothing queued) for a record its topic would refuse."""
        self.check(topic, key, value, headers)
        record = (topic, key, value, partition, self._epoch, on_delivered, headers, timestamp_ms or 0)
        if self._held is None and self.behind():
            self._held = []
            self._hold_timer = asyncio.get_running_loop().call_later(BACKLOG_HOLD_S, self._release)
        if self._held is not None:
            self._held.append(record)
            self._epoch.waiting += 1
        elif self._backlog or not self._produce(record):
            self._backlog.append(record)
            self._epoch.waiting += 1
        self._handed_over += 1
        if self._handed_over % POLL_EVERY == 0:
            self._producer.poll(0)

    def connect(self, timeout_s: float = 10.0) -> None:
        """Create the client and fetch the cluster's metadata now, when the worker starts, rather
        than with the first outcome, which would wait for the connection (raises if the broker does
        not answer within ``timeout_s``)."""
        self._producer.list_topics(timeout=timeout_s)

    @property
    def waiting(self) -> int:
        """Records waiting for room in librdkafka's queue."""
        return len(self._backlog)

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
        """Hand over one record; waits (without blocking the loop) while records wait for room.
        Raises ``RecordTooLargeError`` (nothing queued) for a record its topic would refuse."""
        self.send_soon(topic, key, value, partition, headers=headers, timestamp_ms=timestamp_ms)
        await self.room()

    async def room(self) -> None:
        """Return once no record waits for room in librdkafka's queue (at once when none does)."""
        while self._backlog:
            await asyncio.sleep(FLUSH_POLL_S)
            self._make_room()

    def _produce(self, record: _Record) -> bool:
        """Queue one record in librdkafka; False when its queue is full."""
        topic, key, value, partition, epoch, on_delivered, headers, timestamp_ms = record
        report = epoch.on_delivery
        if on_delivered is not None:

            def report(error: KafkaError | None, message: Message) -> None:
                epoch.on_delivery(error, message)
                if error is None:
                    on_delivered(message)

        try:
            if headers or timestamp_ms:
                self._producer.produce(
                    topic, value, key, partition, on_delivery=report, timestamp=timestamp_ms, headers=headers
                )
            else:
                self._producer.produce(topic, value, key, partition, on_delivery=report)
        except BufferError:
            return False
        epoch.produced += 1
        return True

    def _release(self) -> None:
        """Hand the held records over in order, behind those waiting for room (``_make_room``);
        they count as waiting in their epoch already."""
        held, self._held = self._held, None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if held:
            self._backlog.extend(held)
            self._make_room()

    def _make_room(self) -> None:
        """Serve delivery reports, then move waiting records into librdkafka's queue, in order."""
        self._producer.poll(0)
        while self._backlog and self._produce(self._backlog[0]):
            epoch = self._backlog.popleft()[4]
            epoch.waiting -= 1

    async def flush(self) -> None:
        """Return once every record handed over before this call is on the broker; waits as long
        as the broker is away (as Faust's own flush does). Raises if any record was ever refused."""
        self._release()
        if self._client is None:
            return
        epoch, self._epoch = self._epoch, _Epoch(self)
        waited = 0.0
        while not epoch.done:
            self._make_room()  # delivery reports run here, in the event loop's thread
            if epoch.done:
                break
            await asyncio.sleep(FLUSH_POLL_S)
            waited += FLUSH_POLL_S
            if waited >= FLUSH_WARN_S:
                waited = 0.0
                pending = epoch.waiting + epoch.produced - epoch.acknowledged
                log.warning(
                    "%d output/changelog record(s) still wait for the broker; offsets are not committed",
                    pending,
                    extra={"waiting_records": pending},
                )
        if self._failure is not None:
            # Sticky: a later flush must not let Faust commit past the record that was refused.
            raise OutputProducerError(self._failure)


def _never() -> bool:
    return False


def flush_with_faust(app: faust.App, flush: Callable[[], Awaitable[None]]) -> None:
    """Make every flush of Faust's producer (before each offset commit, on revocation) also await
    ``flush``. Call before the worker starts: it creates the app's producer."""
    producer = app.producer
    faust_flush = producer.flush

    async def flush_both() -> None:
        await faust_flush()
        await flush()

    producer.flush = flush_both  # type: ignore[method-assign]
