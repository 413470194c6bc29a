"""Stage 1: decode, stitch identity, drop what no integration takes, re-key by contact.

Runs on the source topic's partitioning (the identity table lives there), then forwards
each deliverable event to the internal topic of every integration that takes it, keyed
by ``contact_id``, so every event of one contact is delivered in order by one worker and
each integration progresses on its own offsets. Drops and invalid records get their
outcomes here and never reach stage 2.

Every source record ends with exactly one outcome or forward per integration it is for, before
it is acknowledged: an event whose envelope cannot fit an internal record gets ``invalid`` /
``event_too_large``; an unexpected exception gets ``failed`` / ``internal_error`` for the
integrations that had nothing yet. When even that cannot be written, or a forward fails, the
record is not acknowledged and the worker stops (it reads the record again after the restart).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import faust

from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import InvalidFramedEventError, decode_event, decode_framed, peek_message_id
from signal_sync.codecs.schema_registry import is_framed
from signal_sync.dead_letters import TRANSFORMATION, ErrorContext
from signal_sync.destinations import Integration
from signal_sync.destinations.delivery import exception_text
from signal_sync.errors import InvalidEventError
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import plan_event, remember, remembered_for
from signal_sync.runtime import Runtime
from signal_sync.streams.changelog import writes_to_partition
from signal_sync.streams.json_table import ValueTooLargeError
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.routing import replay_target
from signal_sync.streams.sequence import acknowledge

log = logging.getLogger(__name__)


def source_of_record(record: RawRecord) -> SourceRecord:
    """A record the sequence guard read from Kafka itself."""
    return SourceRecord(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms,
        record.value,
        record.key,
        tuple(record.headers),
    )


def record_fields(source: SourceRecord) -> dict[str, Any]:
    """What an envelope carries of its source record beside the value, for the delivery stage's
    outcomes and dead letters: position and timestamp, and the key and headers when it has them
    (base64; a header's null value stays null). They count towards the envelope's size limit."""
    fields: dict[str, Any] = {"src": [source.topic, source.partition, source.offset, source.timestamp_ms]}
    if source.key is not None:
        fields["key"] = binascii.b2a_base64(source.key, newline=False).decode("ascii")
    if source.headers:
        fields["headers"] = [
            [name, None if value is None else binascii.b2a_base64(value, newline=False).decode("ascii")]
            for name, value in source.headers
        ]
    return fields


def source_of_envelope(envelope: dict[str, Any]) -> SourceRecord:
    """The original input record an envelope was made from (for outcomes and dead letters): a JSON
    record's text is in ``raw``, a framed record's bytes in ``raw_b64`` (base64)."""
    topic, partition, offset, timestamp_ms = envelope["src"]
    raw = envelope.get("raw")
    value = raw.encode("utf-8") if raw is not None else base64.b64decode(envelope["raw_b64"])
    key = envelope.get("key")
    headers = envelope.get("headers")
    return SourceRecord(
        topic,
        partition,
        offset,
        timestamp_ms,
        value,
        None if key is None else binascii.a2b_base64(key),
        ()
        if not headers
        else tuple((name, None if text is None else binascii.a2b_base64(text)) for name, text in headers),
    )


def envelope_message_id(envelope: dict[str, Any], source: SourceRecord) -> str:
    """The message id of an envelope's event, as its outcomes carry it (a framed record's is read
    from the event's JSON in ``json``)."""
    text = envelope.get("json")
    if text is None:
        return peek_message_id(source.value)
    return peek_message_id(text.encode("utf-8"), original=source.value)


def source_of(event: faust.EventT) -> SourceRecord:
    """The Kafka record behind a Faust event."""
    message = event.message
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=message.timestamp * 1000 if message.timestamp else None,
        value=message.value,
        key=message.key,
        headers=tuple(message.headers or ()),
    )


async def reject(
    runtime: Runtime,
    source: SourceRecord,
    error: str,
    status: str = "invalid",
    reason: str = "invalid_event",
    integrations: Iterable[Integration] | None = None,
    finished: set[str] | None = None,
    message_id: str | None = None,
    context: ErrorContext | None = None,
    operation: str | None = None,
) -> None:
    """A record we cannot process: one outcome and dead letter per integration (default: all); the
    id of each integration whose outcome was handed over is added to ``finished``. ``message_id``:
    the record's, when known (default: read from the record's JSON). ``context``: the stage and
    exception, for the dead letters' headers. ``operation``: the outcomes' (an erasure's)."""
    if message_id is None:
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
    targets = list(runtime.integrations.values() if integrations is None else integrations)
    outcomes = runtime.outcomes.build_each(
        [(integration, reason) for integration in targets],
        message_id=message_id,
        event_name=None,
        email=None,
        status=status,
        source=source,
        now=time.time(),
        error=error,
        operation=operation,
    )
    for integration, outcome in zip(targets, outcomes, strict=True):
        await emit(runtime, outcome, source, context=context)
        if finished is not None:
            finished.add(integration.id)


