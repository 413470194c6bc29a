"""Stage 1: decode, stitch identity, drop what no integration takes, re-key by contact.

Runs on the source topic's partitioning (the identity table lives there), then forwards
each deliverable event to the internal topic of every integration that takes it, keyed
by ``contact_id``, so every event of one contact is delivered in order by one worker and
each integration progresses on its own offsets. Drops and invalid records get their
outcomes here and never reach stage 2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust

from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import decode_event, peek_message_id
from signal_sync.destinations import Integration
from signal_sync.errors import InvalidEventError
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import plan_event, remember, remembered_for
from signal_sync.runtime import Runtime
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.routing import replay_target
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import TailWatch

log = logging.getLogger(__name__)


def source_of_record(record: RawRecord) -> SourceRecord:
    """Position and payload of a record the sequence guard read from Kafka itself."""
    return SourceRecord(record.topic, record.partition, record.offset, record.timestamp_ms, record.value)


def source_of(event: faust.EventT) -> SourceRecord:
    """Position and payload of the Kafka record behind a Faust event."""
    message = event.message
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=message.timestamp * 1000 if message.timestamp else None,
        value=message.value,
    )


async def reject(
    runtime: Runtime,
    source: SourceRecord,
    error: str,
    status: str = "invalid",
    reason: str = "invalid_event",
    integrations: Iterable[Integration] | None = None,
) -> None:
    """A record we cannot process: one outcome and dead letter per integration (default: all)."""
    message_id = peek_message_id(source.value)
    position = {"topic": source.topic, "partition": source.partition, "offset": source.offset}
    log.warning(
        "%s at %s[%s]@%s: %s",
        reason,
        source.topic,
        source.partition,
        source.offset,
        error,
        extra={"reason": reason, "message_id": message_id, **position},
    )
    now = time.time()
    for integration in runtime.integrations.values() if integrations is None else integrations:
        outcome = runtime.outcomes.build(
            message_id=message_id,
            integration=integration,
            event_name=None,
            email=None,
            status=status,
            reason=reason,
            source=source,
            now=now,
            error=error,
        )
        await emit(runtime, outcome, source)


def targets_of(runtime: Runtime, headers: Any) -> list[Integration]:
    """All integrations, or only the one a ``replay-dlq`` record is addressed to."""
    only = replay_target(headers)
    if only is None:
        return list(runtime.integrations.values())
    return [runtime.integrations[only]] if only in runtime.integrations else []


async def ingest_one(runtime: Runtime, source: SourceRecord, integrations: list[Integration]) -> None:
    """Handle one source record completely for ``integrations``; never raises for bad input."""
    try:
        event = decode_event(source.value)
    except InvalidEventError as exc:
        await reject(runtime, source, str(exc), integrations=integrations)
        return
    plan = plan_event(event, integrations, remembered_for(event, runtime.identities))
    remember(runtime.identities, event, plan.learned)
    resolved = plan.resolved
    assert event.message_id is not None
    now = time.time()
    for integration, reason in plan.decisions:
        if reason is not None:
            outcome = runtime.outcomes.build(
                message_id=event.message_id,
                integration=integration,
                event_name=resolved.name,
                email=resolved.email,
                status="dropped",
                reason=reason,
                source=source,
                now=now,
                event=event,
            )
            await emit(runtime, outcome, source)
    if plan.to_send and resolved.contact_id:
        envelope = {
            "raw": (source.value or b"").decode("utf-8"),
            "traits": resolved.traits,
            "contact": resolved.contact_id,
            "src": [source.topic, source.partition, source.offset, source.timestamp_ms],
            "takers": len(plan.to_send),
        }
        for integration in plan.to_send:
            runtime.forwarder.add(integration.id, resolved.contact_id, envelope)
        runtime.decoded.keep(source.position, event, len(plan.to_send))


async def ingest_record(runtime: Runtime, source: SourceRecord, headers: Any) -> None:
    """Handle one source record; an unexpected error becomes a ``failed`` outcome, never a skip."""
    integrations = targets_of(runtime, headers)
    try:
        await ingest_one(runtime, source, integrations)
    except Exception as exc:  # an agent that raises skips the event for good
        log.exception(
            "ingest failed at %s[%s]@%s",
            source.topic,
            source.partition,
            source.offset,
            extra={"topic": source.topic, "partition": source.partition, "offset": source.offset},
        )
        error = f"{type(exc).__name__}: {exc}"
        await reject(runtime, source, error, "failed", "internal_error", integrations)


BACKLOG_LINGER_S = 0.5
"""In a backlog the ingest stage forwards when ``forward_max_events`` piled up, or after this long:
each internal record costs the delivery agents about what a source record costs."""


def in_backlog(consumer: Any, message: Any, threshold: int) -> bool:
    """Whether more than ``threshold`` records wait behind ``message`` in its partition (the
    consumer's high-water mark, as of its last fetch; not once the partition was revoked)."""
    if message is None or message.tp not in consumer.assignment():
        return False
    highwater = consumer.highwater(message.tp)
    return highwater is not None and highwater - message.offset > threshold


def attach(runtime: Runtime) -> None:
    """Register the ingest agent on the runtime's app.

    Records are acknowledged only after the envelopes made from them went to the producer
    (``Forwarder``): when enough piled up, or every ``delivery.forward_linger_ms`` (in a backlog,
    up to ``BACKLOG_LINGER_S``).
    """
    settings = runtime.settings.delivery

    @runtime.app.agent(runtime.source, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        stream = stream.noack()
        consumer = runtime.app.consumer
        unacked: list[faust.EventT | RawRecord] = []
        forwarding = asyncio.Lock()

        async def forward() -> None:
            async with forwarding:
                groups, done = runtime.forwarder.take(), unacked[:]
                unacked.clear()
                await runtime.forwarder.send(groups)
                for item in done:
                    await acknowledge(stream, consumer, item)

        last_message: Any = None  # the message read last (read by the ticker)

        async def forward_periodically() -> None:
            linger_s = settings.forward_linger_ms / 1000
            lingered = 0.0
            while True:
                await asyncio.sleep(linger_s)
                lingered += linger_s
                behind = in_backlog(consumer, last_message, settings.forward_max_events)
                if behind and lingered < BACKLOG_LINGER_S:
                    continue  # fuller records for the delivery agents; latency is the backlog's anyway
                lingered = 0.0
                try:
                    await forward()
                except Exception:  # unacknowledged records stay so: they are read again after a restart
                    log.exception("forwarding to the internal topics failed")

        async def ingest_raw(record: RawRecord) -> None:
            """A record Faust did not hand to this agent, read by the sequence guard."""
            await ingest_record(runtime, source_of_record(record), record.headers)
            unacked.append(record)

        watch = TailWatch(runtime.app, runtime.sequence, runtime.source.get_topic_name())
        tasks = [asyncio.create_task(forward_periodically()), asyncio.create_task(watch.run(ingest_raw))]
        try:
            async for event in stream.events():
                async with watch.lock:
                    message = last_message = event.message
                    missing = await runtime.sequence.admit(message.tp, message.offset)
                    if missing is not None:
                        for record in missing:
                            await ingest_raw(record)
                        await ingest_record(runtime, source_of(event), message.headers)
                    unacked.append(event)
                    if runtime.forwarder.full:
                        await forward()
        finally:
            for task in tasks:
                task.cancel()
