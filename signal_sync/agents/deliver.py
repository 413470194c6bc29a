"""Stage 2: one agent per integration, many contacts at once, each contact strictly in order.

Each integration reads its own internal topic (keyed by contact_id), so a paused or slow
integration holds back only its own offsets and never delays the others. Records are
handed to a ``KeyOrderedScheduler`` (acks in offset order): with batching an internal record's
events are one item and the batcher keeps each contact's order; without, each event is an item
keyed by its contact, run one after another. Requests are admitted by the integration's gate
(concurrency cap, rate limit, fault pause, circuit breaker). What each event does at the
destination (an upsert, a consent withdrawal or its re-grant, an erasure the erasure agent
forwarded) is planned and carried out by the integration's ``Jobs`` (``engine.jobs``) with the
contact's state in the destination-state table, which lives on the same partitioning.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.types import TP

from signal_sync.agents.ingest import envelope_message_id, reject, source_of_envelope
from signal_sync.agents.outputs import emit_now
from signal_sync.codecs.events import decode_event
from signal_sync.dead_letters import TASK_PUT, ErrorContext
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.delivery import exception_text
from signal_sync.engine.batch_send import guarded_send, make_send_batch
from signal_sync.engine.batcher import Batcher, Placed
from signal_sync.engine.jobs import ContactStates, Job, JobResult, Jobs
from signal_sync.engine.ordered import KeyOrderedScheduler, Slots
from signal_sync.erasure import erased_person
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import decide
from signal_sync.runtime import Runtime
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.records import SignalEvent
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import TailWatch

log = logging.getLogger(__name__)

Done = faust.EventT | RawRecord | None
"""What to acknowledge once an item is finished: the internal record, when it is its last item."""


@dataclass(slots=True)
class Delivery:
    """A scheduler item: the events of one internal record for one integration (with batching, all of
    them; without, one), what they acknowledge, and the internal topic's partition they came from."""

    envelopes: list[dict[str, Any]]
    done: Done
    partition: int | None = None
    finished: set[int] = field(default_factory=set)
    """The positions in ``envelopes`` of the events whose outcomes were handed over."""
    slots: Slots | None = None
    """Its slots of the scheduler's ``max_in_flight``: one goes back as each outcome is handed over."""


def decoded_event(runtime: Runtime, envelope: dict[str, Any], source: SourceRecord) -> SignalEvent:
    """The envelope's event: as stage 1 or another integration's agent left it, else decoded here
    (and left for the other integrations it was forwarded to): from the record's JSON, or for a
    record framed for a Schema Registry from the event's JSON stage 1 read (no registry call)."""
    event = runtime.decoded.take(source.position)
    if event is None:
        text = envelope.get("json")
        if text is None:
            event = decode_event(source.value)
        else:
            event = decode_event(text.encode("utf-8"), original=source.value)
        if envelope.get("takers", 1) > 1:  # envelopes written before "takers" existed: 1
            runtime.decoded.keep(source.position, event, envelope["takers"] - 1)
    return event


def jobs_for(runtime: Runtime, integration: Integration) -> Jobs:
    """The integration's ``Jobs`` (made by ``attach_one``; made here, unbatched, when it was not)."""
    jobs = runtime.jobs.get(integration.id)
    if jobs is None:
        send = guarded_send(runtime.sender, runtime.gates[integration.id], integration)
        jobs = runtime.jobs[integration.id] = Jobs(
            integration, ContactStates(integration, runtime.destination_state), send
        )
    return jobs


def send(
    runtime: Runtime, integration: Integration, job: Job
) -> asyncio.Future[Placed[JobResult]] | Awaitable[JobResult]:
    """Carry the job out: through the integration's batcher, with the contact's neighbours (placed
    now, in the order of the calls; the future of its share of the batch's result), or alone (when
    awaited)."""
    batcher = runtime.batchers.get(integration.id)
    if batcher is None:
        return jobs_for(runtime, integration).run(job)
    return batcher.put(job.contact, job)


