"""``signal-sync replay-dlq``: re-inject dead-lettered records into the source topic.

Each replayed record is the original (key, value, headers) plus a header naming its integration,
so the worker delivers it to that integration only (the others already have their outcome).

The dead-letter topic is streamed, never held: one letter at a time is read, filtered and handed to
the producer, and after every batch (``BATCH_MESSAGES`` letters or ``BATCH_BYTES``) the producer is
flushed and then the progress committed. Progress is kept per integration, in the consumer group
``<app_id>-replay-dlq-<integration>`` (committed offsets of the dead-letter topic, nothing else),
so a second run replays only what was dead-lettered since, and replaying one integration does not
use up the letters of another. A run reads up to the end offsets seen at its start.
``--from-beginning`` (``--reset``) replays everything again on purpose; ``--since`` passes over
letters whose outcome was decided earlier (they count as done); letters whose original was cut to
fit the topic are counted and passed over. Both dead-letter formats are read
(``dead_letters.read_letter``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic_core
import typer
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.dead_letters import Letter, read_letter
from signal_sync.errors import SignalSyncError
from signal_sync.streams.client_properties import KEYED_PRODUCER
from signal_sync.streams.routing import REPLAY_HEADER
from signal_sync.streams.topics import client_config, cluster_metadata

BATCH_MESSAGES = 500
BATCH_BYTES = 8 * 1024 * 1024
"""Letters read between two flushes and commits: bounds what the producer holds at once."""
IDLE_TIMEOUT_S = 30.0
"""How long the topic may give nothing before its end was reached (then the run fails)."""
KAFKA_TIMEOUT_S = 15.0
FLUSH_TIMEOUT_S = 60.0
READER = {
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "queued.max.messages.kbytes": 16 * 1024,  # what librdkafka prefetches, in KiB
    "fetch.max.bytes": 8 * 1024 * 1024,  # a larger letter still comes, alone
}


KEY_FIELDS = ("anonymous_id", "anonymousId", "user_id", "userId", "message_id", "messageId")


def legacy_key(value: bytes | None) -> bytes | None:
    """The key of an old-format letter's original, which that format did not keep: the one
    ``signal-sync produce`` gives it (``cli.produce.record_key``). Parsed with pydantic-core, whose
    error for a value that is not JSON does not copy the value (orjson's holds it many times over)."""
    try:
        data = pydantic_core.from_json(value or b"")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for name in KEY_FIELDS:
        key = data.get(name)
        if isinstance(key, str) and key:
            return key.encode()
    return None


def progress_group(app_id: str, integration_id: str) -> str:
    """The consumer group that holds an integration's replay progress."""
    return f"{app_id}-replay-dlq-{integration_id}"


def parse_since(text: str | None) -> datetime | None:
    """``--since``: ISO 8601, a date or a date and time, naive meaning UTC."""
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise SignalSyncError(f"--since: {text!r} is not an ISO 8601 date or time") from None
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


@dataclass
class Report:
    """What a run did."""

    replayed: int = 0
    truncated: int = 0
    older: int = 0
    unreadable: int = 0


@dataclass
class Progress:
    """Each chosen integration's replay position per partition: from its group, or from the log start."""

    consumers: dict[str, Consumer]
    positions: dict[str, dict[int, int]] = field(default_factory=dict)

    def load(self, topic: str, bounds: dict[int, tuple[int, int]], from_beginning: bool) -> None:
        """Read the committed positions; a position outside the partition's offsets, none, or
        ``from_beginning`` starts at the log start."""
        partitions = [TopicPartition(topic, p) for p in bounds]
        for integration, consumer in self.consumers.items():
            committed = {
                tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)
            }
            self.positions[integration] = {}
            for partition, (low, high) in bounds.items():
                offset = committed.get(partition, OFFSET_INVALID)
                start = (
                    low if from_beginning or offset == OFFSET_INVALID or not low <= offset <= high else offset
                )
                self.positions[integration][partition] = start

    def start(self, partition: int) -> int:
        """Where reading a partition starts: the earliest position of any chosen integration."""
        return min(positions[partition] for positions in self.positions.values())

    def wants(self, integration: str, partition: int, offset: int) -> bool:
        """Whether a letter is a chosen integration's and not yet replayed for it."""
        positions = self.positions.get(integration)
        return positions is not None and offset >= positions[partition]

    def commit(self, topic: str, read_to: dict[int, int]) -> None:
        """Every chosen integration has now handled each partition up to ``read_to``."""
        for integration, consumer in self.consumers.items():
            moved = [
                TopicPartition(topic, partition, offset)
                for partition, offset in read_to.items()
                if offset > self.positions[integration][partition]
            ]
            if moved:
                consumer.commit(offsets=moved, asynchronous=False)
                for tp in moved:
                    self.positions[integration][tp.partition] = tp.offset

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()


