"""``passthrough``: the Kafka side alone, the ceiling for this machine.

One Faust agent reads each input record, decodes it with orjson, and writes one
outcome-sized record (the fields and size of a real outcome) to the outcome topic; no
identity, no mapping, no HTTP. Whatever signal-sync does beyond this costs throughput.
"""

from __future__ import annotations

import time
import uuid

import faust
import orjson
from faust_common import RAW, load_config, make_app, run

from signal_sync.outcomes import OUTCOME_SCHEMA, iso_utc

NAMESPACE = uuid.UUID("00000000-0000-4000-8000-000000000001")


def outcome_for(event: dict, now: float, integration: str = "passthrough") -> dict:
    """A record shaped and sized like an outcome (sha-like ids, timestamps, nulls)."""
    message_id = str(event.get("messageId") or event.get("message_id") or "")
    return {
        "schema": OUTCOME_SCHEMA,
        "delivery_id": str(uuid.uuid5(NAMESPACE, message_id)),
        "message_id": message_id,
        "integration": integration,
        "destination": "mautic",
        "event": event.get("event") or event.get("type"),
        "contact_id": "0" * 64,
        "status": "delivered",
        "reason": None,
        "http_status": 200,
        "created": None,
        "attempts": 1,
        "event_timestamp": event.get("timestamp"),
        "completed_at": iso_utc(now),
        "latency_ms": None,
        "hint": None,
        "error": None,
    }


def main() -> None:
    config = load_config()
    app = make_app(config)
    source = app.topic(config["source_topic"], **RAW)
    outcomes = app.topic(config["outcome_topic"], **RAW)

    @app.agent(source, name="passthrough")
    async def passthrough(stream: faust.StreamT) -> None:
        async for event in stream.events():
            data = orjson.loads(event.message.value)
            await outcomes.send(key=event.message.key, value=orjson.dumps(outcome_for(data, time.time())))

    run(app)


if __name__ == "__main__":
    main()
