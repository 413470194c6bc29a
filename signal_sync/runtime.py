"""The Faust app and everything the agents share, built from one ``Settings``.

Topics are read as raw bytes where users write them (so a malformed record becomes an
``invalid`` outcome instead of being skipped by Faust's decoder) and as orjson
between our own agents. Tables and internal topics get the source topic's partition
count, because Faust requires a table's changelog to match the stream that writes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types.auth import CredentialsT

from signal_sync.codecs import orjson_codec
from signal_sync.codecs.schema_registry import FramedDecoder, framed_outcomes, outcome_prefix
from signal_sync.config import KafkaSettings, Settings, WorkerSettings
from signal_sync.destinations import Integration
from signal_sync.destinations.base import Shown
from signal_sync.destinations.delivery import Sender, redact_emails
from signal_sync.engine.batcher import Batcher
from signal_sync.engine.forwarder import Forwarder
from signal_sync.engine.gate import IntegrationGate
from signal_sync.engine.jobs import Jobs
from signal_sync.engine.ordered import KeyOrderedScheduler
from signal_sync.errors import ConfigError
from signal_sync.outcomes import OutcomeBuilder, encode
from signal_sync.streams.changelog import output_changelog_table
from signal_sync.streams.faust_fixes import (
    ConsumerSettings,
    PromptTableManager,
    consume_on_app_loop,
    deliver_fetched_records_eagerly,
    never_commit_past_unread_offsets,
)
from signal_sync.streams.handoff import DecodedEvents
from signal_sync.streams.internal import (
    DESTINATION_STATE_TABLE,
    IDENTITIES_TABLE,
    delivery_read_ahead,
    delivery_topic,
)
from signal_sync.streams.json_table import JsonValues
from signal_sync.streams.oauth import ClientCredentialsTokenProvider
from signal_sync.streams.output_producer import OutputProducer, flush_with_faust
from signal_sync.streams.partition_reader import PartitionReader
from signal_sync.streams.read_ahead import ReadAheadTopic
from signal_sync.streams.rocksdb_store import RocksMemory, prepare_state_dir, rocks_memory
from signal_sync.streams.sequence import SequenceGuard
from signal_sync.streams.source_reader import SourceReader
from signal_sync.streams.topics import client_config

log = logging.getLogger(__name__)

DELIVERY_BEHIND_S = 0.25
"""A delivery agent that takes an internal record written longer ago than this is behind: a live
stream's records reach it within about 30 ms (docs/performance.md, latency budget)."""
BEHIND_FOR_S = 1.0
"""How long one such record marks the worker behind: until then no later record has to prove it."""

OutcomeObserver = Callable[[dict[str, Any], Shown | None], None]
"""Called with every outcome written and the request behind it (None for drops): how metrics
and the event debugger see deliveries without the agents knowing about them. Observers run
for every event, so they keep references and redact only when something is shown."""


