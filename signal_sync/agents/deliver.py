"""Stage 2: per contact, in order, build each integration's request and deliver it.

Reads the internal contacts topic (keyed by contact_id), so one contact's events arrive
here in order on one partition. Mailgun's merged vars are read from and, after a
successful delivery, written to the destination-state table, which lives on the same
partitioning.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from signal_sync.agents.ingest import reject
from signal_sync.agents.outputs import emit
from signal_sync.codecs.events import decode_event
from signal_sync.destinations import Integration
from signal_sync.identity import ResolvedEvent
from signal_sync.outcomes import SourceRecord
from signal_sync.planner import build_request, state_key
from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)


def source_of_envelope(envelope: dict[str, Any]) -> SourceRecord:
    """The original input record an envelope was made from (for outcomes and dead letters)."""
    topic, partition, offset, timestamp_ms = envelope["src"]
    return SourceRecord(topic, partition, offset, timestamp_ms, envelope["raw"].encode("utf-8"))


async def deliver_to(
    runtime: Runtime, resolved: ResolvedEvent, integration: Integration, source: SourceRecord
) -> None:
    """Deliver one event to one integration and record the outcome."""
    contact = resolved.contact_id
    assert contact is not None and resolved.event.message_id is not None
    key = state_key(integration, contact)
    request = build_request(resolved, integration, runtime.destination_state.get(key))
    result = await runtime.sender.deliver(integration, request)
    if result.status == "delivered" and request.state is not None:
        runtime.destination_state[key] = request.state
    if result.status == "failed":
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


async def deliver_one(runtime: Runtime, envelope: dict[str, Any]) -> None:
    """Deliver one contact event to every integration it is for, in config order."""
    source = source_of_envelope(envelope)
    resolved = ResolvedEvent(decode_event(source.value), envelope["traits"])
    for integration_id in envelope["integrations"]:
        integration = runtime.integrations.get(integration_id)
        if integration is None:
            log.warning("integration %s is no longer configured; skipping its delivery", integration_id)
            continue
        await deliver_to(runtime, resolved, integration, source)


def attach(runtime: Runtime) -> None:
    """Register the delivery agent on the runtime's app."""

    @runtime.app.agent(runtime.contacts, name="deliver")
    async def deliver(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if runtime.replays.is_replay(event.message.tp, event.message.offset):
                continue
            envelope = event.value
            try:
                await deliver_one(runtime, envelope)
            except Exception as exc:  # an agent that raises skips the event for good
                log.exception("delivery crashed")
                await reject(
                    runtime,
                    source_of_envelope(envelope),
                    f"{type(exc).__name__}: {exc}",
                    "failed",
                    "internal_error",
                )
