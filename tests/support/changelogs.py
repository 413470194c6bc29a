"""Kafka-side helpers for tests of the tables' changelogs: their ends, deleting their records."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType


def changelog_ends(admin: AdminClient, bootstrap: str, topic: str) -> dict[int, int]:
    """Partition → offset of the last record, for the partitions that have records."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rocksdb-state-probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high - 1
        return ends
    finally:
        consumer.close()


def delete_records(admin: AdminClient, topic: str, ends: dict[int, int], **configs: str) -> None:
    """Delete every record of the changelog: a worker can no longer replay it. (Kafka deletes
    records only from a topic with the delete policy; the worker leaves an existing topic's
    configuration as it is.) ``configs``: more topic configs to set, dots as underscores."""
    settings = {"cleanup.policy": "delete"} | {
        name.replace("_", "."): value for name, value in configs.items()
    }
    policy = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
            for name, value in settings.items()
        ],
    )
    for future in admin.incremental_alter_configs([policy]).values():
        future.result(30)
    # The leader applies the new policy a moment after the call returns; until then it refuses
    # DeleteRecords on a compacted topic with POLICY_VIOLATION.
    deadline = time.monotonic() + 30
    while True:
        futures = admin.delete_records([TopicPartition(topic, p, end + 1) for p, end in ends.items()])
        try:
            for future in futures.values():
                future.result(30)
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.POLICY_VIOLATION or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