@dataclass
class Runtime:
    """The app plus its topics, tables and shared services; what agents receive."""

    settings: Settings
    app: faust.App
    source: faust.TopicT
    delivery_topics: dict[str, faust.TopicT]
    outputs: OutputProducer
    """Writes outcomes and dead letters; flushed whenever Faust flushes before a commit."""
    identities: JsonValues
    """Traits learned per identity key (the ``identities`` table, values as JSON bytes)."""
    destination_state: JsonValues
    """Per-contact destination state: Mautic contact ids, Mailgun vars, consent withdrawals (the
    ``destination-state`` table)."""
    outcomes: OutcomeBuilder
    sender: Sender
    sequence: SequenceGuard
    source_reader: SourceReader
    """Reads the source topic in Faust's stead (``streams.source_reader``)."""
    forwarder: Forwarder
    integrations: dict[str, Integration] = field(default_factory=dict)
    observers: list[OutcomeObserver] = field(default_factory=list)
    gates: dict[str, IntegrationGate] = field(default_factory=dict)
    schedulers: dict[str, KeyOrderedScheduler] = field(default_factory=dict)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    jobs: dict[str, Jobs] = field(default_factory=dict)
    """Per integration: plans each event's work with the contact's destination state and carries it out."""
    decoded: DecodedEvents = field(default_factory=DecodedEvents)
    """Events stage 1 validated, left for this process's delivery agents."""
    redact: Callable[[str], str] = redact_emails
    """Redacts the error texts of dead-letter headers; ``observability.install`` sets the logs'
    redaction (configured secrets and emails)."""
    framing: FramedDecoder | None = None
    """Reads Schema Registry-framed source records; None without ``kafka.schema_registry.url``."""
    encode_outcome: Callable[[dict[str, Any]], bytes] = encode
    """An outcome's record value: JSON, or framed with the registered outcome schema's id
    (``outcomes.format``)."""
    erasures: faust.TopicT | None = None
    """The erasures topic (``kafka.erasures_topic``), read as raw bytes; None when not configured."""
    forward_pending: Callable[[], Awaitable[bool]] | None = None
    """Sends every envelope the forwarder holds now (the ingest agent sets it); False when the
    ingest stage can no longer forward (the worker is stopping)."""
    forgetters: list[Callable[[str], None]] = field(default_factory=list)
    """Called with an erased person's outcome ``contact_id``: what keeps rows per contact in
    memory (the event debugger) drops them."""
    delivery_behind_until: float = 0.0
    """``time.monotonic()`` until which the delivery agents count as behind (``note_delivery_lag``)."""

    def note_delivery_lag(self, written_s: float) -> None:
        """A delivery agent took an internal record written at ``written_s`` (epoch seconds): one
        older than ``DELIVERY_BEHIND_S`` marks the delivery agents behind for ``BEHIND_FOR_S``."""
        if time.time() - written_s > DELIVERY_BEHIND_S:
            self.delivery_behind_until = time.monotonic() + BEHIND_FOR_S

    def behind(self) -> bool:
        """Whether the worker is behind its input: the source reader found more than a read's
        records waiting, or a delivery agent took a record written a while ago in the last second."""
        return self.source_reader.behind or time.monotonic() < self.delivery_behind_until

    def forget_person(self, email: str | None) -> None:
        """Tell the ``forgetters`` that the person with this normalized email was erased."""
        if not email:
            return
        contact = self.outcomes.contact_id_of(email)
        for forget in self.forgetters:
            try:
                forget(contact)
            except Exception:
                log.exception("forgetting an erased person's rows raised")

    async def stop_worker(self, reason: BaseException) -> None:
        """Stop the worker loudly (``crash_worker``): an event could not be given an outcome (that
        event is not acknowledged, so it is read again after the restart, rather than the worker
        going on with a commit point that can never move past it)."""
        await crash_worker(self.app, reason)


async def crash_worker(app: faust.App, reason: BaseException) -> None:
    """Stop ``app``'s worker with a critical log line naming ``reason``; its process exits non-zero.
    Also what the consumer calls when its group membership fails (the worker would run on without
    partitions)."""
    log.critical("stopping the worker: %s: %s", type(reason).__name__, reason)
    await app.crash(reason)


def broker_urls(bootstrap_servers: str) -> list[str]:
    """``a:9092,b:9092`` → Faust's ``kafka://`` URL list."""
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()]


ENDPOINT_IDENTIFICATION = "ssl.endpoint.identification.algorithm"


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers against ``ssl_ca_file`` (else the system store)
    and, for mutual TLS, presents ``ssl_certificate_file`` with ``ssl_key_file``. The passthrough's
    ``ssl.endpoint.identification.algorithm: none`` turns the host name check off here as it does in
    librdkafka."""
    cafile = str(kafka.ssl_ca_file) if kafka.ssl_ca_file is not None else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"kafka.ssl_ca_file: cannot load {cafile} as a PEM CA bundle: {exc}") from None
    if kafka.ssl_certificate_file is not None and kafka.ssl_key_file is not None:
        password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password is not None else ""
        try:
            context.load_cert_chain(kafka.ssl_certificate_file, kafka.ssl_key_file, lambda: password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"kafka.ssl_certificate_file: cannot load it with kafka.ssl_key_file: {exc}"
            ) from None
    if str(kafka.client_config.get(ENDPOINT_IDENTIFICATION, "https")).lower() == "none":
        context.check_hostname = False
    return context


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's view of ``kafka.security_protocol`` (its consumer, producer and admin all use it):
    SASL PLAIN/SCRAM with the user and password, OAUTHBEARER with a token provider that runs the
    client credentials grant against the OIDC provider, TLS with the CA and client certificate.
    The confluent-kafka clients get the same settings from ``streams.clients.client_config``."""
    tls = ssl_context(kafka) if kafka.uses_tls else None
    if kafka.uses_sasl and kafka.sasl_mechanism == "OAUTHBEARER":
        provider = ClientCredentialsTokenProvider.for_kafka(kafka)
        return faust.OAuthCredentials(oauth_cb=provider, ssl_context=tls)
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=tls,
        )
    if tls is not None:
        return faust.SSLCredentials(tls)
    return None


