"""Configuration: YAML file + ``${ENV}`` interpolation + ``SIGNAL_SYNC_*`` env overrides.

Every field carries a description and an example because ``check-config`` and the
README's reference are generated from these models. Secrets are ``SecretStr`` (never
printed) and each has a ``*_file`` twin so Kubernetes secret mounts work. Validation
errors name the field, e.g. ``integrations[0].base_url: has a trailing slash``, because
the seeds' most common failure (404) is a wrong base URL and it should fail at start,
not at the first delivery.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from signal_sync.config_problems import problems_error
from signal_sync.errors import ConfigError
from signal_sync.field_mapping import TABLES, CompiledMapping, EventMapping, FieldSources, compile_mapping
from signal_sync.streams.client_properties import check as check_passthrough
from signal_sync.streams.client_properties import masked

MAILGUN_HOSTS = ("api.mailgun.net", "api.eu.mailgun.net")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses, the only hosts allowed over plain http."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url_parts(url: str, *, form: str, credentials_go: str) -> SplitResult:
    """``url`` split, once it is an http(s) URL naming a host without credentials in it; the
    messages never quote the URL (its userinfo, query or fragment may hold a secret)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"is not a valid URL; use {form}") from None
    if "@" in parts.netloc:
        raise ValueError(f"must not carry credentials (user:password@host); put them in {credentials_go}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must start with https:// and name a host")
    return parts


def check_domain(value: str) -> str:
    """A DNS domain name of at least two labels (letters, digits, inner hyphens; an internationalized
    one in its xn-- form), lowercased; the top-level label starts with a letter."""
    domain = value.strip().lower()
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.match(label) for label in labels)
        or not labels[-1][:1].isalpha()
    ):
        raise ValueError(f"must be a sending domain like mg.example.com, got {value!r}")
    return domain