async def deliver_events(runtime: Runtime, integration: Integration, delivery: Delivery) -> None:
    """Deliver the item's events to one integration and record one outcome each. Every job is placed
    before any answer is awaited, so a record's events share batches, and each outcome is written
    as soon as its event is answered, so a contact's outcomes complete in its events' order whatever
    record they came in. An unexpected exception (decoding, mapping, sending or building the
    outcome) becomes that event's ``failed`` / ``internal_error`` outcome; raises only when an
    outcome cannot be written (the scheduler then records the rest, or stops the worker)."""
    started = time.time()
    crashed: list[tuple[int, Exception]] = []
    unwritable: list[Exception] = []
    placed: list[tuple[int, SourceRecord, Planned, asyncio.Future[Placed[JobResult]]]] = []
    for index, envelope in enumerate(delivery.envelopes):
        try:
            source = source_of_envelope(envelope)
            planned = plan_delivery(runtime, integration, envelope, source)
            answer = start_job(runtime, integration, planned, delivery.partition)
        except Exception as exc:
            crashed.append((index, exc))
            continue
        if isinstance(answer, asyncio.Future):
            placed.append((index, source, planned, answer))
            continue
        try:  # not through a batcher: carried out alone (the item holds this one event), or dropped
            done = await answer
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            crashed.append((index, exc))
            continue
        finish(runtime, integration, delivery, index, source, planned, done, started, crashed)
    if placed:
        answered = asyncio.get_running_loop().create_future()
        left = len(placed)
        cancelled = False

        def on_answer(index: int, source: SourceRecord, planned: Planned, future: asyncio.Future) -> None:
            nonlocal left, cancelled
            if future.cancelled():  # the batcher stopped (shutdown): no outcome, read again later
                cancelled = True
            elif (error := future.exception()) is not None:  # the batch raised, not answered
                crashed.append((index, error if isinstance(error, Exception) else RuntimeError(error)))
            else:
                try:
                    done = future.result().result
                    finish(runtime, integration, delivery, index, source, planned, done, started, crashed)
                except Exception as exc:
                    unwritable.append(exc)
            left -= 1
            if left == 0 and not answered.done():
                answered.set_result(None)

        for index, source, planned, future in placed:
            future.add_done_callback(functools.partial(on_answer, index, source, planned))
        await answered
        if cancelled:
            raise asyncio.CancelledError
    if unwritable:
        raise unwritable[0]
    for index, exc in crashed:
        envelope = delivery.envelopes[index]
        log.error(
            "delivery crashed: integration=%s",
            integration.id,
            exc_info=exc,
            extra={"integration": integration.id},
        )
        await record_crash(runtime, integration, envelope, exc, started)
        delivery.finished.add(index)
    if runtime.outputs.waiting:  # librdkafka's queue is full: wait for room before taking more
        await runtime.outputs.room()


def finish(
    runtime: Runtime,
    integration: Integration,
    delivery: Delivery,
    index: int,
    source: SourceRecord,
    planned: Planned,
    done: JobResult,
    started: float,
    crashed: list[tuple[int, Exception]],
) -> None:
    """Hand over the outcome of the event at ``index``; an exception while building it is added to
    ``crashed``, one while handing it over (it cannot be written) raised."""
    try:
        outcome, request = delivery_outcome(runtime, integration, planned, done, source)
    except Exception as exc:
        crashed.append((index, exc))
        return
    failed = outcome["status"] not in ("delivered", "dropped")
    context = ErrorContext(TASK_PUT, started_at=started) if failed else None
    emit_now(runtime, outcome, source, request, context)
    delivery.finished.add(index)
    if delivery.slots is not None:
        delivery.slots.give_back()


async def record_crash(
    runtime: Runtime,
    integration: Integration,
    envelope: dict[str, Any],
    exc: Exception,
    started: float | None = None,
) -> None:
    """The ``failed`` / ``internal_error`` outcome and dead letter of an event whose delivery raised."""
    source = source_of_envelope(envelope)
    erasure = envelope.get("erase")
    await reject(
        runtime,
        source,
        exception_text(exc),
        "failed",
        "internal_error",
        [integration],
        message_id=erasure["request_id"] if erasure else envelope_message_id(envelope, source),
        context=ErrorContext(TASK_PUT, exc, started),
        operation="erase" if erasure else None,
    )


@dataclass(slots=True)
class Planned:
    """What an envelope asks of one integration: an event's operation (None: dropped for ``reason``)
    or an erasure (``erasure``: its request)."""

    resolved: ResolvedEvent
    operation: str | None
    reason: str | None
    erasure: dict[str, Any] | None


def plan_delivery(
    runtime: Runtime, integration: Integration, envelope: dict[str, Any], source: SourceRecord
) -> Planned:
    """The envelope's event (or erasure) and what it asks of ``integration``."""
    erasure = envelope.get("erase")
    if erasure is not None:
        return Planned(erased_person(erasure["request_id"], erasure["email"]), "erase", None, erasure)
    resolved = ResolvedEvent(decoded_event(runtime, envelope, source), envelope["traits"])
    reason, operation = decide(resolved, integration)  # as stage 1 did, from the same event and traits
    return Planned(resolved, operation, reason, None)


def start_job(
    runtime: Runtime, integration: Integration, planned: Planned, partition: int | None
) -> asyncio.Future[Placed[JobResult]] | Awaitable[JobResult]:
    """The planned job on its way (``send``); an operation of None answers ``dropped`` at once (only
    when the config changed since stage 1, e.g. to on_consent_withdrawn: drop)."""
    assert planned.resolved.contact_id is not None and planned.resolved.event.message_id is not None
    if planned.operation is None:
        return dropped_now(planned.reason)
    return send(runtime, integration, Job(planned.resolved, planned.operation, partition))