def targets_of(runtime: Runtime, headers: Any) -> list[Integration]:
    """All integrations, or only the one a ``replay-dlq`` record is addressed to."""
    only = replay_target(headers)
    if only is None:
        return list(runtime.integrations.values())
    return [runtime.integrations[only]] if only in runtime.integrations else []


async def ingest_one(
    runtime: Runtime, source: SourceRecord, integrations: list[Integration], finished: set[str]
) -> None:
    """Handle one source record completely for ``integrations``; never raises for bad input. The id
    of each integration whose outcome or forward was handed over is added to ``finished``. A record
    framed for a Schema Registry waits here while the registry cannot answer."""
    value = source.value
    framed_json = None
    try:
        if is_framed(value):
            assert value is not None
            event, framed_json = await decode_framed(value, runtime.framing)
        else:
            event = decode_event(value)
    except InvalidEventError as exc:
        message_id = exc.message_id if isinstance(exc, InvalidFramedEventError) else None
        await reject(
            runtime,
            source,
            str(exc),
            integrations=integrations,
            finished=finished,
            message_id=message_id,
            context=ErrorContext(exception=exc),
        )
        return
    plan = plan_event(event, integrations, remembered_for(event, runtime.identities))
    try:
        remember(runtime.identities, event, plan.learned)
    except ValueTooLargeError as exc:  # stitching knows less; the event itself goes on
        log.warning(
            "identity not remembered for the record at %s[%s]@%s: %s",
            source.topic,
            source.partition,
            source.offset,
            exc,
            extra={"topic": source.topic, "partition": source.partition, "offset": source.offset},
        )
    resolved = plan.resolved
    drops = [(integration, reason) for integration, reason in plan.decisions if reason is not None]
    if drops:
        outcomes = runtime.outcomes.dropped(drops, resolved, source, time.time())
        for (integration, _), outcome in zip(drops, outcomes, strict=True):
            await emit(runtime, outcome, source)
            finished.add(integration.id)
    to_send = plan.to_send
    if to_send and resolved.contact_id:
        envelope = {
            "traits": resolved.traits,
            "contact": resolved.contact_id,
            **record_fields(source),
            "takers": len(to_send),
        }
        size = len(value or b"")
        if framed_json is None:
            envelope["raw"] = (value or b"").decode("utf-8")
        else:  # binary (Avro is not UTF-8): the bytes in base64, and the event's JSON for stage 2
            envelope["raw_b64"] = base64.b64encode(value or b"").decode("ascii")
            envelope["json"] = framed_json.decode("utf-8")
            size += len(framed_json)
        takers = [integration.id for integration in to_send]
        runtime.forwarder.add(takers, resolved.contact_id, envelope, size)
        finished.update(takers)
        runtime.decoded.keep(source.position, event, len(takers))


async def ingest_record(runtime: Runtime, source: SourceRecord, headers: Any) -> None:
    """Handle one source record: one outcome or forward per integration it is for. An unexpected
    error becomes a ``failed`` / ``internal_error`` outcome for the integrations that have none yet
    (never a skip); raises only when even that cannot be written."""
    integrations = list(runtime.integrations.values())
    finished: set[str] = set()
    try:
        integrations = targets_of(runtime, headers)
        await ingest_one(runtime, source, integrations, finished)
        if len(finished) < len(integrations):
            missing = sorted(i.id for i in integrations if i.id not in finished)
            raise RuntimeError(f"no outcome was decided for {', '.join(missing)}")
    except Exception as exc:  # an agent that raises skips the event for good
        log.exception(
            "ingest failed at %s[%s]@%s",
            source.topic,
            source.partition,
            source.offset,
            extra={"topic": source.topic, "partition": source.partition, "offset": source.offset},
        )
        rest = [integration for integration in integrations if integration.id not in finished]
        context = ErrorContext(TRANSFORMATION, exc)
        await reject(
            runtime, source, exception_text(exc), "failed", "internal_error", rest, finished, context=context
        )


BACKLOG_LINGER_S = 0.5
"""In a backlog the ingest stage forwards when ``forward_max_events`` piled up, or after this long:
each internal record costs the delivery agents about what a source record costs."""


