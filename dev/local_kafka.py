"""A real single-node Apache Kafka broker for tests and the demo, without Docker.

Why: the service's behaviour (rebalances, offsets, retries, broker outages) can only be
trusted against a real broker, and CI machines here have Java and Maven but no Docker.
So we fetch the broker's jars from Maven Central (pinned by ``dev/kafka/pom.xml``) into
``.cache/kafka/<version>/libs`` and run ``kafka.Kafka`` in KRaft combined mode
(broker + controller in one JVM) on 127.0.0.1.

"Ready" means a real metadata round trip: the AdminClient sees the broker *and* can
create (and delete) a throwaway topic, which proves the controller quorum is up, not
merely that a port accepts connections.

``LocalKafka(secure=SecureListeners(...))`` adds the listeners of a secured cluster beside the
PLAINTEXT one (which stays for setup and inter-broker traffic): ``SASL_SSL`` with SCRAM-SHA-512
users (created by ``kafka-storage format --add-scram``) and, given a JWKS URL, OAUTHBEARER tokens
checked against it; and ``SSL`` requiring a client certificate signed by the trusted CA. The
certificates and keys are PEM files the caller makes (``ssl.keystore.type=PEM``).

Importable (``LocalKafka``, ``fetch_jars``) and runnable::

    python dev/local_kafka.py fetch                  # download jars (idempotent)
    python dev/local_kafka.py start [--port 9092]    # background broker for the demo
    python dev/local_kafka.py status
    python dev/local_kafka.py stop

Only the standard library and confluent_kafka are used (plus dev/background_jvm.py, which runs
the JVM), so this works from a bare venv.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from background_jvm import (
    HOST,
    BackgroundJvm,
    ServerCli,
    fetch_with_maven,
    free_ports,
    port_open,
    require_tool,
)

KAFKA_VERSION = "4.1.1"  # keep in sync with <kafka.version> in dev/kafka/pom.xml
REPO_ROOT = Path(__file__).resolve().parents[1]
POM_PATH = REPO_ROOT / "dev" / "kafka" / "pom.xml"
LOG4J2_CONFIG = REPO_ROOT / "dev" / "kafka" / "log4j2.yaml"
CACHE_ROOT = REPO_ROOT / ".cache" / "kafka"
DEFAULT_LIBS_DIR = CACHE_ROOT / KAFKA_VERSION / "libs"
DEMO_DATA_DIR = CACHE_ROOT / "run"
DEMO_PORT = 9092
NODE_ID = 1

_PID_FILE_NAME = "broker.pid"
_PROBE_TOPIC_PREFIX = "__local_kafka_ready_"
_TOOLS_HINT = (
    "the local Kafka broker needs Java 17+ and Maven 3.8+ "
    "(e.g. `apt-get install openjdk-17-jre-headless maven`)."
)


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


# --------------------------------------------------------------------------- jars


def _require_tool(name: str) -> str:
    return require_tool(name, _TOOLS_HINT, LocalKafkaError)


def fetch_jars(libs_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Copy the broker's runtime jars into ``libs_dir`` and return it.

    Idempotent and safe to call concurrently (see ``background_jvm.fetch_with_maven``): an
    interrupted fetch, or a changed pom, is redone from scratch.
    """
    _require_tool("java")  # cached jars are useless without it; fail here, not at start()
    return fetch_with_maven(
        (libs_dir or DEFAULT_LIBS_DIR).resolve(),
        pom=POM_PATH,
        goal="dependency:copy-dependencies",
        options=["-DincludeScope=runtime"],
        complete=lambda libs: any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")),
        what=f"the Kafka {KAFKA_VERSION} jars",
        mvn_hint=_TOOLS_HINT,
        error=LocalKafkaError,
        quiet=quiet,
    )


# --------------------------------------------------------------------------- helpers


def _random_cluster_id() -> str:
    """Same format as ``StorageTool random-uuid`` without paying for a JVM start."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection to stderr; route that to a quiet logger."""
    lg = logging.getLogger("local_kafka.librdkafka")
    lg.setLevel(logging.CRITICAL)
    return lg


SCRAM_MECHANISM = "SCRAM-SHA-512"
OAUTH_ALLOWED_URLS = "org.apache.kafka.sasl.oauthbearer.allowed.urls"


