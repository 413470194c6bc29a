"""``signal-sync produce``: send a JSONL file of events to the source topic, keyed per person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from confluent_kafka import KafkaError, Producer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.errors import SignalSyncError
from signal_sync.streams.client_properties import KEYED_PRODUCER
from signal_sync.streams.clients import unwritten
from signal_sync.streams.topics import client_config, cluster_metadata


def record_key(line: bytes) -> bytes | None:
    """The per-person key a Segment-style producer uses: anonymous id, else user id, else message id."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for field in ("anonymous_id", "anonymousId", "user_id", "userId", "message_id", "messageId"):
        value = data.get(field)
        if isinstance(value, str) and value:
            return value.encode()
    return None


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("produce")
    def produce(
        config: ConfigOption,
        events: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL file of events.")],
    ) -> None:
        """Produce every non-blank line as one record, unchanged (invalid lines included, to test them)."""
        settings = load_settings(config)
        cluster_metadata(settings.kafka)  # unreachable brokers or refused credentials: one clear error
        kafka = client_config(settings.kafka)
        # An erasure request keyed the same way (``signal-sync erase``) lands beside the events.
        producer = Producer({**kafka, **KEYED_PRODUCER})
        count = 0
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        with events.open("rb") as lines:
            for line in lines:
                value = line.strip()
                if value:
                    producer.produce(
                        settings.kafka.source_topic, key=record_key(value), value=value, on_delivery=delivered
                    )
                    producer.poll(0)
                    count += 1
        remaining = producer.flush(30)
        if remaining or failures:
            detail = unwritten(settings.kafka, kafka, failures)
            raise SignalSyncError(f"{remaining + len(failures)} of {count} record(s) not written: {detail}")
        typer.echo(f"produced {count} record(s) to {settings.kafka.source_topic}")