async def dropped_now(reason: str | None) -> JobResult:
    return JobResult(None, "dropped", reason)


def delivery_outcome(
    runtime: Runtime, integration: Integration, planned: Planned, done: JobResult, source: SourceRecord
) -> tuple[dict[str, Any], Any]:
    """The outcome of a delivered event (or erasure) and what was sent for it (None: nothing, or an
    erasure: its calls name the address, so they are not kept for the debugger)."""
    resolved = planned.resolved
    if done.status == "failed":
        log.warning(
            "delivery failed: integration=%s message_id=%s operation=%s reason=%s attempts=%s",
            integration.id,
            resolved.event.message_id,
            done.operation,
            done.reason,
            done.attempts,
            extra={
                "integration": integration.id,
                "message_id": resolved.event.message_id,
                "operation": done.operation,
                "reason": done.reason,
                "http_status": done.http_status,
                "attempts": done.attempts,
            },
        )
    shown = done.shown
    if planned.erasure is not None:
        shown = None
        if done.status != "failed":  # the debugger's rows of the person go with the person
            runtime.forget_person(resolved.email)
    outcome = runtime.outcomes.delivery(
        integration, resolved, done, source, time.time(), erasure=planned.erasure is not None
    )
    return outcome, shown


def build_jobs(runtime: Runtime, integration: Integration) -> None:
    """The integration's ``Jobs`` and, when its destination takes bulk calls, its ``Batcher``, into
    ``runtime.jobs`` and ``runtime.batchers``."""
    settings = runtime.settings.delivery
    batch_size = integration.batch_max_items or destination_of(integration).batch.max_items
    gate = runtime.gates[integration.id]
    jobs = runtime.jobs[integration.id] = Jobs(
        integration,
        ContactStates(integration, runtime.destination_state),
        guarded_send(runtime.sender, gate, integration),
        make_send_batch(runtime.sender, gate, integration, batch_size) if batch_size > 1 else None,
    )
    if batch_size > 1:
        runtime.batchers[integration.id] = Batcher(
            jobs.send_batch, batch_size, settings.batch_linger_ms / 1000, integration.max_concurrency
        )


def attach_one(runtime: Runtime, integration: Integration) -> None:
    """Register the delivery agent of one integration."""
    topic = runtime.delivery_topics[integration.id]
    settings = runtime.settings.delivery
    build_jobs(runtime, integration)

    async def deliver(stream: faust.StreamT) -> None:
        stream = stream.noack()
        batching = integration.id in runtime.batchers

        async def handle(delivery: Delivery) -> None:
            await deliver_events(runtime, integration, delivery)

        async def ack(delivery: Delivery) -> None:
            if delivery.done is not None:
                await acknowledge(stream, runtime.app.consumer, delivery.done)

        async def fail(delivery: Delivery, exc: Exception) -> None:
            """The outcomes of the events left without one when the handler raised (``deliver_events``
            turns their own failures into outcomes; this is for an outcome it could not write)."""
            for index, envelope in enumerate(delivery.envelopes):
                if index not in delivery.finished:
                    await record_crash(runtime, integration, envelope, exc)

        scheduler = KeyOrderedScheduler(
            ack=ack, max_in_flight=settings.max_in_flight, fail=fail, halt=runtime.stop_worker
        )
        runtime.schedulers[integration.id] = scheduler

        async def submit(tp: TP, offset: int, envelopes: list[dict[str, Any]], done: Done) -> None:
            """The events of an internal record to the scheduler, acknowledging the record once every
            one is finished (the scheduler acknowledges in order). With batching they are one item (the
            batcher keeps each contact's order, and coalesces); without, one item per event, keyed by
            contact, so the scheduler runs a contact's events one after another."""
            if batching or not envelopes:
                slots = Slots(max(1, len(envelopes)))
                delivery = Delivery(envelopes, done, tp.partition, slots=slots)
                await scheduler.submit(tp, offset, (tp, offset), delivery, handle, slots)
                return
            for n, envelope in enumerate(envelopes):
                delivery = Delivery([envelope], done if n == len(envelopes) - 1 else None, tp.partition)
                await scheduler.submit(tp, offset, envelope["contact"], delivery, handle)

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
                    runtime.note_delivery_lag(message.timestamp)
                    if await runtime.sequence.admit_after(tp, offset, submit_raw):
                        await submit(tp, offset, event.value["events"], event)
                    else:  # already handled: only its ack, in offset order
                        await submit(tp, offset, [], event)
        finally:
            watcher.cancel()

    runtime.app.agent(topic, name=f"deliver-{integration.id}")(deliver)


def attach(runtime: Runtime) -> None:
    """Register one delivery agent per integration."""
    for integration in runtime.integrations.values():
        attach_one(runtime, integration)