class Replayer:
    """Streams the dead-letter topic into the source topic, one batch at a time."""

    def __init__(
        self,
        kafka: dict[str, Any],
        dead_letter_topic: str,
        source_topic: str,
        progress: Progress,
        reader_group: str,
        *,
        since: datetime | None = None,
        dry_run: bool = False,
        batch_messages: int = BATCH_MESSAGES,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.topic = dead_letter_topic
        self.source_topic = source_topic
        self.progress = progress
        self.since = since
        self.dry_run = dry_run
        self.batch_messages = batch_messages
        self.batch_bytes = batch_bytes
        self.report = Report()
        self.reader = Consumer({**kafka, **READER, "group.id": reader_group})  # never joins or commits
        self.writer = None if dry_run else Producer({**kafka, **KEYED_PRODUCER})
        self.failures: list[str] = []

    def bounds(self) -> dict[int, tuple[int, int]]:
        """Each partition's log start and its end as of now (where this run stops)."""
        metadata = self.reader.list_topics(self.topic, timeout=KAFKA_TIMEOUT_S).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise SignalSyncError(f"kafka.dead_letter_topic: topic {self.topic!r} does not exist")
        return {
            p: self.reader.get_watermark_offsets(TopicPartition(self.topic, p), timeout=KAFKA_TIMEOUT_S)
            for p in metadata.partitions
        }

    def run(self, from_beginning: bool = False) -> Report:
        """Replay everything up to the end offsets seen now; commit progress after each batch."""
        bounds = self.bounds()
        self.progress.load(self.topic, bounds, from_beginning)
        ends = {p: high for p, (_, high) in bounds.items() if self.progress.start(p) < high}
        read_to: dict[int, int] = {}
        pending_messages = pending_bytes = 0
        for message in self.messages(ends, read_to):
            self.handle(message)
            pending_messages += 1
            pending_bytes += len(message.value() or b"")
            if pending_messages >= self.batch_messages or pending_bytes >= self.batch_bytes:
                self.checkpoint(read_to)
                pending_messages = pending_bytes = 0
        self.checkpoint(read_to)
        return self.report

    def messages(self, ends: dict[int, int], read_to: dict[int, int]) -> Iterator[Message]:
        """The letters below ``ends``, in offset order per partition; ``read_to`` follows what was read."""
        if not ends:
            return
        self.reader.assign([TopicPartition(self.topic, p, self.progress.start(p)) for p in ends])
        left = set(ends)
        idle_since = time.monotonic()
        while left:
            message = self.reader.poll(1.0)
            if message is None:
                if time.monotonic() - idle_since > IDLE_TIMEOUT_S:
                    raise SignalSyncError(
                        f"timed out reading {self.topic}: no record for {IDLE_TIMEOUT_S:.0f}s"
                    )
                continue
            idle_since = time.monotonic()
            partition, offset = message.partition(), message.offset()
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise SignalSyncError(f"reading {self.topic}: {error}")
                if partition in left:
                    read_to[partition] = max(read_to.get(partition, 0), min(offset, ends[partition]))
                    left.discard(partition)
                continue
            if partition not in left:
                continue
            if offset >= ends[partition]:
                read_to[partition] = max(read_to.get(partition, 0), ends[partition])
                left.discard(partition)
                continue
            read_to[partition] = offset + 1  # handled before the next checkpoint
            if offset + 1 >= ends[partition]:
                left.discard(partition)
            yield message

    def handle(self, message: Message) -> None:
        """Replay one record of the dead-letter topic if it is a chosen integration's letter."""
        _, stamp = message.timestamp()
        letter = read_letter(message.key(), message.value(), message.headers(), stamp if stamp >= 0 else None)
        if letter is None:
            self.report.unreadable += 1
            return
        if not self.progress.wants(letter.integration, message.partition(), message.offset()):
            return
        if letter.truncated:
            self.report.truncated += 1
            return
        if self.since is not None and letter.failed_at is not None and letter.failed_at < self.since:
            self.report.older += 1
            return
        self.report.replayed += 1
        if self.writer is not None:
            self.produce(letter)

    def produce(self, letter: Letter) -> None:
        """The original record plus the replay header (in place of any it had)."""
        assert self.writer is not None
        headers = [(name, value) for name, value in letter.headers if name != REPLAY_HEADER]
        headers.append((REPLAY_HEADER, letter.integration.encode()))
        key = legacy_key(letter.value) if letter.legacy else letter.key
        while True:
            try:
                self.writer.produce(
                    self.source_topic, letter.value, key, headers=headers, on_delivery=self.delivered
                )
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                self.writer.poll(0.1)
        self.writer.poll(0)

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failures.append(str(error))

    def checkpoint(self, read_to: dict[int, int]) -> None:
        """Wait until everything replayed so far is on the broker, then commit the progress."""
        if self.writer is None:
            return
        remaining = self.writer.flush(FLUSH_TIMEOUT_S)
        if remaining or self.failures:
            detail = self.failures[0] if self.failures else f"{remaining} still unacknowledged"
            raise SignalSyncError(
                f"some replayed records were not written ({detail}); progress not committed"
            )
        try:
            self.progress.commit(self.topic, read_to)
        except KafkaException as exc:
            raise SignalSyncError(f"replayed, but the progress could not be committed: {exc}") from None

    def close(self) -> None:
        self.reader.close()
        if self.writer is not None:
            self.writer.flush(FLUSH_TIMEOUT_S)


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("replay-dlq")
    def replay_dlq(
        config: ConfigOption,
        integration: Annotated[
            str | None, typer.Option(help="Only dead letters of this integration.")
        ] = None,
        since: Annotated[
            str | None,
            typer.Option(
                help="Only dead letters whose outcome was decided at or after this time (ISO 8601; "
                "naive means UTC). Earlier ones are passed over and count as done."
            ),
        ] = None,
        from_beginning: Annotated[
            bool,
            typer.Option(
                "--from-beginning",
                "--reset",
                help="Start from the topic's beginning, not from where the last run stopped.",
            ),
        ] = False,
        dry_run: Annotated[
            bool, typer.Option(help="Count what would be replayed; produce and commit nothing.")
        ] = False,
    ) -> None:
        """Re-inject failed and invalid records into the source topic, each for its own integration."""
        settings = load_settings(config)
        ids = [i.id for i in settings.integrations]
        if integration is not None and integration not in ids:
            raise SignalSyncError(
                f"--integration: no integration {integration!r} in the config ({sorted(ids)})"
            )
        chosen = [integration] if integration is not None else ids
        since_at = parse_since(since)
        topics = cluster_metadata(settings.kafka).topics  # unreachable or refused: one clear error
        for setting, name in (
            ("dead_letter_topic", settings.kafka.dead_letter_topic),
            ("source_topic", settings.kafka.source_topic),
        ):
            if name not in topics or topics[name].error is not None:
                raise SignalSyncError(f"kafka.{setting}: topic {name!r} does not exist")
        kafka = client_config(settings.kafka)
        app_id = settings.kafka.app_id
        progress = Progress(
            {
                i: Consumer({**kafka, "group.id": progress_group(app_id, i), "enable.auto.commit": False})
                for i in chosen
            }
        )
        replayer = Replayer(
            kafka,
            settings.kafka.dead_letter_topic,
            settings.kafka.source_topic,
            progress,
            f"{app_id}-replay-dlq",
            since=since_at,
            dry_run=dry_run,
        )
        try:
            report = replayer.run(from_beginning)
        finally:
            replayer.close()
            progress.close()
        verb = "would replay" if dry_run else "replayed"
        typer.echo(
            f"{verb} {report.replayed} record(s) to {settings.kafka.source_topic}; skipped "
            f"{report.truncated} truncated (too large to replay), {report.older} older than --since, "
            f"{report.unreadable} unreadable"
        )
