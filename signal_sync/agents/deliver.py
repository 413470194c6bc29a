"""Stage 2: one agent per integration, many contacts at once, each contact strictly in order.

Each integration reads its own internal topic (keyed by contact_id), so a paused or slow
integration holds back only its own offsets and never delays the others. Events are
handed to a ``KeyOrderedScheduler`` (concurrent across contacts, sequential within one,
acks in offset order) and admitted by the integration's gate (concurrency cap, rate
limit, fault pause, circuit breaker). Mailgun's merged vars are read from and, after a
successful delivery, written to the destination-state table on the same partitioning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TP

from signal_sync.agents.ingest import reject
from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import decode_event
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import Batcher, Placed
from signal_sync.engine.gate import send_through_gate
from signal_sync.engine.ordered import KeyOrderedScheduler
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import build_request, state_key
from signal_sync.runtime import Runtime
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.records import SignalEvent
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import TailWatch

log = logging.getLogger(__name__)

Done = faust.EventT | RawRecord | None
"""What to acknowledge once an item is finished: the internal record, when it is its last item."""
Item = tuple[list[dict[str, Any]], Done, int]
"""A scheduler item: envelopes to deliver in order (one event's, or with batching a whole internal
record's; none: only the acknowledgement), what it acknowledges, and how many event slots it holds."""


def decoded_event(runtime: Runtime, envelope: dict[str, Any], source: SourceRecord) -> SignalEvent:
    """The envelope's event: as stage 1 or another integration's agent left it, else decoded here
    (and left for the other integrations it was forwarded to)."""
    event = runtime.decoded.take(source.position)
    if event is None:
        event = decode_event(source.value)
        if envelope.get("takers", 1) > 1:  # envelopes written before "takers" existed: 1
            runtime.decoded.keep(source.position, event, envelope["takers"] - 1)
    return event


def source_of_envelope(envelope: dict[str, Any]) -> SourceRecord:
    """The original input record an envelope was made from (for outcomes and dead letters)."""
    topic, partition, offset, timestamp_ms = envelope["src"]
    return SourceRecord(topic, partition, offset, timestamp_ms, envelope["raw"].encode("utf-8"))


@dataclass(slots=True)
class Started:
    """An event whose request is built and on its way (placed in the batcher, when batching)."""

    source: SourceRecord
    resolved: ResolvedEvent
    key: str
    request: Request
    sent: Awaitable[Any]
    """The batcher's future of a ``Placed`` result, or the coroutine sending the request alone."""


def start_delivery(runtime: Runtime, integration: Integration, envelope: dict[str, Any]) -> Started:
    """Build the event's request and, when batching, place it in the batcher now: synchronously, so
    a record's events are placed in their order without a task each."""
    source = source_of_envelope(envelope)
    resolved = ResolvedEvent(decoded_event(runtime, envelope, source), envelope["traits"])
    contact = resolved.contact_id
    assert contact is not None and resolved.event.message_id is not None
    key = state_key(integration, contact)
    # Mailgun vars of a contact's earlier event still in flight come first: it is applied before us.
    known = runtime.pending_state[key] if key in runtime.pending_state else runtime.destination_state.get(key)
    request = build_request(resolved, integration, known)
    if request.state is not None:
        runtime.pending_state[key] = request.state
    batcher = runtime.batchers.get(integration.id)
    if batcher is None:
        sent: Awaitable[Any] = send_through_gate(
            runtime.sender, runtime.gates[integration.id], integration, request
        )
    else:
        sent = batcher.place(contact, destination_of(integration).batch.item_of(request))
    return Started(source, resolved, key, request, sent)


async def sent_result(started: Started) -> tuple[DeliveryResult, bool]:
    """The event's result, and whether it was the last of its contact's group in the batch."""
    answer = await started.sent
    if not isinstance(answer, Placed):
        return answer, True
    result = answer.result
    if not answer.first and result.created:  # one upsert: only the group's first event created the contact
        result = dataclasses.replace(result, created=False)
    return result, answer.last


def begin_delivery(
    runtime: Runtime, integration: Integration, envelope: dict[str, Any]
) -> Started | Exception:
    """``start_delivery``, with its failure kept for ``finish_delivery`` to report in order."""
    try:
        return start_delivery(runtime, integration, envelope)
    except Exception as exc:
        return exc


async def finish_delivery(
    runtime: Runtime, integration: Integration, envelope: dict[str, Any], started: Started | Exception
) -> None:
    """Wait for a started event's result and record its outcome (an ``internal_error`` failure if
    it crashed: a handler that raises would be acked without an outcome)."""
    try:
        if isinstance(started, Exception):
            raise started
        source, resolved, key, request = started.source, started.resolved, started.key, started.request
        result, last_of_contact = await sent_result(started)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception(
            "delivery crashed: integration=%s", integration.id, extra={"integration": integration.id}
        )
        await reject(
            runtime,
            source_of_envelope(envelope),
            f"{type(exc).__name__}: {exc}",
            "failed",
            "internal_error",
            [integration],
        )
        return
    gate = runtime.gates[integration.id]
    if request.state is not None and runtime.pending_state.get(key) is request.state:
        del runtime.pending_state[key]
    if result.status == "delivered":
        gate.record_delivered()
        if request.state is not None and last_of_contact:
            runtime.destination_state[key] = request.state
    else:
        gate.record_failed()
        log.warning(
            "delivery failed: integration=%s message_id=%s reason=%s attempts=%s",
            integration.id,
            resolved.event.message_id,
            result.reason,
            result.attempts,
            extra={
                "integration": integration.id,
                "message_id": resolved.event.message_id,
                "reason": result.reason,
                "http_status": result.http_status,
                "attempts": result.attempts,
            },
        )
    outcome = runtime.outcomes.build(
        message_id=resolved.event.message_id,
        integration=integration,
        event_name=resolved.name,
        email=resolved.email,
        status=result.status,
        reason=result.reason,
        source=source,
        now=time.time(),
        event=resolved.event,
        http_status=result.http_status,
        created=result.created,
        attempts=result.attempts,
        hint=result.hint,
        error=result.error,
    )
    await emit(runtime, outcome, source, request)


def attach_one(runtime: Runtime, integration: Integration) -> None:
    """Register the delivery agent of one integration."""
    topic = runtime.delivery_topics[integration.id]
    settings = runtime.settings.delivery
    batch_size = integration.batch_max_items or destination_of(integration).batch.max_items
    if batch_size > 1:
        gate = runtime.gates[integration.id]
        runtime.batchers[integration.id] = Batcher(
            make_send_batch(runtime.sender, gate, integration, batch_size),
            batch_size,
            settings.batch_linger_ms / 1000,
        )

    async def deliver(stream: faust.StreamT) -> None:
        stream = stream.noack()
        batching = integration.id in runtime.batchers

        # With batching a whole internal record is one scheduler item, but its events still count one
        # by one against max_in_flight, each given back as soon as it is finished: held until the
        # whole record was done, they kept new events out and the batches small.
        event_slots = asyncio.Semaphore(settings.max_in_flight)

        async def handle(item: Item) -> None:
            envelopes, _, held = item
            started = [begin_delivery(runtime, integration, envelope) for envelope in envelopes]
            released = 0
            try:
                for envelope, one in zip(envelopes, started, strict=True):
                    try:
                        await finish_delivery(runtime, integration, envelope, one)
                    except Exception:  # only an envelope without its source; the record's others go on
                        log.exception("event of an internal record acked without an outcome")
                    if released < held:
                        event_slots.release()
                        released += 1
            finally:
                for _ in range(held - released):
                    event_slots.release()

        async def ack(item: Item) -> None:
            _, done, _ = item
            if done is not None:
                await acknowledge(stream, runtime.app.consumer, done)

        scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=settings.max_in_flight)
        runtime.schedulers[integration.id] = scheduler

        async def submit(tp: TP, offset: int, envelopes: list[dict[str, Any]], done: Done) -> None:
            """Schedule an internal record's events; the last item acknowledges the record (the
            scheduler acknowledges in order, so only once every event of it is finished). With
            batching the batcher keeps each contact's order (and coalesces), so the whole record is
            one item: a task per event cost ~14 µs each. Without it each event is an item keyed by
            its contact, and the scheduler runs a contact's events one after another."""
            if batching or not envelopes:
                held = min(len(envelopes), settings.max_in_flight) if batching else 0
                for _ in range(held):
                    await event_slots.acquire()
                await scheduler.submit(tp, offset, (tp, offset), (envelopes, done, held), handle)
                return
            for n, envelope in enumerate(envelopes):
                item = ([envelope], done if n == len(envelopes) - 1 else None, 0)
                await scheduler.submit(tp, offset, envelope["contact"], item, handle)

        async def submit_raw(record: RawRecord) -> None:
            """A record Faust did not hand to this agent, read by the sequence guard."""
            tp = TP(record.topic, record.partition)
            await submit(tp, record.offset, orjson.loads(record.value or b"{}").get("events", []), record)

        watch = TailWatch(runtime.app, runtime.sequence, topic.get_topic_name())
        watcher = asyncio.create_task(watch.run(submit_raw))
        try:
            async for event in stream.events():
                async with watch.lock:
                    message = event.message
                    tp, offset = message.tp, message.offset
                    missing = await runtime.sequence.admit(tp, offset)
                    if missing is None:  # already handled: only its ack, in offset order
                        await submit(tp, offset, [], event)
                        continue
                    for record in missing:
                        await submit_raw(record)
                    await submit(tp, offset, event.value["events"], event)
        finally:
            watcher.cancel()

    runtime.app.agent(topic, name=f"deliver-{integration.id}")(deliver)


def attach(runtime: Runtime) -> None:
    """Register one delivery agent per integration."""
    for integration in runtime.integrations.values():
        attach_one(runtime, integration)