def check_base_url(url: str) -> str:
    """Reject base URLs that would make every request 404 or leak credentials in clear text.

    Messages quote at most the scheme, host and path, never a query, fragment or userinfo,
    because those may carry a secret that would then reach the terminal or a log."""
    parts = http_url_parts(
        url,
        form="https://host[:port]",
        credentials_go="the integration's api_user / api_password or api_key fields (or their *_file twins)",
    )
    root = f"{parts.scheme}://{parts.netloc}"
    if parts.path == "/" and not (parts.query or parts.fragment):
        raise ValueError(f"has a trailing slash; use the bare root, e.g. {root!r}")
    if parts.path or parts.query or parts.fragment:
        found = f"a path {parts.path!r}" if parts.path not in ("", "/") else "a query or fragment"
        raise ValueError(
            f"must be the bare root {root!r} without a path, query or fragment, got {found} "
            "(Signal appends the API path)"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("plain http is only allowed to a loopback host; use https")
    return url


class SchemaRegistrySettings(_Strict):
    """The Schema Registry that Confluent-framed source records (magic byte 0, schema id, payload)
    are read with, and framed outcomes are registered in (Confluent's REST API)."""

    url: str | None = Field(
        None,
        description="Root of the registry's Confluent-compatible REST API. Unset: a framed source record "
        "is invalid_event (plain JSON records need no registry).",
        examples=["https://schema-registry.example.com", "http://apicurio:8080/apis/ccompat/v7"],
    )
    basic_auth_user: str | None = Field(None, description="HTTP Basic user (with basic_auth_password).")
    basic_auth_password: SecretStr | None = Field(None, description="HTTP Basic password (secret).")
    basic_auth_password_file: Path | None = Field(None, description="File holding basic_auth_password.")
    bearer_token: SecretStr | None = Field(
        None, description="Static bearer token sent as 'Authorization: Bearer' (secret), read at start."
    )
    bearer_token_file: Path | None = Field(
        None,
        description="File holding bearer_token.",
        examples=["/var/run/secrets/signal-sync/credentials/schema-registry-token"],
    )
    bearer_logical_cluster: str | None = Field(
        None,
        description="Confluent Cloud only: the registry's logical cluster id, sent with the bearer token as "
        "target-sr-cluster (other registries ignore it).",
        examples=["lsrc-abc123"],
    )
    ssl_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the registry's certificate (https only); default: the "
        "public CAs of certifi, or $SSL_CERT_FILE.",
        examples=["/etc/signal-sync/schema-registry-ca/ca.crt"],
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one registry request.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_registry_url(value)

    @model_validator(mode="after")
    def _credentials(self) -> SchemaRegistrySettings:
        if self.url is None:
            for name in _REGISTRY_OPTIONS:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only used with url; set url too")
            return self
        basic = self.basic_auth_user is not None
        if basic:
            object.__setattr__(self, "basic_auth_password", _resolve_secret(self, "basic_auth_password"))
        elif self.basic_auth_password is not None or self.basic_auth_password_file is not None:
            raise ValueError("basic_auth_user: required with basic_auth_password")
        if self.bearer_token is not None or self.bearer_token_file is not None:
            if basic:
                raise ValueError("bearer_token: set either bearer_token or basic_auth_user, not both")
            object.__setattr__(self, "bearer_token", _resolve_secret(self, "bearer_token"))
        parts = urlsplit(self.url)
        if parts.scheme == "http":
            if (basic or self.bearer_token is not None) and not is_loopback_host(parts.hostname or ""):
                raise ValueError(
                    "url: plain http would send the registry credentials in clear text; use https"
                )
            if self.ssl_ca_file is not None:
                raise ValueError("ssl_ca_file: only used with an https url")
        if self.ssl_ca_file is not None and not self.ssl_ca_file.is_file():
            raise ValueError(f"ssl_ca_file: {self.ssl_ca_file} is not a readable file")
        return self


_REGISTRY_OPTIONS = (
    "basic_auth_user",
    "basic_auth_password",
    "basic_auth_password_file",
    "bearer_token",
    "bearer_token_file",
    "bearer_logical_cluster",
    "ssl_ca_file",
)


def check_registry_url(url: str) -> str:
    """A Schema Registry URL: http(s), a host, a path if the API lives under one (Apicurio:
    ``/apis/ccompat/v7``); never credentials, a query or a fragment. Messages never quote the URL."""
    parts = http_url_parts(
        url,
        form="https://host[:port][/path]",
        credentials_go="basic_auth_user and basic_auth_password (or basic_auth_password_file)",
    )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return url.rstrip("/")


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class KafkaSettings(_Strict):
    """Where to read events and write outcomes."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.", examples=["kafka:9092"]
    )
    source_topic: str = Field("signal.events", description="Topic with the input events.")
    deliveries_topic: str = Field("signal.deliveries", description="Topic the delivery outcomes go to.")
    dead_letter_topic: str = Field(
        "signal.deliveries.dlq", description="Topic for the original record of every failed or invalid case."
    )
    erasures_topic: str | None = Field(
        None,
        description="Topic of erasure requests (the right to be forgotten): JSON objects with "
        "request_id and at least one of email, user_id, anonymous_id, keyed like the source topic's "
        "events (anonymous_id, else user_id: `signal-sync erase` does). It must have the source "
        "topic's partition count (checked at start): the identities it resolves live on the source "
        "topic's partitioning. Give write access to it to the privacy team only. Unset: no erasures.",
        examples=["signal.erasures"],
    )
    retention_ms: int = Field(
        604_800_000,
        ge=3_600_000,
        description="retention.ms of the topics signal-sync creates without compaction: the internal "
        "delivery topics (created by the worker) and the erasures topic (by `topics create`). They "
        "carry events and erasure requests with emails, so they are never kept forever; keep it longer "
        "than the longest destination outage you ride out (a paused integration's events wait there). "
        "Set when a topic is created; an existing topic keeps its own. Default 7 days.",
        examples=[259_200_000],
    )
    app_id: str = Field(
        "signal-sync",
        description="Faust app id: the consumer group and the prefix of internal topics and changelogs.",
    )
    group_instance_id: str | None = Field(
        None,
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Static group membership (group.instance.id): a name that stays the worker's "
        "across restarts and is unique in the group (the Helm chart sets <namespace>.<pod name> of the "
        "StatefulSet pod). A worker that is back within the consumer's 60 s session timeout gets its "
        "partitions again without a rebalance, so the other workers go on and its kept state folder "
        "stays current; one that does not come back leaves its partitions unread until the timeout "
        "ends. Of two running workers with one name, one stops with GroupMembershipError. Unset: every "
        "start joins as a new member.",
        examples=["signal-sync-0"],
    )
    replication_factor: int = Field(
        1, ge=1, description="Replication of internal topics and changelogs; use 3 on a production cluster."
    )
    partitions: int | None = Field(
        None,
        ge=1,
        description="Partitions of internal topics; default: read from the source topic at start.",
        examples=[12],
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL.",
        examples=["SASL_SSL"],
    )
    sasl_mechanism: SaslMechanism | None = Field(
        None,
        description="SASL mechanism (SASL_* protocols only); default PLAIN. PLAIN and SCRAM-* "
        "authenticate with sasl_username and sasl_password; OAUTHBEARER with an OIDC client's "
        "credentials (the sasl_oauthbearer_* fields).",
        examples=["SCRAM-SHA-512"],
    )
    sasl_username: str | None = Field(
        None, description="SASL user name (SASL_* protocols with PLAIN or SCRAM-* only)."
    )
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    sasl_password_file: Path | None = Field(None, description="File holding sasl_password.")
    ssl_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the brokers' certificates (SSL and SASL_SSL only); "
        "default: the system trust store.",
        examples=["/etc/signal-sync/kafka-ca/ca.crt"],
    )
    ssl_certificate_file: Path | None = Field(
        None,
        description="PEM file with the client certificate (and any intermediate certificates) that "
        "signal-sync presents to brokers requiring mutual TLS (ssl.client.auth=required); with "
        "ssl_key_file. SSL and SASL_SSL only.",
        examples=["/var/run/secrets/signal-sync/kafka-client/tls.crt"],
    )
    ssl_key_file: Path | None = Field(
        None,
        description="PEM file with the private key of ssl_certificate_file (PKCS#8 or traditional, "
        "encrypted or not).",
        examples=["/var/run/secrets/signal-sync/kafka-client/tls.key"],
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of ssl_key_file when the key is encrypted (secret)."
    )
    ssl_key_password_file: Path | None = Field(None, description="File holding ssl_key_password.")
    sasl_oauthbearer_token_endpoint_url: str | None = Field(
        None,
        description="With sasl_mechanism OAUTHBEARER: the OIDC provider's token endpoint, where "
        "signal-sync gets access tokens with the client credentials grant (https, or http to a "
        "loopback host).",
        examples=["https://login.example.com/oauth2/token"],
    )
    sasl_oauthbearer_client_id: str | None = Field(
        None, description="With sasl_mechanism OAUTHBEARER: the OIDC client id.", examples=["signal-sync"]
    )
    sasl_oauthbearer_client_secret: SecretStr | None = Field(
        None, description="With sasl_mechanism OAUTHBEARER: the OIDC client secret (secret)."
    )
    sasl_oauthbearer_client_secret_file: Path | None = Field(
        None, description="File holding sasl_oauthbearer_client_secret."
    )
    sasl_oauthbearer_scope: str | None = Field(
        None,
        description="With sasl_mechanism OAUTHBEARER: the scope to ask the token for (space separated); "
        "default: none, the provider's default.",
        examples=["kafka"],
    )
    schema_registry: SchemaRegistrySettings = Field(
        default_factory=SchemaRegistrySettings,
        description="Schema Registry for Confluent-framed source records and framed outcomes.",
    )
    producer_linger_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description="How long Faust's own producer waits to fill a batch before sending it (linger.ms). "
        "It carries none of the worker's records: outcomes, dead letters, forwards to the internal "
        "topics and table changelogs go through the worker's librdkafka producer (docs/performance.md).",
    )

    consumer_max_fetch_bytes: int = Field(
        262_144,
        ge=1024,
        description="Most data one fetch returns per partition (max.partition.fetch.bytes; a larger "
        "record still comes whole). The worker reads many partitions (source, one internal topic per "
        "integration), so this bounds the memory fetch responses take.",
    )
    consumer_fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        description="Data the broker collects for one fetch before it answers, unless "
        "consumer_fetch_max_wait_ms passes first (fetch.min.bytes). Kafka's default of 1 byte "
        "answers every fetch as soon as one record arrives: at a few hundred events/s the worker "
        "then spends most of its CPU on fetch round trips.",
    )
    consumer_fetch_max_wait_ms: int = Field(
        20,
        ge=0,
        le=10_000,
        description="Longest the broker holds a fetch for consumer_fetch_min_bytes (fetch.max.wait.ms): "
        "below about 3 MB/s of input the fetch minimum is never reached, so every record waits up to "
        "this long, once in the source topic and once in its integration's internal topic "
        "(docs/performance.md, latency budget).",
    )
    client_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for every confluent-kafka client (the output "
        "producer, the partition reader, admin calls, the CLI). Refused, naming the field to use: "
        "the properties signal-sync sets itself (bootstrap.servers, security.protocol, sasl.*, "
        "ssl.ca/certificate/key.*, sasl.oauthbearer.client.*, group.id, enable.idempotence, "
        "enable.auto.commit, partitioner, ...). Faust's aiokafka clients read none of them except "
        "client.id, ssl.endpoint.identification.algorithm (none), sasl.oauthbearer.extensions and "
        "https.ca.location. Values of keys naming a password, secret or private key are masked by "
        "check-config and redacted in the logs; use ${VAR} for them.",
        examples=[
            {"client.id": "signal-sync-prod", "compression.type": "zstd", "socket.keepalive.enable": True}
        ],
    )

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        protocol = self.security_protocol
        if protocol in SASL_PROTOCOLS:
            mechanism = self.sasl_mechanism or "PLAIN"
            object.__setattr__(self, "sasl_mechanism", mechanism)
            if mechanism == "OAUTHBEARER":
                _only_with(self, _SASL_USER_FIELDS, "sasl_mechanism PLAIN or SCRAM-*", "it is OAUTHBEARER")
                self._oauthbearer()
            else:
                _only_with(self, _OAUTHBEARER_FIELDS, "sasl_mechanism OAUTHBEARER", f"it is {mechanism}")
                if not self.sasl_username:
                    raise ValueError(f"sasl_username: required when security_protocol is {protocol}")
                object.__setattr__(self, "sasl_password", _resolve_secret(self, "sasl_password"))
        else:
            _only_with(
                self,
                ("sasl_mechanism", *_SASL_USER_FIELDS, *_OAUTHBEARER_FIELDS),
                "security_protocol SASL_SSL or SASL_PLAINTEXT",
                f"security_protocol is {protocol}",
            )
        if protocol not in TLS_PROTOCOLS:
            _only_with(
                self, _TLS_FIELDS, "security_protocol SSL or SASL_SSL", f"security_protocol is {protocol}"
            )
        if self.ssl_ca_file is not None and not self.ssl_ca_file.is_file():
            raise ValueError(f"ssl_ca_file: {self.ssl_ca_file} is not a readable file")
        self._client_certificate()
        check_passthrough(self.client_config)
        return self

    def _oauthbearer(self) -> None:
        """OIDC client credentials: endpoint, id and secret are required; the scope is optional."""
        for name in ("sasl_oauthbearer_token_endpoint_url", "sasl_oauthbearer_client_id"):
            if not getattr(self, name):
                raise ValueError(f"{name}: required when sasl_mechanism is OAUTHBEARER")
        assert self.sasl_oauthbearer_token_endpoint_url is not None
        try:
            check_token_endpoint_url(self.sasl_oauthbearer_token_endpoint_url)
        except ValueError as exc:
            raise ValueError(f"sasl_oauthbearer_token_endpoint_url: {exc}") from None
        secret = _resolve_secret(self, "sasl_oauthbearer_client_secret")
        object.__setattr__(self, "sasl_oauthbearer_client_secret", secret)

    def _client_certificate(self) -> None:
        """Mutual TLS: certificate and key together, readable, matching, the key's password right."""
        cert, key = self.ssl_certificate_file, self.ssl_key_file
        password = _optional_secret(self, "ssl_key_password")
        object.__setattr__(self, "ssl_key_password", password)
        if cert is None and key is None:
            if password is not None:
                raise ValueError("ssl_key_password: only used with ssl_key_file")
            return
        if cert is None or key is None:
            missing, given = ("ssl_certificate_file", "ssl_key_file")
            if key is None:
                missing, given = given, missing
            raise ValueError(f"{missing}: required with {given}")
        check_client_certificate(cert, key, password.get_secret_value() if password else None)

    @field_serializer("client_config")
    def _mask_client_config(self, value: dict[str, str | int | float | bool]) -> dict[str, Any]:
        """``check-config`` shows the passthrough with secret-looking values masked."""
        return masked(value)

    @property
    def uses_tls(self) -> bool:
        """True when the connection to the brokers is encrypted (SSL or SASL_SSL)."""
        return self.security_protocol in TLS_PROTOCOLS

    @property
    def uses_sasl(self) -> bool:
        """True when clients authenticate with SASL."""
        return self.security_protocol in SASL_PROTOCOLS


class RocksDBSettings(_Strict):
    """Memory of the ``rocksdb://`` table store: one budget shared by every table and partition of
    the worker, whatever the number of contacts in the tables (their size is on disk)."""

    block_cache_mb: int = Field(
        16,
        ge=1,
        description="LRU cache of table blocks read from disk, with their index and bloom filter blocks. "
        "Larger keeps more contacts' state in memory (fewer disk reads); the worker's memory grows by "
        "at most this much.",
        examples=[64],
    )
    write_buffer_mb: int = Field(
        16,
        ge=4,
        description="Cap on all tables' memtables together (recent writes, before RocksDB flushes them "
        "to disk); writes wait for a flush at the cap. Also the most a crash loses of the tables (the "
        "changelog topics bring it back at the next start).",
        examples=[64],
    )
    max_open_files: int = Field(
        256,
        ge=16,
        description="Table files kept open across all tables and partitions (each open file holds a "
        "little memory and a descriptor).",
        examples=[512],
    )


class WorkerSettings(_Strict):
    """How the worker process runs."""

    state_dir: Path = Field(
        Path(".signal-sync"),
        description="Folder for table state (rocksdb) and Faust data; created at start if missing. With "
        "rocksdb:// a restart over the same folder reads only the changelog written since, so keep it "
        "on a volume that survives the worker (docs/operations.md, State).",
        examples=["/var/lib/signal-sync"],
    )
    store: Literal["memory://", "rocksdb://"] = Field(
        "rocksdb://",
        description="Table store. rocksdb:// keeps the tables in state_dir within the rocksdb memory "
        "budget, so memory does not grow with contacts and a restart over a kept state_dir is quick; "
        "memory:// holds every contact's state in memory (~0.7 KB each) and replays the whole "
        "changelogs on every start.",
    )
    rocksdb: RocksDBSettings = Field(
        default_factory=RocksDBSettings, description="Memory budget of the rocksdb:// store."
    )
    standby_replicas: int = Field(
        0,
        ge=0,
        le=3,
        description="Warm copies of each table partition kept by other workers (Faust's standby "
        "replicas): they read the changelogs of partitions they do not own, so a worker that takes "
        "over a partition from one that is gone reads only the records its copy lacks instead of the "
        "whole changelog. Each copy costs its worker a changelog read and disk (rocksdb://) or memory.",
    )
    web_bind: str = Field("127.0.0.1", description="Address of the worker's web server (health, metrics).")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's web server.")
    commit_interval_s: float = Field(1.0, gt=0, description="How often consumed offsets are committed.")
    stream_buffer_maxsize: int = Field(
        4096,
        ge=1,
        description="Records Faust reads ahead per agent before its fetching pauses (the erasures topic's "
        "agent); bounds memory while a backlog drains. The source reader keeps at most 4 MiB of source "
        "records queued instead, and the delivery agents' internal records carry many events each: "
        "they read ahead about 4 x delivery.max_in_flight events.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["json", "text"] = Field(
        "json",
        description="json: one JSON object per line (time, level, logger, message, fields); "
        "text: human-readable lines. Secrets and emails are redacted in both.",
    )
    shutdown_grace_s: float = Field(
        25.0,
        gt=0,
        description="After SIGTERM/SIGINT the worker finishes in-flight work and exits within this many "
        "seconds, else it exits anyway (uncommitted events are redelivered). Keep the pod's "
        "terminationGracePeriodSeconds above it.",
    )


class DeliverySettings(_Strict):
    """HTTP behaviour shared by all integrations."""

    timeout_s: float = Field(10.0, gt=0, description="Total timeout of one HTTP request.")
    max_attempts: int = Field(
        5,
        ge=1,
        description="HTTP attempts per delivery for retryable answers (5xx, 408/420/425/429, timeouts, "
        "refused or reset connections). When they run out while other calls to the destination "
        "succeed (after this delivery's first failure), the event is `failed`; when no call "
        "succeeded meanwhile, the destination is down: the circuit opens and the event is held instead.",
    )
    max_elapsed_s: float = Field(
        600.0,
        gt=0,
        description="Time budget of one delivery's retries, counting every attempt and every wait "
        "(back-off and Retry-After): no retry starts whose wait would end past it. The default leaves "
        "room for two waits of the longest Retry-After honoured (retry_after_max_s, 300 s), so a "
        "destination's own rate-limit answer is waited out rather than turned into a failure, while "
        "a delivery still ends within minutes; max_attempts usually ends it first.",
        examples=[120],
    )
    backoff_initial_s: float = Field(0.2, gt=0, description="First retry delay (exponential, full jitter).")
    backoff_max_s: float = Field(10.0, gt=0, description="Largest retry delay.")
    retry_after_max_s: float = Field(
        300.0,
        gt=0,
        description="Longest wait honoured from a destination's Retry-After (seconds or HTTP date) or "
        "X-RateLimit-Reset; larger, infinite or far-future values wait this long, and the wait counts "
        "against max_elapsed_s.",
    )
    max_connections: int = Field(32, ge=1, description="Pooled keep-alive connections per integration.")
    batch_linger_ms: float = Field(
        10.0,
        ge=0,
        description="How long a batch waits for more contacts before it is sent (on every event's path: "
        "docs/performance.md).",
    )
    pause_probe_initial_s: float = Field(
        1.0, gt=0, description="First wait before probing an integration paused by a 401/403/404 (doubles)."
    )
    pause_probe_max_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait between probes of a paused integration (a 401/403/404 pause or an open "
        "circuit).",
    )
    forward_max_events: int = Field(
        2000,
        ge=1,
        description="Events the ingest stage collects before it sends them on to the integrations' "
        "internal topics (one record per integration and partition).",
    )
    forward_linger_ms: float = Field(
        20.0,
        ge=0,
        description="Longest an event waits in the ingest stage before it is sent on. Each internal "
        "record costs the delivery agents about what a source record costs: a longer linger means "
        "fewer, larger records. While more than a read's 500 records wait in a partition being read "
        "(a backlog), the stage waits for forward_max_events or 0.5 s instead, so this linger only "
        "costs CPU when the worker keeps up (docs/performance.md).",
    )
    max_in_flight: int = Field(
        1024,
        ge=1,
        description="Events one integration processes at once in a worker (concurrent across contacts, "
        "sequential within one); more waits, and Kafka fetching for that integration pauses.",
    )


CONTACT_ID_KEY_MIN_LENGTH = 32


class OutcomeSettings(_Strict):
    """What outcome records contain."""

    include_email: bool = Field(
        False, description="Add the plaintext email to outcomes. Off by default: contact_id is a sha256."
    )
    contact_id_key: SecretStr | None = Field(
        None,
        description="Secret (at least 32 characters) that keys the outcomes' contact_id: "
        "HMAC-SHA256(key, normalized email) in hex instead of the plain sha256 of the email, which "
        "anyone holding a list of addresses can reverse by hashing them. Only the outcomes change: "
        "the internal topics' partitioning and the tables stay on the sha256. Unset: the sha256.",
    )
    contact_id_key_file: Path | None = Field(
        None,
        description="File holding contact_id_key.",
        examples=["/var/run/secrets/signal-sync/credentials/outcomes-contact-id-key"],
    )
    format: Literal["json", "json_schema_registry"] = Field(
        "json",
        description="json: each outcome is a JSON object. json_schema_registry: the outcome JSON Schema "
        "(docs/schemas/outcome.schema.json) is registered under '<deliveries_topic>-value' at start and "
        "every outcome is framed with its id (magic byte 0, 4-byte schema id, the JSON), for consumers "
        "that read with a Schema Registry (ksqlDB, Flink, Kafka Connect). Needs kafka.schema_registry.url.",
    )

    @model_validator(mode="after")
    def _contact_id_key(self) -> OutcomeSettings:
        key = _optional_secret(self, "contact_id_key")
        if key is not None and len(key.get_secret_value()) < CONTACT_ID_KEY_MIN_LENGTH:
            raise ValueError(f"contact_id_key: must be at least {CONTACT_ID_KEY_MIN_LENGTH} characters")
        object.__setattr__(self, "contact_id_key", key)
        return self


DEBUGGER_TOKEN_MIN_LENGTH = 16


class DebuggerSettings(_Strict):
    """The event debugger at ``/debugger``: whether it is served, to whom, and what it shows."""

    enabled: bool = Field(
        False,
        description="Serve the event debugger (the /debugger page and its API) on the worker's web port. "
        "Off by default: it shows recent deliveries.",
    )
    token: SecretStr | None = Field(
        None,
        description="Bearer token (secret, at least 16 characters). Set: every request to the "
        "debugger's API must carry 'Authorization: Bearer <token>', loopback clients included (a "
        "service mesh's sidecar delivers all clients from a loopback address). Unset: only loopback "
        "clients are served (kubectl port-forward to the pod, the same machine).",
    )
    token_file: Path | None = Field(
        None, description="File holding token.", examples=["/var/run/secrets/signal-sync/debugger/token"]
    )
    show_personal_data: bool = Field(
        False,
        description="Show personal fields in the debugger as sent: email, names, phone, address, IP "
        "(request bodies, headers, Mailgun vars). Off: they are masked by field name, and any other "
        "email address in a text is masked too.",
    )

    @model_validator(mode="after")
    def _token(self) -> DebuggerSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token: set either token or token_file, not both")
        token = self.token
        if self.token_file is not None:
            try:
                token = SecretStr(self.token_file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ValueError(f"token_file: cannot read {self.token_file}: {exc.strerror}") from None
        if token is not None and len(token.get_secret_value()) < DEBUGGER_TOKEN_MIN_LENGTH:
            raise ValueError(f"token: must be at least {DEBUGGER_TOKEN_MIN_LENGTH} characters")
        object.__setattr__(self, "token", token)
        return self


class _IntegrationBase(_Strict):
    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Unique integration id.")
    base_url: str = Field(..., description="Root URL of the destination, scheme and host, no path.")
    max_concurrency: int = Field(32, ge=1, description="HTTP requests in flight at once to this destination.")
    batch_max_items: int | None = Field(
        None,
        ge=1,
        description="Contacts per batch, and entries per bulk request (Mautic: one per event, Mailgun: "
        "one per contact); default the destination's limit (Mautic 200, its api_batch_max_limit; "
        "Mailgun 100); 1 sends every upsert on its own.",
    )
    rate_limit_per_s: float | None = Field(
        None,
        gt=0,
        description="Requests per second to this destination (leaky bucket); none by default.",
        examples=[50],
    )
    circuit_breaker_failures: int = Field(
        20,
        ge=1,
        description="HTTP attempts in a row, across this integration's requests, that fail at the "
        "destination as a whole (5xx, 408/420/425/429, timeouts, refused or reset connections, DNS "
        "failures) and open the circuit: the integration pauses and holds its events (no outcome, no "
        "commit, no dead letter) until a probe gets an answer. A 2xx resets the count; per-event "
        "rejections (400, 422, other 4xx) neither count nor reset it.",
    )
    circuit_breaker_open_s: float = Field(
        5.0,
        gt=0,
        description="Wait between the circuit opening and the first probe; later probes back off, "
        "doubling up to delivery.pause_probe_max_s.",
    )
    consent: list[str] = Field(
        default_factory=lambda: ["marketing"],
        description="Consent categories that must be explicitly true for delivery; [] disables gating.",
        examples=[["marketing"]],
    )
    on_consent_withdrawn: Literal["propagate", "drop"] = Field(
        "propagate",
        description="An event of a person with a valid email where one of the consent categories is "
        "explicitly false (withdrawn; missing is not): propagate sends a withdrawal carrying nothing "
        "but what honours it (Mautic: consent tag removed and do-not-contact on email, on the "
        "contacts it already has; Mailgun: subscribed=no on an existing member), once per person "
        "until consent is granted again, which undoes what the withdrawal added. drop: the event is "
        "dropped as consent_denied and nothing is sent.",
        examples=["propagate"],
    )
    mapping: FieldSources | None = Field(
        None,
        description="Destination field -> source, for every event the integration takes, on top of the "
        "seed's default fields (Mautic: contact field aliases; Mailgun: name and vars.<name>). A source is "
        "a path (traits.<key>, properties.<key>, context.ip, context.page.url, context.campaign.<utm>, "
        "context.consent.canonical.<category>, event, type, user_id, anonymous_id), {const: <value>}, or "
        "a list of them (the first present wins); null drops a default field. A source that finds "
        "nothing leaves the field out. Fields signal-sync owns (Mautic email, tags, ipAddress; Mailgun "
        "address, subscribed, upsert) cannot be mapped. Rules: docs/mapping.md.",
        examples=[{"company_size": "traits.company_size", "phone": None}],
    )
    events: dict[str, EventMapping | None] | None = Field(
        None,
        description="Changes to the events the integration takes (Mautic: page, Identified, Signed Up, "
        "Lead Captured; Mailgun: page, Signed Up, Identified, Order Completed): an event name with a "
        "block is taken, with its own extra fields in mapping; an event name set to null is no longer "
        "taken.",
        examples=[{"Order Completed": {"mapping": {"last_order": "properties.order_id"}}, "page": None}],
    )
    _field_mapping: CompiledMapping = PrivateAttr()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    @model_validator(mode="after")
    def _compile_mapping(self) -> _IntegrationBase:
        self._field_mapping = compile_mapping(TABLES[self.type], self.mapping, self.events)  # type: ignore[attr-defined]
        return self

    @property
    def field_mapping(self) -> CompiledMapping:
        """The mapping and events blocks, compiled once at load (the seed's defaults without them).
        Read from the private attributes' dict: ``self._field_mapping`` goes through pydantic's
        ``__getattr__`` (about 0.8 µs), and every event reads it several times."""
        return self.__pydantic_private__["_field_mapping"]  # type: ignore[index]


def _only_with(model: BaseModel, names: tuple[str, ...], used_with: str, but: str) -> None:
    """Refuse the first of ``names`` that is set: it is only used with ``used_with``."""
    for name in names:
        if getattr(model, name) is not None:
            raise ValueError(f"{name}: only used with {used_with}, but {but}")


_SASL_USER_FIELDS = ("sasl_username", "sasl_password", "sasl_password_file")
_OAUTHBEARER_FIELDS = (
    "sasl_oauthbearer_token_endpoint_url",
    "sasl_oauthbearer_client_id",
    "sasl_oauthbearer_client_secret",
    "sasl_oauthbearer_client_secret_file",
    "sasl_oauthbearer_scope",
)
_TLS_FIELDS = (
    "ssl_ca_file",
    "ssl_certificate_file",
    "ssl_key_file",
    "ssl_key_password",
    "ssl_key_password_file",
)


def check_token_endpoint_url(url: str) -> str:
    """An OIDC token endpoint: https (http only to a loopback host, it carries the client secret),
    a host, any path; never credentials or a fragment. Messages never quote the URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL; use https://host[:port]/path") from None
    if "@" in parts.netloc:
        raise ValueError(
            "must not carry credentials (user:password@host); use the client id and secret fields"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must start with https:// and name a host")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("plain http is only allowed to a loopback host; use https")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    return url


ENCRYPTED_KEY_MARKERS = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")


def check_client_certificate(cert: Path, key: Path, password: str | None) -> None:
    """Load the certificate and key as a TLS client would; ``ValueError`` naming the field at fault.
    The password comes from a callable, so an encrypted key without one never prompts on a terminal."""
    for name, path in (("ssl_certificate_file", cert), ("ssl_key_file", key)):
        if not path.is_file():
            raise ValueError(f"{name}: {path} is not a readable file")
    try:
        key_text = key.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"ssl_key_file: cannot read {key}: {exc.strerror}") from None
    encrypted = any(marker in key_text for marker in ENCRYPTED_KEY_MARKERS)
    if encrypted and password is None:
        raise ValueError(
            "ssl_key_password: ssl_key_file is encrypted; set ssl_key_password or ssl_key_password_file"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(cert))  # parses the certificate(s) alone
    except (ssl.SSLError, OSError):
        raise ValueError("ssl_certificate_file: is not a PEM certificate") from None
    try:
        context.load_cert_chain(str(cert), str(key), password=lambda: password or "")
    except (ssl.SSLError, OSError) as exc:
        if "KEY_VALUES_MISMATCH" in str(getattr(exc, "reason", "") or ""):
            raise ValueError("ssl_key_file: is not the private key of ssl_certificate_file") from None
        if encrypted:
            raise ValueError("ssl_key_password: does not decrypt ssl_key_file") from None
        raise ValueError("ssl_key_file: is not a PEM private key") from None


def _optional_secret(model: BaseModel, name: str) -> SecretStr | None:
    """A secret that may be absent, else filled from its ``*_file`` twin (not both)."""
    if getattr(model, name) is None and getattr(model, f"{name}_file") is None:
        return None
    return _resolve_secret(model, name)


def _resolve_secret(model: BaseModel, name: str) -> SecretStr:
    """Fill a secret from its ``*_file`` twin, and insist that one of them is set."""
    value: SecretStr | None = getattr(model, name)
    path: Path | None = getattr(model, f"{name}_file")
    if value is not None and path is not None:
        raise ValueError(f"{name}: set either {name} or {name}_file, not both")
    if path is not None:
        try:
            value = SecretStr(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from None
    if value is None or not value.get_secret_value():
        raise ValueError(f"{name}: missing secret (set {name} or {name}_file)")
    return value


ANY_EVENT = "*"
"""The ``segments`` key for every event the integration upserts."""


SegmentId = Annotated[int, Field(gt=0)]


def segment_plan(segments: dict[str, int], events: frozenset[str]) -> dict[str, tuple[int, ...]]:
    """Per event the integration takes, the segment ids its upsert adds to: the event's own, then
    ``*``'s, each once. Events with none are left out, so without ``segments`` the plan is empty and
    a delivery does no segment work."""
    every = segments.get(ANY_EVENT)
    plan: dict[str, tuple[int, ...]] = {}
    for event in sorted(events):
        ids = tuple(dict.fromkeys(i for i in (segments.get(event), every) if i is not None))
        if ids:
            plan[event] = ids
    return plan


MAUTIC_CLIENT_ID = re.compile(r"[1-9][0-9]*_[0-9a-z]+")
"""A Mautic API credential's public id as Settings → API Credentials shows it: ``<number>_<random>``."""


class MauticBasicAuth(_Strict):
    """HTTP Basic auth with a Mautic user (Mautic: API Settings → "Enable HTTP basic auth")."""

    type: Literal["basic"] = Field(
        ..., description="basic: HTTP Basic with a Mautic user's name and password."
    )
    api_user: str = Field(..., min_length=1, description="Mautic user the API calls authenticate as.")
    api_password: SecretStr | None = Field(None, description="That user's password (secret).")
    api_password_file: Path | None = Field(
        None,
        description="File holding api_password.",
        examples=["/var/run/secrets/signal-sync/mautic-password"],
    )

    @model_validator(mode="after")
    def _secret(self) -> MauticBasicAuth:
        object.__setattr__(self, "api_password", _resolve_secret(self, "api_password"))
        return self


class MauticOAuth2Auth(_Strict):
    """OAuth2 client credentials: an API credential of type OAuth2 that a Mautic administrator
    created (only those may use the client-credentials grant). signal-sync gets access tokens from
    ``{base_url}/oauth/v2/token`` and sends them as ``Authorization: Bearer``; works with HTTP
    Basic auth disabled in Mautic."""

    type: Literal["oauth2"] = Field(..., description="oauth2: the OAuth2 client-credentials grant.")
    client_id: str = Field(
        ...,
        description="The credential's Client ID (public key) from Settings → API Credentials.",
        examples=["1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8"],
    )
    client_secret: SecretStr | None = Field(None, description="The credential's Client Secret (secret).")
    client_secret_file: Path | None = Field(
        None,
        description="File holding client_secret.",
        examples=["/var/run/secrets/signal-sync/credentials/mautic-main"],
    )

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if not MAUTIC_CLIENT_ID.fullmatch(value):
            raise ValueError(
                "a Mautic client id is '<number>_<lowercase letters and digits>' as Settings → API "
                "Credentials shows it, e.g. '1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8'"
            )
        return value

    @model_validator(mode="after")
    def _secret(self) -> MauticOAuth2Auth:
        object.__setattr__(self, "client_secret", _resolve_secret(self, "client_secret"))
        return self


MauticAuth = Annotated[MauticBasicAuth | MauticOAuth2Auth, Field(discriminator="type")]
_MAUTIC_FLAT_AUTH = ("api_user", "api_password", "api_password_file")


class MauticIntegration(_IntegrationBase):
    """Contact upsert into a Mautic instance over the REST API, with HTTP Basic auth (the flat
    ``api_user`` / ``api_password`` fields, or ``auth: {type: basic, ...}``) or OAuth2 client
    credentials (``auth: {type: oauth2, ...}``)."""

    type: Literal["mautic"]
    auth: MauticAuth | None = Field(
        None,
        description="How the API calls authenticate: {type: basic, api_user, api_password(_file)} or "
        "{type: oauth2, client_id, client_secret(_file)}. Unset: Basic with the flat api_user and "
        "api_password fields. Set it or the flat fields, not both.",
        examples=[
            {
                "type": "oauth2",
                "client_id": "1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8",
                "client_secret": "${MAUTIC_CLIENT_SECRET}",
            }
        ],
    )
    api_user: str | None = Field(
        None,
        min_length=1,
        description="Mautic user the API calls authenticate as (Basic auth, without auth).",
    )
    api_password: SecretStr | None = Field(None, description="That user's password (secret).")
    api_password_file: Path | None = Field(None, description="File holding api_password.")
    segments: dict[str, SegmentId] = Field(
        default_factory=dict,
        description="Mautic segments a contact is added to once its upsert succeeded: event name (one "
        'the integration takes) or "*" (every upserted event) -> segment id (Segments in Mautic). '
        "An event in both adds to both. Withdrawals and erasures add to none. A missing segment fails "
        "the event (segment_not_found, with a dead letter), an unpublished one too "
        "(segment_forbidden); neither pauses the integration. Rules: docs/mapping.md.",
        examples=[{"Signed Up": 4, "*": 1}],
    )
    _segment_plan: dict[str, tuple[int, ...]] = PrivateAttr(default_factory=dict)

    @field_validator("segments", mode="before")
    @classmethod
    def _segment_ids(cls, value: Any) -> Any:
        """A segment id is a number (YAML ``4``, or ``"4"`` from an environment reference), never a
        boolean, which pydantic would read as 0 or 1."""
        if isinstance(value, dict):
            for name, segment in value.items():
                if isinstance(segment, bool):
                    raise ValueError(f"{name}: a segment id is a positive integer, not a boolean")
        return value

    @model_validator(mode="after")
    def _segments(self) -> MauticIntegration:
        taken = self.field_mapping.events
        problems = [
            (
                ("segments", name),
                f'{name!r} is not an event this integration takes; use "*" or one of: '
                + ", ".join(sorted(taken)),
            )
            for name in self.segments
            if name != ANY_EVENT and name not in taken
        ]
        if problems:
            raise problems_error("segments", "segments", problems)
        self._segment_plan = segment_plan(self.segments, taken)
        return self

    @property
    def segment_plan(self) -> dict[str, tuple[int, ...]]:
        """Per event with segments, the segment ids its upsert adds to (empty without ``segments``;
        read as ``field_mapping`` is)."""
        return self.__pydantic_private__["_segment_plan"]  # type: ignore[index]

    @model_validator(mode="after")
    def _secret(self) -> MauticIntegration:
        if self.auth is not None:
            for name in _MAUTIC_FLAT_AUTH:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: set either auth or the flat api_user / api_password, not both")
            return self
        if self.api_user is None:
            raise ValueError(
                "api_user: required (or an auth block: {type: oauth2, client_id, client_secret})"
            )
        object.__setattr__(self, "api_password", _resolve_secret(self, "api_password"))
        return self

    @property
    def oauth2(self) -> MauticOAuth2Auth | None:
        """The OAuth2 client credentials, None for Basic auth."""
        return self.auth if isinstance(self.auth, MauticOAuth2Auth) else None

    def credentials(self) -> tuple[str, str]:
        """Basic-auth user and password (Basic auth only: an OAuth2 integration has none)."""
        if isinstance(self.auth, MauticBasicAuth):
            user, password = self.auth.api_user, self.auth.api_password
        elif self.auth is None:
            user, password = self.api_user, self.api_password
        else:
            raise TypeError(f"integration {self.id!r} authenticates with OAuth2, not Basic auth")
        assert user is not None and password is not None
        return user, password.get_secret_value()

    def secret(self) -> str:
        """The integration's one secret: the Basic-auth password or the OAuth2 client secret."""
        if self.oauth2 is not None:
            assert self.oauth2.client_secret is not None
            return self.oauth2.client_secret.get_secret_value()
        return self.credentials()[1]


class MailgunIntegration(_IntegrationBase):
    """Mailing-list member upsert into Mailgun with Basic ``api:<key>`` auth."""

    type: Literal["mailgun"]
    api_key: SecretStr | None = Field(None, description="Mailgun Private API key (secret).")
    api_key_file: Path | None = Field(None, description="File holding api_key.")
    list_address: str = Field(
        ..., description="Address of an existing mailing list.", examples=["news@mg.example.com"]
    )

    @field_validator("base_url")
    @classmethod
    def _region(cls, value: str) -> str:
        host = urlsplit(value).hostname or ""
        if host not in MAILGUN_HOSTS and not is_loopback_host(host):
            raise ValueError(
                "must be https://api.mailgun.net (US) or https://api.eu.mailgun.net (EU), "
                "matching the key's region"
            )
        return value

    unsubscribe_domain: str | None = Field(
        None,
        description="A sending domain of the Mailgun account (not the list address): a consent "
        "withdrawal also puts the address on this domain's unsubscribe list (tag *), which stops "
        "every message from the domain, not only this list's; a later re-grant takes it off again "
        "only if signal-sync put it there. Unset: only the list membership changes.",
        examples=["mg.example.com"],
    )

    @field_validator("unsubscribe_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return None if value is None else check_domain(value)

    @field_validator("list_address")
    @classmethod
    def _list(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"must be a mailing list address like newsletter@mg.example.com, got {value!r}")
        return value

    @model_validator(mode="after")
    def _secret(self) -> MailgunIntegration:
        object.__setattr__(self, "api_key", _resolve_secret(self, "api_key"))
        return self

    def credentials(self) -> tuple[str, str]:
        """Basic-auth user and password: Mailgun's user is always ``api``."""
        assert self.api_key is not None
        return "api", self.api_key.get_secret_value()

    def secret(self) -> str:
        """The integration's one secret: the API key."""
        return self.credentials()[1]


Integration = Annotated[MauticIntegration | MailgunIntegration, Field(discriminator="type")]


class Settings(BaseSettings):
    """The whole configuration of one worker."""

    model_config = SettingsConfigDict(
        env_prefix="SIGNAL_SYNC_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    outcomes: OutcomeSettings = Field(default_factory=OutcomeSettings)
    debugger: DebuggerSettings = Field(default_factory=DebuggerSettings)
    integrations: list[Integration] = Field(..., min_length=1, description="Destinations, in delivery order.")

    @field_validator("outcomes")
    @classmethod
    def _outcome_format(cls, value: OutcomeSettings, info: ValidationInfo) -> OutcomeSettings:
        kafka = info.data.get("kafka")
        if value.format == "json_schema_registry" and kafka is not None and kafka.schema_registry.url is None:
            raise ValueError("format: json_schema_registry needs kafka.schema_registry.url")
        return value

    @field_validator("integrations")
    @classmethod
    def _unique_ids(cls, value: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for integration in value:
            if integration.id in seen:
                raise ValueError(f"duplicate integration id {integration.id!r}")
            seen.add(integration.id)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the file, so a deployment can override one value without a new file."""
        return env_settings, init_settings


def interpolate(value: Any, path: str = "", environ: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, naming the field when VAR is unset."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('integrations', 0, 'mautic', 'base_url')`` → ``integrations[0].base_url``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("mautic", "mailgun") and text.endswith("]"):
            continue  # the discriminator tag pydantic inserts into the path
        elif part in ("basic", "oauth2") and text.endswith(".auth"):
            continue  # the tag of a Mautic integration's auth block
        else:
            text += f".{part}" if text else str(part)
    return text


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each starting with the field it is about."""
    lines = []
    for item in error.errors():
        location = format_location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        field, sep, rest = message.partition(": ")
        if sep and field.isidentifier():  # a model-level check naming its field: move it into the path
            location, message = f"{location}.{field}" if location else field, rest
        lines.append(f"{location or '(root)'}: {message}")
    return "\n".join(lines)


def yaml_error_location(error: yaml.YAMLError) -> str:
    """`` at line L, column C: <problem>`` for a YAML error, never the text of the line.

    PyYAML's own message quotes the offending line, which may be a secret (a password with a
    character YAML cannot read); the location and the parser's short problem are enough."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None)
    return f"{where}: {problem}" if problem else where


def load_settings(path: str | Path, environ: dict[str, str] | None = None) -> Settings:
    """Read, interpolate and validate a config file; any problem raises ``ConfigError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{yaml_error_location(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return Settings(**interpolate(raw, environ=environ))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
