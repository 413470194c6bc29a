"""``signal-sync replay-dlq``: re-inject dead-lettered records into the source topic.

Each replayed record carries a header naming its integration, so the worker delivers it to
that integration only (the others already have their outcome). The dead-letter topic is
read from its start to the end offsets seen at launch, without committing, so a replay
can be repeated; ``--integration`` and ``--since`` narrow it down.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

import orjson
import typer
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from signal_sync.cli.options import ConfigOption
from signal_sync.cli.produce import record_key
from signal_sync.config import load_settings
from signal_sync.errors import SignalSyncError
from signal_sync.streams.routing import REPLAY_HEADER
from signal_sync.streams.topics import client_config


def original_bytes(letter: dict) -> bytes:  # type: ignore[type-arg]
    """The dead letter's original record value."""
    if letter["original_encoding"] == "base64":
        return base64.b64decode(letter["original"])
    return letter["original"].encode("utf-8")


def read_dead_letters(config: dict[str, str], topic: str) -> list[tuple[int, dict]]:  # type: ignore[type-arg]
    """Every (timestamp_ms, dead letter) from the start of the topic to its current end."""
    consumer = Consumer(
        {**config, "group.id": f"signal-sync-replay-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise SignalSyncError(f"kafka.dead_letter_topic: topic {topic!r} does not exist")
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        letters: list[tuple[int, dict]] = []  # type: ignore[type-arg]
        while ends:
            message = consumer.poll(5)
            if message is None:
                raise SignalSyncError(f"timed out reading {topic}")
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SignalSyncError(f"reading {topic}: {message.error()}")
            letters.append((message.timestamp()[1], orjson.loads(message.value())))
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return letters
    finally:
        consumer.close()


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("replay-dlq")
    def replay_dlq(
        config: ConfigOption,
        integration: Annotated[
            str | None, typer.Option(help="Only dead letters of this integration.")
        ] = None,
        since: Annotated[
            datetime | None, typer.Option(help="Only dead letters written at or after this time (ISO 8601).")
        ] = None,
        dry_run: Annotated[bool, typer.Option(help="Count what would be replayed; produce nothing.")] = False,
    ) -> None:
        """Re-inject failed and invalid records into the source topic, each for its own integration."""
        settings = load_settings(config)
        ids = {i.id for i in settings.integrations}
        if integration is not None and integration not in ids:
            raise SignalSyncError(
                f"--integration: no integration {integration!r} in the config ({sorted(ids)})"
            )
        since_ms = since.timestamp() * 1000 if since is not None else None
        kafka = client_config(settings.kafka)
        chosen, truncated = [], 0
        for timestamp_ms, letter in read_dead_letters(kafka, settings.kafka.dead_letter_topic):
            if integration is not None and letter["integration"] != integration:
                continue
            if since_ms is not None and timestamp_ms < since_ms:
                continue
            if letter.get("original_truncated"):
                truncated += 1
                continue
            chosen.append(letter)
        if not dry_run and chosen:
            producer = Producer({**kafka, "enable.idempotence": True})
            for letter in chosen:
                value = original_bytes(letter)
                producer.produce(
                    settings.kafka.source_topic,
                    key=record_key(value),
                    value=value,
                    headers=[(REPLAY_HEADER, letter["integration"].encode())],
                )
                producer.poll(0)
            if producer.flush(30):
                raise SignalSyncError("some replayed records were not acknowledged by Kafka")
        verb = "would replay" if dry_run else "replayed"
        typer.echo(
            f"{verb} {len(chosen)} record(s) to {settings.kafka.source_topic}; "
            f"skipped {truncated} truncated (too large to replay)"
        )
