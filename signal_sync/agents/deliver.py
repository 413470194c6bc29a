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
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult, exception_text
from signal_sync.engine.batch_send import make_send_batch
from signal_sync.engine.batcher import Batcher
from signal_sync.engine.gate import send_through_gate
from signal_sync.engine.ordered import KeyOrderedScheduler
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import build_request, state_key
from signal_sync.runtime import Runtime
from signal_sync.streams.json_table import ValueTooLargeError
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.records import SignalEvent
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import TailWatch

log = logging.getLogger(__name__)

Done = faust.EventT | RawRecord | None
"""What to acknowledge once an item is finished: the internal record, when it is its last event."""
Item = tuple[dict[str, Any] | None, Done]
"""A scheduler item: one event's envelope (None: nothing to deliver) and what it acknowledges."""


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


async def send(
    runtime: Runtime, integration: Integration, contact: str, request: Request
) -> tuple[DeliveryResult, bool]:
    """Deliver through the integration's batcher (coalesced with the contact's neighbours) or on its
    own; returns the event's result and whether it is the last of its contact's group."""
    batcher = runtime.batchers.get(integration.id)
    if batcher is None:
        return await send_through_gate(
            runtime.sender, runtime.gates[integration.id], integration, request
        ), True
    placed = await batcher.submit(contact, destination_of(integration).batch.item_of(request))
    return placed.result, placed.last


async def deliver_to(runtime: Runtime, integration: Integration, envelope: dict[str, Any]) -> None:
    """Deliver one event to one integration and record its one outcome. An unexpected exception
    (decoding, mapping, sending or building the outcome) becomes a ``failed`` / ``internal_error``
    outcome; raises only when the outcome cannot be written (the scheduler then stops the worker)."""
    started = time.time()
    source = source_of_envelope(envelope)
    try:
        outcome, request = await delivery_outcome(runtime, integration, envelope, source)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a handler that raises would leave the event without an outcome
        log.exception(
            "delivery crashed: integration=%s", integration.id, extra={"integration": integration.id}
        )
        await record_crash(runtime, integration, envelope, exc, started)
        return
    context = None if outcome["status"] == "delivered" else ErrorContext(TASK_PUT, started_at=started)
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
    await reject(
        runtime,
        source,
        exception_text(exc),
        "failed",
        "internal_error",
        [integration],
        message_id=envelope_message_id(envelope, source),
        context=ErrorContext(TASK_PUT, exc, started),
    )


async def delivery_outcome(
    runtime: Runtime, integration: Integration, envelope: dict[str, Any], source: SourceRecord
) -> tuple[dict[str, Any], Request]:
    """Deliver the envelope's event; its outcome and the request behind it."""
    resolved = ResolvedEvent(decoded_event(runtime, envelope, source), envelope["traits"])
    contact = resolved.contact_id
    assert contact is not None and resolved.event.message_id is not None
    key = state_key(integration, contact)
    # Mailgun vars of a contact's earlier event still in flight come first: it is applied before us.
    known = runtime.pending_state[key] if key in runtime.pending_state else runtime.destination_state.get(key)
    request = build_request(resolved, integration, known)
    if request.state is not None:
        runtime.pending_state[key] = request.state
    try:
        result, last_of_contact = await send(runtime, integration, contact, request)
    finally:
        if request.state is not None and runtime.pending_state.get(key) is request.state:
            del runtime.pending_state[key]
    note = None
    if result.status == "delivered":
        if request.state is not None and last_of_contact:
            note = keep_state(runtime, key, request.state)
    else:
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
        error=result.error or note,
    )
    return outcome, request


def keep_state(runtime: Runtime, key: str, state: dict[str, Any]) -> str | None:
    """Store a contact's destination state (Mailgun vars) after its delivery; when it is too large for
    the table's changelog, keep the state stored before and return what the outcome says about it."""
    try:
        runtime.destination_state[key] = state
    except ValueTooLargeError as exc:
        log.warning("destination state not kept: %s", exc, extra={"state_key": key})
        return (
            f"delivered, but the merged vars are not remembered ({exc}): the contact's next event "
            "merges into the vars remembered before"
        )
    return None


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

        async def handle(item: Item) -> None:
            envelope, _ = item
            if envelope is not None:
                await deliver_to(runtime, integration, envelope)

        async def ack(item: Item) -> None:
            _, done = item
            if done is not None:
                await acknowledge(stream, runtime.app.consumer, done)

        async def fail(item: Item, exc: Exception) -> None:
            """The outcome of an event whose handler raised (``deliver_to`` turns its own failures into
            outcomes; this is for anything else)."""
            envelope, _ = item
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
                await scheduler.submit(tp, offset, (tp, offset), (None, done), handle)
                return
            for n, envelope in enumerate(envelopes):
                # With batching the batcher keeps each contact's order (and coalesces); without it the
                # scheduler runs a contact's events one after another.
                key = (tp, offset, n) if batching else envelope["contact"]
                item = (envelope, done if n == len(envelopes) - 1 else None)
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