@dataclass
class SecureListeners:
    """A SASL_SSL and an SSL (client certificate required) listener beside PLAINTEXT.

    ``keystore``: PEM with the broker's unencrypted PKCS#8 key and its certificate (valid for
    127.0.0.1); ``truststore``: PEM of the CA(s) whose client certificates the SSL listener
    accepts. ``scram_users``: name → password for SCRAM-SHA-512 on SASL_SSL. ``jwks_url``: also
    accept OAUTHBEARER on SASL_SSL, with JWTs signed by a key of that JWKS and carrying
    ``audience``. Ports are picked at the first start and kept for restarts.
    """

    keystore: Path
    truststore: Path
    scram_users: dict[str, str] = field(default_factory=dict)
    jwks_url: str | None = None
    audience: str = "kafka"
    sasl_ssl_port: int | None = None
    ssl_port: int | None = None

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return f"{HOST}:{self.sasl_ssl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"{HOST}:{self.ssl_port}"

    def mechanisms(self) -> list[str]:
        return [SCRAM_MECHANISM] + (["OAUTHBEARER"] if self.jwks_url else [])

    def properties(self) -> dict[str, str]:
        """The broker properties of both listeners (listener names are added by the caller)."""
        mechanisms = ",".join(self.mechanisms())
        props = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": mechanisms,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": mechanisms,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        }
        if self.jwks_url:
            props |= {
                "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config": (
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
                ),
                "listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class": (
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
                ),
                "sasl.oauthbearer.jwks.endpoint.url": self.jwks_url,
                "sasl.oauthbearer.expected.audience": self.audience,
            }
        return props

    def jvm_options(self) -> list[str]:
        """Kafka 4 reads no OAuth URL it was not allowed to (a system property)."""
        return [f"-D{OAUTH_ALLOWED_URLS}={self.jwks_url}"] if self.jwks_url else []

    def format_options(self) -> list[str]:
        """``kafka-storage format`` options creating the SCRAM users."""
        options: list[str] = []
        for name, password in self.scram_users.items():
            options += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return options


