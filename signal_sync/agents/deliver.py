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

from signal_sync.agents.ingest import reject
from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import decode_event
from signal_sync.destinations import Integration
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.gate import IntegrationGate
from signal_sync.engine.ordered import KeyOrderedScheduler
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import build_request, state_key
from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)


def source_of_envelope(envelope: dict[str, Any]) -> SourceRecord:
    """The original input record an envelope was made from (for outcomes and dead letters)."""
    topic, partition, offset, timestamp_ms = envelope["src"]
    return SourceRecord(topic, partition, offset, timestamp_ms, envelope["raw"].encode("utf-8"))


async def send_through_gate(
    runtime: Runtime, gate: IntegrationGate, integration: Integration, request: Request
) -> DeliveryResult:
    """Deliver once admitted; on an integration fault pause the integration and probe until it answers."""
    while True:
        async with gate.admitted():
            result = await runtime.sender.deliver(integration, request)
        if not result.fault:
            gate.resume()
            return result
        gate.pause(result.reason or "fault", result.hint)
        async with gate.probe_lock:  # one prober; the others wait for the gate to reopen
            if not gate.state.paused:
                continue
            for delay in gate.probe_delays():
                await asyncio.sleep(delay)
                result = await runtime.sender.deliver(integration, request)
                if not result.fault:
                    gate.resume()
                    return result


async def deliver_to(runtime: Runtime, integration: Integration, envelope: dict[str, Any]) -> None:
    """Deliver one event to one integration and record the outcome; never raises."""
    source = source_of_envelope(envelope)
    try:
        resolved = ResolvedEvent(decode_event(source.value), envelope["traits"])
        contact = resolved.contact_id
        assert contact is not None and resolved.event.message_id is not None
        key = state_key(integration, contact)
        request = build_request(resolved, integration, runtime.destination_state.get(key))
        gate = runtime.gates[integration.id]
        result = await send_through_gate(runtime, gate, integration, request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a handler that raises would be acked without an outcome
        log.exception("delivery crashed: integration=%s", integration.id)
        await reject(
            runtime, source, f"{type(exc).__name__}: {exc}", "failed", "internal_error", [integration]
        )
        return
    if result.status == "delivered":
        gate.record_delivered()
        if request.state is not None:
            runtime.destination_state[key] = request.state
    else:
        gate.record_failed()
        log.warning(
            "delivery failed: integration=%s message_id=%s reason=%s attempts=%s",
            integration.id,
            resolved.event.message_id,
            result.reason,
            result.attempts,
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
    await emit(runtime, outcome, source, request.view())


def attach_one(runtime: Runtime, integration: Integration) -> None:
    """Register the delivery agent of one integration."""
    topic = runtime.delivery_topics[integration.id]
    settings = runtime.settings.delivery

    async def deliver(stream: faust.StreamT) -> None:
        stream = stream.noack()
        scheduler = KeyOrderedScheduler(ack=stream.ack, max_in_flight=settings.max_in_flight)
        runtime.schedulers[integration.id] = scheduler

        async def handle(envelope: dict[str, Any]) -> None:
            await deliver_to(runtime, integration, envelope)

        async def skip(_: Any) -> None:
            return None

        async for event in stream.events():
            message = event.message
            replay = runtime.replays.is_replay(message.tp, message.offset)
            await scheduler.submit(
                message.tp,
                message.offset,
                ("replay", message.offset) if replay else message.key,
                event,
                skip if replay else (lambda e: handle(e.value)),
            )

    runtime.app.agent(topic, name=f"deliver-{integration.id}")(deliver)


def attach(runtime: Runtime) -> None:
    """Register one delivery agent per integration."""
    for integration in runtime.integrations.values():
        attach_one(runtime, integration)