def broker_options(kafka: KafkaSettings) -> dict[str, Any]:
    """``faust.App`` settings for the brokers: the credentials, and the passthrough's ``client.id``
    (broker quotas and logs key on it) for Faust's clients too."""
    options: dict[str, Any] = {"broker_credentials": broker_credentials(kafka)}
    client_id = kafka.client_config.get("client.id")
    if client_id is not None:
        options["broker_client_id"] = str(client_id)
    return options


def outcome_builder(settings: Settings) -> OutcomeBuilder:
    """Outcomes as ``outcomes`` configures them (plaintext email, keyed contact ids)."""
    key = settings.outcomes.contact_id_key
    return OutcomeBuilder(
        include_email=settings.outcomes.include_email,
        contact_id_key=key.get_secret_value().encode("utf-8") if key is not None else None,
    )


def bounded_values(table: faust.Table, outputs: OutputProducer) -> JsonValues:
    """A table's JSON view whose writes fit the table's changelog topic."""
    return JsonValues(table, outputs.record_limit(table.changelog_topic.get_topic_name()))


def table_memory(worker: WorkerSettings) -> RocksMemory | None:
    """The rocksdb:// store's memory budget (its ``state_dir`` checked first), None for memory://."""
    if worker.store != "rocksdb://":
        return None
    prepare_state_dir(worker.state_dir)
    rocksdb = worker.rocksdb
    return rocks_memory(rocksdb.block_cache_mb, rocksdb.write_buffer_mb, rocksdb.max_open_files)