def _server_properties(
    data_dir: Path, port: int, controller_port: int, secure: SecureListeners | None = None
) -> str:
    listeners = [f"PLAINTEXT://{HOST}:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if secure is not None:
        listeners += [f"SASL_SSL://{HOST}:{secure.sasl_ssl_port}", f"SSL://{HOST}:{secure.ssl_port}"]
        protocols += ["SASL_SSL:SASL_SSL", "SSL:SSL"]
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "listeners": ",".join([*listeners, f"CONTROLLER://{HOST}:{controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir / "kraft-logs"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash (stop(kill=True)) the restarted broker cannot register until the old
        # incarnation's session expires; the 9 s default made crash-restarts take ~13 s.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # Modest disk and memory use: this is a laptop/CI broker, not production.
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.retention.hours": "24",
        "log.retention.bytes": str(256 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "delete.topic.enable": "true",
    }
    if secure is not None:
        props |= secure.properties()
    header = "# Written by dev/local_kafka.py; regenerated on every start.\n"
    return header + "".join(f"{k}={v}\n" for k, v in props.items())


# --------------------------------------------------------------------------- broker


class LocalKafka(BackgroundJvm):
    """One KRaft combined-mode broker process on 127.0.0.1.

    ``start()`` may be called again after ``stop()``: with no arguments it reuses the
    same data dir and ports, so topics, messages and committed offsets survive, which
    is what fault tests need ("stop the broker for 20 s and restart").
    """

    name = "Kafka"
    version = KAFKA_VERSION
    noun = "broker"
    error = LocalKafkaError
    stdout_log_name = "broker.out"  # JVM stdout/stderr (crashes, GC warnings)
    server_log_name = "server.log"  # the broker's own log4j2 log (INFO, chatty subsystems at WARN)

    def __init__(
        self,
        libs_dir: Path | None = None,
        *,
        heap_min_mb: int = 512,
        heap_max_mb: int = 768,
        watchdog: bool = True,
        detach: bool = False,
        secure: SecureListeners | None = None,
    ) -> None:
        super().__init__(watchdog=watchdog, detach=detach)
        self.secure = secure
        self.libs_dir = libs_dir
        self.heap_min_mb = heap_min_mb
        self.heap_max_mb = heap_max_mb
        self.controller_port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self._require_port()}"

    @property
    def address(self) -> str:
        return self.bootstrap_servers

    def start(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        *,
        controller_port: int | None = None,
        timeout: float = 90.0,
    ) -> str:
        """Start (or restart) the broker and block until it serves metadata.

        ``data_dir`` and the ports default to those of the previous start; on the first
        start ``data_dir`` is required and free ports are picked when none are given.
        Returns the bootstrap address.
        """
        self.port, self.controller_port = self._prepare(
            data_dir,
            self.port if port is None else port,
            self.controller_port if controller_port is None else controller_port,
        )
        data_dir = self._require_data_dir()
        started = time.monotonic()  # startup_seconds covers format + JVM start + readiness
        secure = self.secure
        if secure is not None and (secure.sasl_ssl_port is None or secure.ssl_port is None):
            taken = (self.port, self.controller_port)
            free = [p for p in free_ports(4) if p not in taken]
            secure.sasl_ssl_port = secure.sasl_ssl_port or free.pop()
            secure.ssl_port = secure.ssl_port or free.pop()
        libs = fetch_jars(self.libs_dir)
        java = _require_tool("java")
        data_dir.mkdir(parents=True, exist_ok=True)
        props_path = data_dir / "server.properties"
        props_path.write_text(_server_properties(data_dir, self.port, self.controller_port, secure))
        base = [
            java,
            *(secure.jvm_options() if secure is not None else []),
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={data_dir}",
            "-Djava.awt.headless=true",
            "-cp",
            str(libs / "*"),
        ]
        if not (data_dir / "kraft-logs" / "meta.properties").is_file():
            self._format(base, props_path)

        cmd = [
            *base[:1],
            f"-Xms{self.heap_min_mb}m",
            f"-Xmx{self.heap_max_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent",
            *base[1:],
            "kafka.Kafka",
            str(props_path),
        ]
        return self._run(cmd, started=started, timeout=timeout)

    def _format(self, base: list[str], props_path: Path) -> None:
        cmd = [
            *base[:1],
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",  # short-lived tool: start fast, peak speed irrelevant
            *base[1:],
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(props_path),
            *(self.secure.format_options() if self.secure is not None else []),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise LocalKafkaError(
                f"kafka-storage format failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )

    def _readiness_probe(self) -> Callable[[], None]:
        """A real metadata round trip: the broker is listed *and* a throwaway topic can be created
        (and deleted), which proves the controller quorum is up, not merely an open port."""
        from confluent_kafka.admin import AdminClient, NewTopic

        port = self._require_port()
        admin: AdminClient | None = None

        def probe() -> None:
            nonlocal admin
            if admin is None:
                if not port_open(port):
                    raise LocalKafkaError("port never opened")
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _quiet_logger()})
            md = admin.list_topics(timeout=2)
            if not md.brokers:
                raise LocalKafkaError("metadata lists no brokers")
            topic = f"{_PROBE_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
            admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=5)[topic].result(timeout=10)
            with contextlib.suppress(Exception):  # ready already proven; deletion is hygiene
                admin.delete_topics([topic], operation_timeout=5)[topic].result(timeout=10)

        return probe

    def restart(self, down_seconds: float = 0.0, *, kill: bool = False, timeout: float = 90.0) -> str:
        """Stop, stay down for ``down_seconds``, start again on the same ports and data."""
        self.stop(kill=kill)
        time.sleep(down_seconds)
        return self.start(timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP the JVM: ports stay open but nothing answers (a hung broker)."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalKafkaError("broker is not running")
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalKafkaError("broker is not running")
        self._proc.send_signal(signal.SIGCONT)


# --------------------------------------------------------------------------- CLI


class _KafkaCli(ServerCli):
    prog = "local_kafka.py"
    description = __doc__.split("\n\n")[0]
    name = "Kafka"
    server = LocalKafka
    fetch_help = "download the broker jars with Maven (idempotent)"
    data_dir = DEMO_DATA_DIR
    port = DEMO_PORT
    pid_file = _PID_FILE_NAME

    def fetch(self, *, quiet: bool) -> Path:
        return fetch_jars(quiet=quiet)

    def add_start_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--controller-port", type=int, default=None, help="default: port + 1")
        parser.add_argument("--fresh", action="store_true", help="wipe the data dir first")

    def launch(self, args: argparse.Namespace, data_dir: Path) -> LocalKafka:
        if args.fresh:
            shutil.rmtree(data_dir, ignore_errors=True)
        broker = LocalKafka(watchdog=False, detach=True)
        ctl_port = args.controller_port or args.port + 1
        broker.start(data_dir, args.port, controller_port=ctl_port, timeout=args.timeout)
        return broker

    def is_ours(self, pid: int, data_dir: Path) -> bool:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return b"kafka.Kafka" in cmdline and str(data_dir / "server.properties").encode() in cmdline

    def address(self, data_dir: Path) -> str | None:
        try:
            for line in (data_dir / "server.properties").read_text().splitlines():
                if line.startswith("advertised.listeners="):
                    return line.split("://", 1)[1]
        except OSError:
            pass
        return None


def main(argv: list[str] | None = None) -> int:
    return _KafkaCli().main(argv)


if __name__ == "__main__":
    sys.exit(main())
