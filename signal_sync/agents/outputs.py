"""Writing outcomes and dead letters from inside an agent.

Records are queued on the runtime's ``OutputProducer`` before the event is acknowledged, and
that producer is flushed before Faust commits any offset: that is what makes "an input offset
is committed only after its outcomes are written" hold.
"""

from __future__ import annotations

import logging
from typing import Any

from signal_sync.dead_letters import ErrorContext, dead_letter
from signal_sync.destinations.base import Shown
from signal_sync.outcomes import SourceRecord
from signal_sync.runtime import Runtime

DEAD_LETTER_STATUSES = frozenset({"failed", "invalid"})
log = logging.getLogger(__name__)


async def emit(
    runtime: Runtime,
    outcome: dict[str, Any],
    source: SourceRecord,
    request: Shown | None = None,
    context: ErrorContext | None = None,
) -> None:
    """``emit_now``, then wait while librdkafka's queue is full (``OutputProducer.room``)."""
    emit_now(runtime, outcome, source, request, context)
    if runtime.outputs.waiting:
        await runtime.outputs.room()


def emit_now(
    runtime: Runtime,
    outcome: dict[str, Any],
    source: SourceRecord,
    request: Shown | None = None,
    context: ErrorContext | None = None,
) -> None:
    """Publish one outcome (keyed by contact, else message), plus a dead letter when it failed (the
    source record itself, its error context in headers: ``signal_sync.dead_letters``); then tell the
    observers (metrics, debugger). ``request`` is the request behind it, if any. The records are
    handed over without waiting: while librdkafka's queue is full they wait in the producer, and
    the caller waits for room (``emit``) before it takes more work.

    Both records are built and checked against their topics' limits before either is handed over,
    so an outcome is not written without its dead letter. Raises only when they cannot be written;
    an observer that raises is logged (the outcome is written by then)."""
    key = (outcome["contact_id"] or outcome["message_id"]).encode()
    topics = runtime.settings.kafka
    outputs = runtime.outputs
    value = runtime.encode_outcome(outcome)
    letter = None
    if outcome["status"] in DEAD_LETTER_STATUSES:
        dlq = topics.dead_letter_topic
        letter = dead_letter(outcome, source, outputs.record_limit(dlq), context, runtime.redact)
        outputs.check(dlq, letter.key, letter.value, letter.headers)
    outputs.send_soon(topics.deliveries_topic, key, value)
    if letter is not None:
        outputs.send_soon(
            topics.dead_letter_topic,
            letter.key,
            letter.value,
            headers=letter.headers,
            timestamp_ms=letter.timestamp_ms,
        )
    for observer in runtime.observers:
        try:
            observer(outcome, request)
        except Exception:
            log.exception("an outcome observer raised: integration=%s", outcome["integration"])
