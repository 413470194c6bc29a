"""Session-wide Kafka and Schema Registry fixtures.

Integration tests need a real broker. Which one is chosen, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (a broker someone already runs);
2. a local JVM broker (``dev/local_kafka.py``) in a temp dir, jars fetched if needed;
3. testcontainers' ``KafkaContainer``, only if ``docker info`` succeeds;
4. otherwise ``pytest.fail`` when ``CI=true`` (a silent skip would hide a broken CI box),
   else ``pytest.skip`` with the reason.

The Schema Registry (``schema_registry``) is chosen the same way: ``SCHEMA_REGISTRY_URL``
(a Confluent-compatible API someone already runs), else a local Apicurio Registry
(``dev/schema_registry.py``), else ``pytest.fail`` under ``CI=true`` and ``pytest.skip`` otherwise.

Every broker and registry fixture is lazy: pure unit tests never start Java or Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[1]
# dev/ is not a package; make ``import local_kafka`` work for fixtures and fault tests.
if str(REPO_ROOT / "dev") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "dev"))

from local_kafka import LocalKafka, LocalKafkaError, fetch_jars  # noqa: E402
from schema_registry import LocalSchemaRegistry, SchemaRegistryError, fetch_registry  # noqa: E402

TopicFactory = Callable[..., str]


@dataclass
class KafkaBackend:
    """The broker the session uses and where it came from (``kind``)."""

    bootstrap: str
    kind: str  # "env" | "local" | "docker"
    local: LocalKafka | None = None
    notes: list[str] = field(default_factory=list)  # e.g. startup time, for debugging

    def ensure_running(self) -> None:
        """Restart the local broker if a fault test stopped it and did not bring it back."""
        if self.local is not None and not self.local.is_running:
            self.local.start()


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _start_container(stack: ExitStack) -> str:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.10
        from testcontainers.kafka import KafkaContainer
    container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    stack.enter_context(container)
    return container.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBackend]:
    """Choose and start (if needed) the session's broker; see the module docstring."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield KafkaBackend(env, "env")
        return

    reasons: list[str] = []
    with ExitStack() as stack:
        backend: KafkaBackend | None = None
        try:
            fetch_jars()
        except LocalKafkaError as exc:  # no java/mvn, or Maven Central unreachable
            reasons.append(f"local JVM broker unavailable: {str(exc).rstrip('.')}")
        else:
            broker = LocalKafka()
            stack.callback(broker.stop)
            try:
                broker.start(tmp_path_factory.mktemp("kafka"))
            except LocalKafkaError as exc:
                # Java is here but the broker is broken: a real bug, never fall back silently.
                pytest.fail(f"local Kafka broker failed to start: {exc}", pytrace=False)
            backend = KafkaBackend(
                broker.bootstrap_servers, "local", broker, [f"ready in {broker.startup_seconds:.1f}s"]
            )
        if backend is None and _docker_available():
            backend = KafkaBackend(_start_container(stack), "docker")
        elif backend is None:
            reasons.append("docker is missing or `docker info` failed, so no testcontainers either")
        if backend is None:
            msg = "no Kafka broker for integration tests: " + "; ".join(reasons)
            msg += " (set KAFKA_BOOTSTRAP_SERVERS to use an existing broker)"
            if _is_ci():
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        yield backend


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: KafkaBackend) -> str:
    """``host:port`` of a real, ready Kafka broker shared by the whole session."""
    return kafka_backend.bootstrap


@pytest.fixture(scope="session")
def local_kafka(kafka_backend: KafkaBackend) -> LocalKafka | None:
    """The session's ``LocalKafka`` when the local JVM broker is in use, else ``None``.

    Fault tests may ``stop()``/``start()``/``restart(down_seconds=20)`` it; they should
    ``pytest.skip`` when it is ``None`` (external or Docker broker).
    """
    return kafka_backend.local


def _wait_visible(admin: AdminClient, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Block until metadata shows ``topic`` with every partition led by a broker."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=topic, timeout=5)
        tmd = md.topics.get(topic)
        if tmd is not None and tmd.error is None and len(tmd.partitions) == partitions:
            if all(p.leader >= 0 for p in tmd.partitions.values()):
                return
        last = tmd.error if tmd is not None else "missing"
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} not visible in metadata after {timeout}s ({last})")


@pytest.fixture
def kafka_topics(kafka_backend: KafkaBackend) -> Iterator[TopicFactory]:
    """Factory ``make(name_prefix, partitions=1, config=None) -> topic name``.

    Names get a random suffix so tests never share topics; topics are created with the
    AdminClient, awaited in metadata, and deleted after the test.
    """
    kafka_backend.ensure_running()
    admin = AdminClient({"bootstrap.servers": kafka_backend.bootstrap})
    created: list[str] = []

    def make(name_prefix: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{name_prefix}-{uuid.uuid4().hex[:10]}"
        new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        admin.create_topics([new], operation_timeout=30)[name].result(timeout=60)
        created.append(name)
        _wait_visible(admin, name, partitions)
        return name

    yield make

    if created:
        try:
            for fut in admin.delete_topics(created, operation_timeout=30).values():
                fut.result(timeout=60)
        except Exception as exc:  # broker stopped by a fault test, etc.: hygiene only
            print(f"kafka_topics: could not delete {created}: {exc}", file=sys.stderr)


@dataclass
class SchemaRegistryBackend:
    """The Schema Registry the session uses: ``url`` is the Confluent API (for ``SchemaRegistryClient``)."""

    url: str
    kind: str  # "env" | "local"
    local: LocalSchemaRegistry | None = None
    notes: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistryBackend]:
    """A real, ready Schema Registry shared by the whole session; see the module docstring."""
    env = os.environ.get("SCHEMA_REGISTRY_URL", "").strip().rstrip("/")
    if env:
        yield SchemaRegistryBackend(env, "env")
        return
    try:
        fetch_registry()
    except SchemaRegistryError as exc:  # no Java 21+ or mvn, or Maven Central unreachable
        msg = f"no Schema Registry for integration tests: {exc}"
        msg += " (set SCHEMA_REGISTRY_URL to use an existing one)"
        if _is_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    registry = LocalSchemaRegistry()
    try:
        registry.start(tmp_path_factory.mktemp("schema-registry"))
    except SchemaRegistryError as exc:
        # Java and the registry are here but it does not start: a real bug, never skip.
        pytest.fail(f"local Schema Registry failed to start: {exc}", pytrace=False)
    notes = [f"ready in {registry.startup_seconds:.1f}s"]
    try:
        yield SchemaRegistryBackend(registry.url, "local", registry, notes)
    finally:
        registry.stop()
