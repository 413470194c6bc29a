"""Creating the worker's own topics before Faust starts.

Faust declares internal topics itself, but on a freshly started cluster its consumer can
subscribe before the new topic's metadata has propagated; it then logs "Ignoring
missing topic" and never consumes it. Creating them up front, and waiting until the
metadata shows every partition, removes that race. Changelogs are compacted, as Faust
would make them.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from signal_sync.config import KafkaSettings
from signal_sync.errors import ConfigError
from signal_sync.streams.topics import admin_client

READY_TIMEOUT_S = 30.0
IDENTITIES_TABLE = "identities"
DESTINATION_STATE_TABLE = "destination-state"


def delivery_topic(app_id: str, integration_id: str) -> str:
    """The internal topic one integration delivers from (its own offsets: isolation)."""
    return f"{app_id}-deliver-{integration_id}"


READ_AHEAD_IN_FLIGHTS = 4
"""Events a delivery agent reads ahead of its work: this many times what it runs at once."""
MIN_READ_AHEAD_RECORDS = 16


def delivery_read_ahead(max_in_flight: int, forward_max_events: int, partitions: int) -> int:
    """How many events a delivery agent's stream buffers before Kafka fetching pauses (the topic's
    ``maxsize``, which its ``ReadAheadQueue`` counts in events; Faust pauses at 80% of it and
    resumes at 40%; what one fetch returned for a partition before its pause is queued beyond it:
    ``streams.read_ahead``).

    ``READ_AHEAD_IN_FLIGHTS`` times ``max_in_flight``, and never less than
    ``MIN_READ_AHEAD_RECORDS`` full internal records (up to ``forward_max_events`` events spread
    over ``partitions``, ``engine.forwarder``; a backlog fills them), so a fetch of full records
    does not pause after every record. Each event is held decoded while it waits: a bound of
    ``worker.stream_buffer_maxsize`` records (4,096, counted for the source topic's one-event
    records) would let a draining backlog park tens of thousands of events per integration."""
    events_per_record = max(1, forward_max_events // max(1, partitions))
    return max(READ_AHEAD_IN_FLIGHTS * max_in_flight, MIN_READ_AHEAD_RECORDS * events_per_record)


def internal_topic_configs(kafka: KafkaSettings, integration_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each internal topic's name and its topic config: the delivery topics a bounded retention
    (``kafka.retention_ms``: their values carry events, emails included), the changelogs compaction
    (an erased person's tombstones make compaction drop their values)."""
    compacted = {"cleanup.policy": "compact"}
    bounded = {"cleanup.policy": "delete", "retention.ms": str(kafka.retention_ms)}
    topics: dict[str, dict[str, str]] = {delivery_topic(kafka.app_id, i): bounded for i in integration_ids}
    return topics | dict.fromkeys(changelog_topics(kafka), compacted)


def changelog_topics(kafka: KafkaSettings) -> list[str]:
    """The tables' changelog topics (Faust's names: ``{app_id}-{table}-changelog``)."""
    return [f"{kafka.app_id}-{table}-changelog" for table in (IDENTITIES_TABLE, DESTINATION_STATE_TABLE)]


def written_topics(kafka: KafkaSettings, integration_ids: list[str]) -> list[str]:
    """Every topic the worker's output producer writes: the internal ones, deliveries and dead letters."""
    return [*internal_topic_configs(kafka, integration_ids), kafka.deliveries_topic, kafka.dead_letter_topic]


def ensure_internal_topics(kafka: KafkaSettings, integration_ids: list[str], partitions: int) -> None:
    """Create missing internal topics and wait until all are visible with ``partitions`` partitions."""
    admin = admin_client(kafka)
    wanted = internal_topic_configs(kafka, integration_ids)
    existing = admin.list_topics(timeout=READY_TIMEOUT_S).topics
    for name in wanted:
        if name in existing and len(existing[name].partitions) != partitions:
            raise ConfigError(
                f"kafka.partitions: internal topic {name!r} has {len(existing[name].partitions)} partitions, "
                f"the source topic {partitions}; they must match (Faust co-partitioning)"
            )
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=kafka.replication_factor, config=config)
        for name, config in wanted.items()
        if name not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing).items():
            try:
                future.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigError(f"cannot create internal topic {name!r}: {exc}") from None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if all(
            name in topics
            and len(topics[name].partitions) == partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in wanted
        ):
            return
        time.sleep(0.2)
    raise ConfigError(f"internal topics {sorted(wanted)} did not become ready within {READY_TIMEOUT_S:.0f}s")
