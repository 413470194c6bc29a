"""Topic names and the Kafka admin calls the worker makes before it starts.

The worker never auto-creates the user-facing topics (source, deliveries, dead letters):
a typo in a topic name should fail at start with the name in the message, not create a
topic nobody reads. ``signal-sync topics create`` creates them on purpose.

Every confluent-kafka client is configured through ``client_config`` so TLS and SASL
apply to the admin calls and ``signal-sync produce`` exactly as to the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from signal_sync.config import KafkaSettings
from signal_sync.errors import ConfigError

ADMIN_TIMEOUT_S = 15.0
MAX_MESSAGE_BYTES = "max.message.bytes"
log = logging.getLogger(__name__)


def client_config(kafka: KafkaSettings) -> dict[str, str]:
    """librdkafka settings every confluent-kafka client (admin, producer) starts from:
    the bootstrap servers plus the configured TLS/SASL security. Faust's own clients get the
    same security from ``signal_sync.runtime.broker_credentials``."""
    config = {"bootstrap.servers": kafka.bootstrap_servers, "security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        assert kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password is not None
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.uses_tls and kafka.ssl_ca_file is not None:
        config["ssl.ca.location"] = str(kafka.ssl_ca_file)
    return config


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """A confluent-kafka admin client for the configured cluster."""
    return AdminClient(client_config(kafka))


def user_topics(kafka: KafkaSettings) -> list[str]:
    """The topics a user must provide: source, deliveries, dead letters."""
    return [kafka.source_topic, kafka.deliveries_topic, kafka.dead_letter_topic]


def topic_partitions(kafka: KafkaSettings) -> dict[str, int]:
    """Partition count of each existing user topic."""
    try:
        metadata = admin_client(kafka).list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise ConfigError(f"kafka.bootstrap_servers: cannot reach {kafka.bootstrap_servers}: {exc}") from None
    return {
        name: len(metadata.topics[name].partitions)
        for name in user_topics(kafka)
        if name in metadata.topics and metadata.topics[name].error is None
    }


def check_topics(kafka: KafkaSettings) -> int:
    """Fail with the missing topic's name, else return the source topic's partition count."""
    found = topic_partitions(kafka)
    fields = {kafka.source_topic: "source_topic", kafka.deliveries_topic: "deliveries_topic"}
    for name in user_topics(kafka):
        if name not in found:
            field = fields.get(name, "dead_letter_topic")
            raise ConfigError(
                f"kafka.{field}: topic {name!r} does not exist; "
                "create it with `signal-sync topics create -c FILE`"
            )
    return kafka.partitions or found[kafka.source_topic]


def create_topics(kafka: KafkaSettings, partitions: int, replication_factor: int) -> list[str]:
    """Create the missing user topics; returns the names created."""
    existing = topic_partitions(kafka)
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
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
    the largest record batch it accepts. A topic whose config cannot be read (missing, or no
    DescribeConfigs permission) is left out, with a warning: the producer's own limit applies."""
    admin = admin_client(kafka)  # keep a reference: the futures die with the client
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in dict.fromkeys(topics)]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S).items():
        try:
            entry = future.result(timeout=ADMIN_TIMEOUT_S)[MAX_MESSAGE_BYTES]
            limits[resource.name] = int(entry.value)
        except (KafkaException, KeyError, TimeoutError, TypeError, ValueError) as exc:
            log.warning(
                "cannot read %s of topic %r (%s); records for it are bounded by the producer's limit",
                MAX_MESSAGE_BYTES,
                resource.name,
                exc,
                extra={"topic": resource.name},
            )
    return limits
