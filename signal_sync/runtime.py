"""The Faust app and everything the agents share, built from one ``Settings``.

Topics are read as raw bytes where users write them (so a malformed record becomes an
``invalid`` outcome instead of being skipped by Faust's decoder) and as orjson
between our own agents. Tables and internal topics get the source topic's partition
count, because Faust requires a table's changelog to match the stream that writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from signal_sync.codecs import orjson_codec
from signal_sync.config import Settings
from signal_sync.destinations import Integration
from signal_sync.destinations.delivery import Sender
from signal_sync.outcomes import OutcomeBuilder
from signal_sync.streams.replay_guard import ReplayGuard
from signal_sync.streams.topics import InternalTopics

OutcomeObserver = Callable[[dict[str, Any], dict[str, Any] | None], None]
"""Called with every outcome written and the redacted request behind it (None for drops):
how metrics and the event debugger see deliveries without the agents knowing about them."""


@dataclass
class Runtime:
    """The app plus its topics, tables and shared services; what agents receive."""

    settings: Settings
    app: faust.App
    source: faust.TopicT
    contacts: faust.TopicT
    deliveries: faust.TopicT
    dead_letters: faust.TopicT
    identities: faust.Table
    destination_state: faust.Table
    outcomes: OutcomeBuilder
    sender: Sender
    integrations: dict[str, Integration] = field(default_factory=dict)
    replays: ReplayGuard = field(default_factory=ReplayGuard)
    observers: list[OutcomeObserver] = field(default_factory=list)


def broker_urls(bootstrap_servers: str) -> list[str]:
    """``a:9092,b:9092`` → Faust's ``kafka://`` URL list."""
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()]


def create_runtime(settings: Settings, partitions: int) -> Runtime:
    """Build the Faust app, topics and tables; agents are attached by ``signal_sync.agents``."""
    codec = orjson_codec.register()
    kafka, worker = settings.kafka, settings.worker
    app = faust.App(
        kafka.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        store=worker.store,
        datadir=str(worker.state_dir),
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        web_enabled=True,
        web_bind=worker.web_bind,
        web_port=worker.web_port,
        web_host=worker.web_bind,
        broker_commit_interval=worker.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=0,
    )
    names = InternalTopics.for_app(kafka.app_id)
    table_schema = faust.Schema(key_serializer=codec, value_serializer=codec)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    runtime = Runtime(
        settings=settings,
        app=app,
        source=app.topic(kafka.source_topic, **raw),
        contacts=app.topic(
            names.contacts,
            partitions=partitions,
            internal=True,
            key_serializer="raw",
            value_serializer=codec,
        ),
        deliveries=app.topic(kafka.deliveries_topic, **raw),
        dead_letters=app.topic(kafka.dead_letter_topic, **raw),
        identities=app.Table(names.identities_table, partitions=partitions, schema=table_schema),
        destination_state=app.Table(
            names.destination_state_table, partitions=partitions, schema=table_schema
        ),
        outcomes=OutcomeBuilder(include_email=settings.outcomes.include_email),
        sender=Sender(settings.delivery),
        integrations={integration.id: integration for integration in settings.integrations},
    )

    @app.on_partitions_revoked.connect
    async def _forget_revoked(sender: faust.App, revoked: set, **_: object) -> None:
        runtime.replays.forget(revoked)

    @app.on_before_shutdown.connect
    async def _close_sessions(sender: faust.App, **_: object) -> None:
        await runtime.sender.close()

    return runtime
