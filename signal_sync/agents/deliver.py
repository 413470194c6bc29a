"""Stage 2: one agent per integration, many contacts at once, each contact strictly in order.

Each integration reads its own internal topic (keyed by contact_id), so a paused or slow
integration holds back only its own offsets and never delays the others. Events are
handed to a ``KeyOrderedScheduler`` (concurrent across contacts, sequential within one,
acks in offset order) and admitted by the integration's gate (concurrency cap, rate
limit, fault pause, circuit breaker). What each event does at the destination (an upsert, a
consent withdrawal or its re-grant, an erasure the erasure agent forwarded) is planned and
carried out by the integration's ``Jobs`` (``engine.jobs``) with the contact's state in the
destination-state table, which lives on the same partitioning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from faust.types import TP

from signal_sync.agents.ingest import envelope_message_id, reject, source_of_envelope
from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import decode_event
from signal_sync.dead_letters import TASK_PUT, ErrorContext
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.delivery import exception_text
from signal_sync.engine.batch_send import guarded_send, make_send_batch
from signal_sync.engine.batcher import Batcher
from signal_sync.engine.jobs import ContactStates, Job, JobResult, Jobs
from signal_sync.engine.ordered import KeyOrderedScheduler
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
"""What to acknowledge once an item is finished: the internal record, when it is its last event."""
Item = tuple[dict[str, Any] | None, Done, int]
"""A scheduler item: one event's envelope (None: nothing to deliver), what it acknowledges, and the
internal topic's partition it came from."""


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


async def send(runtime: Runtime, integration: Integration, job: Job) -> JobResult:
    """Carry the job out through the integration's batcher (with the contact's neighbours) or alone."""
    batcher = runtime.batchers.get(integration.id)
    if batcher is None:
        return await jobs_for(runtime, integration).run(job)
    placed = await batcher.put(job.contact, job)
    return placed.result


async def deliver_to(
    runtime: Runtime, integration: Integration, envelope: dict[str, Any], partition: int | None = None
) -> None:
    """Deliver one event to one integration and record its one outcome. An unexpected exception
    (decoding, mapping, sending or building the outcome) becomes a ``failed`` / ``internal_error``
    outcome; raises only when the outcome cannot be written (the scheduler then stops the worker).
    ``partition``: the internal topic's partition the event came from (its contact's state is
    written there)."""
    started = time.time()
    source = source_of_envelope(envelope)
    try:
        outcome, request = await delivery_outcome(runtime, integration, envelope, source, partition)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a handler that raises would leave the event without an outcome
        log.exception(
            "delivery crashed: integration=%s", integration.id, extra={"integration": integration.id}
        )
        await record_crash(runtime, integration, envelope, exc, started)
        return
    failed = outcome["status"] not in ("delivered", "dropped")
    context = ErrorContext(TASK_PUT, started_at=started) if failed else None
    await emit(runtime, outcome, source, request, context)


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


async def delivery_outcome(
    runtime: Runtime,
    integration: Integration,
    envelope: dict[str, Any],
    source: SourceRecord,
    partition: int | None = None,
) -> tuple[dict[str, Any], Any]:
    """Deliver the envelope's event (or erasure); its outcome and what was sent for it (None:
    nothing, or an erasure: its calls name the address, so they are not kept for the debugger)."""
    erasure = envelope.get("erase")
    if erasure is not None:
        resolved = erased_person(erasure["request_id"], erasure["email"])
        reason, operation = None, "erase"
    else:
        resolved = ResolvedEvent(decoded_event(runtime, envelope, source), envelope["traits"])
        reason, operation = decide(resolved, integration)  # as stage 1 did, from the same event and traits
    assert resolved.contact_id is not None and resolved.event.message_id is not None
    if operation is None:  # only when the config changed since stage 1 (e.g. to on_consent_withdrawn: drop)
        done = JobResult(None, "dropped", reason)
    else:
        done = await send(runtime, integration, Job(resolved, operation, partition))
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
    if erasure is not None:
        shown = None
        if done.status != "failed":  # the debugger's rows of the person go with the person
            runtime.forget_person(resolved.email)
    outcome = runtime.outcomes.delivery(
        integration, resolved, done, source, time.time(), erasure=erasure is not None
    )
    return outcome, shown


def attach_one(runtime: Runtime, integration: Integration) -> None:
    """Register the delivery agent of one integration."""
    topic = runtime.delivery_topics[integration.id]
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

    async def deliver(stream: faust.StreamT) -> None:
        stream = stream.noack()
        batching = integration.id in runtime.batchers

        async def handle(item: Item) -> None:
            envelope, _, partition = item
            if envelope is not None:
                await deliver_to(runtime, integration, envelope, partition)

        async def ack(item: Item) -> None:
            _, done, _ = item
            if done is not None:
                await acknowledge(stream, runtime.app.consumer, done)

        async def fail(item: Item, exc: Exception) -> None:
            """The outcome of an event whose handler raised (``deliver_to`` turns its own failures into
            outcomes; this is for anything else)."""
            envelope, _, _ = item
            if envelope is not None:
                await record_crash(runtime, integration, envelope, exc)

        scheduler = KeyOrderedScheduler(
            ack=ack, max_in_flight=settings.max_in_flight, fail=fail, halt=runtime.stop_worker
        )
        runtime.schedulers[integration.id] = scheduler

        async def submit(tp: TP, offset: int, envelopes: list[dict[str, Any]], done: Done) -> None:
            """One scheduler item per event of an internal record; its last one acknowledges the record
            (the scheduler acknowledges in order, so only once every event of it is finished)."""
            if not envelopes:
                await scheduler.submit(tp, offset, (tp, offset), (None, done, tp.partition), handle)
                return
            for n, envelope in enumerate(envelopes):
                # With batching the batcher keeps each contact's order (and coalesces); without it the
                # scheduler runs a contact's events one after another.
                key = (tp, offset, n) if batching else envelope["contact"]
                item = (envelope, done if n == len(envelopes) - 1 else None, tp.partition)
                await scheduler.submit(tp, offset, key, item, handle)

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
