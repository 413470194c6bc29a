"""Topic names and the Kafka admin calls the worker makes before it starts.

The worker never auto-creates the user-facing topics (source, deliveries, dead letters):
a typo in a topic name should fail at start with the name in the message, not create a
topic nobody reads. ``signal-sync topics create`` creates them on purpose.

Every confluent-kafka client is configured through ``streams.clients.client_config`` so TLS,
SASL, the ``kafka.client_config`` passthrough and the routing of librdkafka's log lines apply to
the admin calls and ``signal-sync produce`` exactly as to the worker. The first call that needs the
brokers (``topic_partitions``) fails at once, naming the setting, when they refuse the credentials,
and after ``ADMIN_TIMEOUT_S`` when they cannot be reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic, ResourceType

from signal_sync.config import KafkaSettings
from signal_sync.errors import ConfigError
from signal_sync.streams.clients import client_config as client_config
from signal_sync.streams.clients import client_log, explain

ADMIN_TIMEOUT_S = 15.0
METADATA_ATTEMPT_S = 0.5
"""Metadata requests are made in slices this long, so refused credentials end the wait at once."""
MAX_MESSAGE_BYTES = "max.message.bytes"
DELETE_RETENTION_MS = "delete.retention.ms"
log = logging.getLogger(__name__)


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """A confluent-kafka admin client for the configured cluster."""
    return AdminClient(client_config(kafka))


def user_topics(kafka: KafkaSettings) -> list[str]:
    """The topics a user must provide: source, deliveries, dead letters (and erasures, when set)."""
    topics = [kafka.source_topic, kafka.deliveries_topic, kafka.dead_letter_topic]
    if kafka.erasures_topic:
        topics.append(kafka.erasures_topic)
    return topics


def created_topic_config(kafka: KafkaSettings, name: str) -> dict[str, str]:
    """The config ``topics create`` gives a new user topic: the erasures topic a bounded retention
    (``kafka.retention_ms``); the others the broker's defaults (their retention is the operator's)."""
    if name == kafka.erasures_topic:
        return {"cleanup.policy": "delete", "retention.ms": str(kafka.retention_ms)}
    return {}


def cluster_metadata(kafka: KafkaSettings, timeout_s: float = ADMIN_TIMEOUT_S) -> ClusterMetadata:
    """The cluster's metadata; ``ConfigError`` naming the setting at fault when the brokers refuse
    the credentials (at once) or cannot be reached within ``timeout_s``."""
    config = client_config(kafka)
    router = client_log(config)
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=METADATA_ATTEMPT_S)
        except KafkaException as exc:
            admin.poll(0)  # serve librdkafka's log lines and errors: the cause is among them
            refused = router.authentication_error if router is not None else None
            if refused is None and time.monotonic() < deadline:
                continue
            cause = refused or (router.last_error if router is not None else None) or str(exc)
            raise ConfigError(explain(kafka, cause)) from None


def topic_partitions(kafka: KafkaSettings) -> dict[str, int]:
    """Partition count of each existing user topic."""
    metadata = cluster_metadata(kafka)
    return {
        name: len(metadata.topics[name].partitions)
        for name in user_topics(kafka)
        if name in metadata.topics and metadata.topics[name].error is None
    }


def check_topics(kafka: KafkaSettings) -> int:
    """Fail with the missing topic's name, else return the source topic's partition count."""
    found = topic_partitions(kafka)
    fields = {kafka.source_topic: "source_topic", kafka.deliveries_topic: "deliveries_topic"}
    if kafka.erasures_topic:
        fields[kafka.erasures_topic] = "erasures_topic"
    for name in user_topics(kafka):
        if name not in found:
            field = fields.get(name, "dead_letter_topic")
            raise ConfigError(
                f"kafka.{field}: topic {name!r} does not exist; "
                "create it with `signal-sync topics create -c FILE`"
            )
    check_copartitioned(kafka, found)
    return kafka.partitions or found[kafka.source_topic]


def check_copartitioned(kafka: KafkaSettings, found: dict[str, int]) -> None:
    """The erasures topic must have the source topic's partition count: a request is read on the
    partition of the same number as its person's events, where the identities they taught live."""
    erasures = kafka.erasures_topic
    if erasures and found.get(erasures) != found.get(kafka.source_topic):
        raise ConfigError(
            f"kafka.erasures_topic: topic {erasures!r} has {found.get(erasures)} partitions, the source "
            f"topic {kafka.source_topic!r} {found.get(kafka.source_topic)}; they must match (an erasure "
            "request is read beside its person's events, keyed the same way)"
        )


def create_topics(kafka: KafkaSettings, partitions: int, replication_factor: int) -> list[str]:
    """Create the missing user topics; returns the names created. A new erasures topic gets the
    existing source topic's partition count (else ``partitions``, as the source topic gets)."""
    existing = topic_partitions(kafka)
    if kafka.erasures_topic and kafka.erasures_topic not in existing and kafka.source_topic in existing:
        partitions_of = {kafka.erasures_topic: existing[kafka.source_topic]}  # co-partitioned
    else:
        partitions_of = {}
    wanted = [
        NewTopic(
            name,
            num_partitions=partitions_of.get(name, partitions),
            replication_factor=replication_factor,
            config=created_topic_config(kafka, name),
        )
        for name in user_topics(kafka)
        if name not in existing
    ]
    if not wanted:
        return []
    admin = admin_client(kafka)  # keep a reference: the futures die with the client
    futures = admin.create_topics(wanted, operation_timeout=ADMIN_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise ConfigError(f"cannot create topic {name!r}: {exc}") from None
    return [topic.topic for topic in wanted]


def max_message_bytes(kafka: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """``max.message.bytes`` of each topic as the broker has it (its default or the topic's own):
    the largest record batch it accepts. A topic whose config cannot be read is left out, with a
    warning: the producer's own limit applies."""
    return topic_config_ints(
        kafka, topics, MAX_MESSAGE_BYTES, "records for it are bounded by the producer's limit"
    )


def delete_retention_ms(kafka: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """``delete.retention.ms`` of each (compacted) topic: how long the broker keeps a tombstone after
    compaction reached it. A topic whose config cannot be read is left out, with a warning: without
    it, no state kept on disk for the topic's partitions can be trusted to hold every deletion."""
    return topic_config_ints(
        kafka, topics, DELETE_RETENTION_MS, "state kept on disk is not used: its whole changelog is read"
    )


def topic_config_ints(
    kafka: KafkaSettings, topics: Iterable[str], name: str, otherwise: str
) -> dict[str, int]:
    """The integer config ``name`` of each topic as the broker has it (its default or the topic's
    own). A topic whose config cannot be read (missing, or no DescribeConfigs permission) is left
    out, with a warning that ends in ``otherwise`` (what applies instead)."""
    admin = admin_client(kafka)  # keep a reference: the futures die with the client
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in dict.fromkeys(topics)]
    values: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S).items():
        try:
            values[resource.name] = int(future.result(timeout=ADMIN_TIMEOUT_S)[name].value)
        except (KafkaException, KeyError, TimeoutError, TypeError, ValueError) as exc:
            log.warning(
                "cannot read %s of topic %r (%s); %s",
                name,
                resource.name,
                exc,
                otherwise,
                extra={"topic": resource.name},
            )
    return values
