"""Writing outcomes and dead letters from inside an agent.

Records are queued on the runtime's ``OutputProducer`` before the event is acknowledged, and
that producer is flushed before Faust commits any offset: that is what makes "an input offset
is committed only after its outcomes are written" hold.
"""

from __future__ import annotations

from typing import Any

from signal_sync.destinations.base import Request
from signal_sync.outcomes import SourceRecord, dead_letter, encode
from signal_sync.runtime import Runtime

DEAD_LETTER_STATUSES = frozenset({"failed", "invalid"})


async def emit(
    runtime: Runtime, outcome: dict[str, Any], source: SourceRecord, request: Request | None = None
) -> None:
    """Publish one outcome (keyed by contact, else message), plus a dead letter when it failed;
    then tell the observers (metrics, debugger). ``request`` is the request behind it, if any."""
    key = (outcome["contact_id"] or outcome["message_id"]).encode()
    topics = runtime.settings.kafka
    await runtime.outputs.send(topics.deliveries_topic, key, encode(outcome))
    if outcome["status"] in DEAD_LETTER_STATUSES:
        await runtime.outputs.send(topics.dead_letter_topic, key, encode(dead_letter(outcome, source)))
    for observer in runtime.observers:
        observer(outcome, request)