@dataclass
class Forwarding:
    """Source records handled by the ingest stage, acknowledged (in the order read) once every
    forward made from them went to the producer.

    A record that could not get its outcomes is never acknowledged, and from then on neither is
    any later one: Faust commits past a single unacknowledged record once the record after it is
    acknowledged (``Consumer._new_offset``), so the commit point holds only if nothing behind it
    is acknowledged. The worker stops and reads them all again after its restart."""

    runtime: Runtime
    acknowledge: Callable[[faust.EventT | RawRecord], Awaitable[None]]
    held: list[faust.EventT | RawRecord] = field(default_factory=list)
    failed: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ingest(self, source: SourceRecord, headers: Any, item: faust.EventT | RawRecord) -> None:
        """Handle one source record (``ingest_record``) and hold it for acknowledgement."""
        try:
            await ingest_record(self.runtime, source, headers)
        except Exception as exc:
            where = f"{source.topic}[{source.partition}]@{source.offset}"
            await self.fail(exc, f"the record at {where} has no outcome")
            return
        self.hold(item)

    def hold(self, item: faust.EventT | RawRecord) -> None:
        """A record whose outcomes and forwards were handed over (forwards wait in the forwarder)."""
        if not self.failed:
            self.held.append(item)

    async def forward(self) -> None:
        """Send what the forwarder holds, then acknowledge the records held until now. An envelope
        too large for an internal record gets its ``invalid`` / ``event_too_large`` outcome first
        (for the integration it was left out for); when the producer refuses a forward, ``fail``."""
        async with self._lock:
            if self.failed:
                return
            groups, done = self.runtime.forwarder.take(), self.held
            self.held = []
            try:
                records, refused = self.runtime.forwarder.encode(groups)
                for left_out in refused:
                    integration = self.runtime.integrations[left_out.integration_id]
                    source = source_of_envelope(left_out.envelope)
                    await reject(
                        self.runtime,
                        source,
                        str(left_out.error),
                        "invalid",
                        "event_too_large",
                        [integration],
                        message_id=envelope_message_id(left_out.envelope, source),
                        context=ErrorContext(exception=left_out.error),
                    )
                await self.runtime.forwarder.send(records)
            except Exception as exc:
                await self.fail(exc, f"forwarding to the internal topics failed ({len(done)} records)")
                return
            for item in done:
                await self.acknowledge(item)

    async def forward_now(self) -> bool:
        """``forward`` at once (the erasure agent's forwards go after the events held); False when
        forwarding has failed and nothing is sent any more."""
        await self.forward()
        return not self.failed

    async def fail(self, exc: Exception, what: str) -> None:
        """Acknowledge nothing from now on, and stop the worker."""
        self.failed = True
        self.held = []
        log.critical("%s; no record read from here on is acknowledged", what, exc_info=exc)
        await self.runtime.stop_worker(exc)


def attach(runtime: Runtime) -> None:
    """Register the ingest agent on the runtime's app.

    The agent reads the source in batches through ``runtime.source_reader``; Faust's stream of the
    source stays empty (the agent subscribes the topic, so the group assigns this worker the source
    partitions its identity table is kept for). Records are acknowledged only after the envelopes
    made from them went to the producer (``Forwarder``): when enough piled up, every
    ``delivery.forward_linger_ms`` (in a backlog, up to ``BACKLOG_LINGER_S``), and before a
    revocation goes on to Faust's commit.
    """
    settings = runtime.settings.delivery
    reader = runtime.source_reader

    @runtime.app.agent(runtime.source, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        consumer = runtime.app.consumer
        forwarding = Forwarding(runtime, lambda item: acknowledge(stream, consumer, item))
        runtime.forward_pending = forwarding.forward_now
        handling = asyncio.Lock()  # held while a batch is handled

        async def finish_revoked() -> None:
            """The record in hand finished (the rest of its batch is skipped), what it made forwarded."""
            async with handling:
                await forwarding.forward()

        reader.on_revoke = finish_revoked

        async def forward_periodically() -> None:
            linger_s = settings.forward_linger_ms / 1000
            lingered = 0.0
            while True:
                await asyncio.sleep(linger_s)
                lingered += linger_s
                if reader.behind and lingered < BACKLOG_LINGER_S:
                    continue  # fuller records for the delivery agents; latency is the backlog's anyway
                lingered = 0.0
                await forwarding.forward()

        ticker = asyncio.create_task(forward_periodically())
        try:
            while not forwarding.failed:
                try:
                    batch = await reader.read()
                except Exception as exc:
                    await forwarding.fail(exc, f"reading {reader.topic} failed")
                    return
                async with handling:
                    for record in batch.records:
                        if not reader.owns(batch, record):
                            continue  # revoked since it was read: its next owner reads it
                        for skipped in batch.skipped_before(record):
                            forwarding.hold(skipped)
                        with writes_to_partition(record.partition):  # no Faust event to take it from
                            await forwarding.ingest(source_of_record(record), record.headers, record)
                        if runtime.forwarder.full:
                            await forwarding.forward()
                    for skipped in batch.trailing:
                        if reader.owns(batch, skipped):
                            forwarding.hold(skipped)
        finally:
            ticker.cancel()