def create_runtime(
    settings: Settings,
    partitions: int,
    topic_limits: Mapping[str, int] | None = None,
    tombstones_kept_ms: Mapping[str, int] | None = None,
) -> Runtime:
    """Build the Faust app, topics and tables; agents are attached by ``signal_sync.agents``.
    ``topic_limits``: ``max.message.bytes`` of the topics the worker writes, as read at start
    (``streams.topics.max_message_bytes``); every record is bounded by them.
    ``tombstones_kept_ms``: ``delete.retention.ms`` of the changelogs, as read at start
    (``streams.topics.delete_retention_ms``); a kept rocksdb:// partition is trusted by it."""
    codec = orjson_codec.register()
    never_commit_past_unread_offsets()
    deliver_fetched_records_eagerly()
    kafka, worker = settings.kafka, settings.worker
    app = faust.App(
        kafka.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        **broker_options(kafka),
        store=worker.store,
        datadir=str(worker.state_dir),
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        web_enabled=True,
        web_tables_enabled=False,  # Faust's /table pages would expose the identities table (emails)
        web_router_enabled=False,
        web_bind=worker.web_bind,
        web_port=worker.web_port,
        web_host=worker.web_bind,
        broker_commit_interval=worker.commit_interval_s,
        stream_buffer_maxsize=worker.stream_buffer_maxsize,
        producer_linger=kafka.producer_linger_ms / 1000,
        consumer_max_fetch_size=kafka.consumer_max_fetch_bytes,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=worker.standby_replicas,
        consumer_group_instance_id=kafka.group_instance_id,
        TableManager=PromptTableManager,
    )
    partition_reader = PartitionReader(client_config(kafka), group_id=kafka.app_id)
    source_reader = SourceReader(
        client_config(kafka),
        kafka.source_topic,
        partition_reader,
        fetch={
            "fetch.min.bytes": kafka.consumer_fetch_min_bytes,
            "fetch.wait.max.ms": kafka.consumer_fetch_max_wait_ms,
            "max.partition.fetch.bytes": kafka.consumer_max_fetch_bytes,
        },
    )
    consume_on_app_loop(
        app,
        ConsumerSettings(
            kafka.consumer_fetch_min_bytes,
            kafka.consumer_fetch_max_wait_ms,
            on_membership_lost=functools.partial(crash_worker, app),
            source_reader=source_reader,
        ),
    )
    registry = kafka.schema_registry
    encode_outcome = encode
    if settings.outcomes.format == "json_schema_registry":  # registered now: a refusal fails the start
        encode_outcome = framed_outcomes(outcome_prefix(registry, kafka.deliveries_topic))
    outputs = OutputProducer(client_config(kafka), topic_limits)
    flush_with_faust(app, outputs.flush)
    # Faust serializes table keys and values by key_type/value_type (not the schema): JSON keys,
    # raw values (JSON bytes that ``JsonValues`` encodes and decodes). With rocksdb:// both tables
    # share one memory budget (``streams/rocksdb_store.py``).
    # A standby copy (worker.standby_replicas) applies each changelog record as it arrives, rather
    # than Faust's 1,000 at a time: the copy on disk is then as current as its fetch, so a takeover
    # or a restart of its worker reads only what it has not fetched yet.
    table: dict[str, Any] = {
        "partitions": partitions,
        "value_type": bytes,
        "rocks": table_memory(worker),
        "tombstones_kept_ms": tombstones_kept_ms,
        "standby_buffer_size": 1,
    }
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    # Each internal record carries many events: its stream buffer is bounded in events, not records.
    read_ahead = delivery_read_ahead(
        settings.delivery.max_in_flight, settings.delivery.forward_max_events, partitions
    )
    # ``app.topic`` does not pass ``maxsize`` on (faust-streaming 0.15): the Topic is built directly,
    # as a ``ReadAheadTopic``: a paused integration's full buffer never holds Faust's one fetch loop.
    delivery_topics: dict[str, faust.TopicT] = {
        integration.id: ReadAheadTopic(
            app,
            topics=[delivery_topic(kafka.app_id, integration.id)],
            partitions=partitions,
            internal=True,
            key_serializer="raw",
            value_serializer=codec,
            maxsize=read_ahead,
        )
        for integration in settings.integrations
    }
    runtime = Runtime(
        settings=settings,
        app=app,
        source=app.topic(kafka.source_topic, **raw),
        delivery_topics=delivery_topics,
        forwarder=Forwarder(
            outputs,
            {integration_id: topic.get_topic_name() for integration_id, topic in delivery_topics.items()},
            partitions,
            settings.delivery.forward_max_events,
        ),
        outputs=outputs,
        identities=bounded_values(output_changelog_table(app, outputs, IDENTITIES_TABLE, **table), outputs),
        destination_state=bounded_values(
            output_changelog_table(app, outputs, DESTINATION_STATE_TABLE, **table), outputs
        ),
        outcomes=outcome_builder(settings),
        sender=Sender(settings.delivery),
        sequence=SequenceGuard(partition_reader),
        source_reader=source_reader,
        integrations={integration.id: integration for integration in settings.integrations},
        framing=FramedDecoder(registry) if registry.url is not None else None,
        erasures=app.topic(kafka.erasures_topic, **raw) if kafka.erasures_topic else None,
        encode_outcome=encode_outcome,
        gates={
            integration.id: IntegrationGate(
                integration.id,
                max_in_flight=integration.max_concurrency,
                rate_per_s=integration.rate_limit_per_s,
                failure_threshold=integration.circuit_breaker_failures,
                open_for_s=integration.circuit_breaker_open_s,
                probe_initial_s=settings.delivery.pause_probe_initial_s,
                probe_max_s=settings.delivery.pause_probe_max_s,
            )
            for integration in settings.integrations
        },
    )

    outputs.behind = runtime.behind

    guarded = {
        topic.get_topic_name()
        for topic in (runtime.erasures, *runtime.delivery_topics.values())
        if topic is not None
    }

    @app.on_partitions_assigned.connect
    async def _look_up_start_offsets(sender: faust.App, assigned: set, **_: object) -> None:
        runtime.sequence.prefetch(tp for tp in assigned if tp.topic in guarded)

    @app.on_partitions_revoked.connect
    async def _forget_revoked(sender: faust.App, revoked: set, **_: object) -> None:
        runtime.sequence.forget(revoked)
        for scheduler in runtime.schedulers.values():
            scheduler.forget(revoked)

    @app.on_before_shutdown.connect
    async def _finish_in_flight(sender: faust.App, **_: object) -> None:
        # One deadline for every integration: waiting for each in turn could take a multiple of it.
        budget = settings.worker.shutdown_grace_s * 0.8
        await asyncio.gather(*(scheduler.drain(budget) for scheduler in runtime.schedulers.values()))
        await runtime.sender.close()
        await runtime.source_reader.close()
        await runtime.sequence.close()
        if runtime.framing is not None:
            await runtime.framing.close()

    return runtime
