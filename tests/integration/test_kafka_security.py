"""Kafka client security against a real broker: SASL_SSL with SCRAM-SHA-512, mutual TLS, and SASL
OAUTHBEARER with tokens from an OIDC provider, for every client the worker has.

One extra broker for the module (``dev/local_kafka.py`` with ``SecureListeners``): a SASL_SSL
listener (SCRAM users created at format time; OAUTHBEARER JWTs checked against the test provider's
JWKS) and an SSL listener requiring a client certificate, with certificates made at test time
(``tests/support/pki.py``, openssl). Its PLAINTEXT listener is only used to read what the worker
wrote. Each round trip runs the real worker (Faust's aiokafka consumer and producer, the
confluent-kafka output producer and admin) plus ``signal-sync topics create`` / ``produce`` and
the partition reader over the secured listener; refused credentials end the CLI with one error
naming the setting, and librdkafka's own log lines never reach stderr raw.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import WorkerProcess, consume_until, free_port
from local_kafka import LocalKafka, LocalKafkaError, SecureListeners, fetch_jars

from signal_sync.config import load_settings
from signal_sync.streams.partition_reader import PartitionReader
from signal_sync.streams.topics import client_config
from tests.support.config import write_config
from tests.support.oidc import Provider, running
from tests.support.pki import CLIENT_KEY_PASSWORD, Pki, make_pki

pytestmark = pytest.mark.integration

SCRAM_USER = "signal-sync"
SCRAM_PASSWORD = "scram-pass-7d41e0"  # noqa: S105 - the test broker's user
CLIENT_ID = "signal-sync"
CLIENT_SECRET = "oidc-client-secret-93ab"  # noqa: S105 - the test provider's client
AUDIENCE = "test-kafka"
RAW_LIBRDKAFKA_LINE = re.compile(r"%\d\|\d+\.\d+\|")
CONSENT = {"consent": {"canonical": {"marketing": True}}}


@dataclass
class SecureCluster:
    broker: LocalKafka
    listeners: SecureListeners
    pki: Pki
    idp: Provider

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap_servers


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    """A broker with SASL_SSL (SCRAM-SHA-512, OAUTHBEARER) and SSL (client certificates) listeners."""
    try:
        fetch_jars()
    except LocalKafkaError as exc:
        message = f"no local Kafka broker for the security tests: {exc}"
        if _is_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    with running(Provider({CLIENT_ID: CLIENT_SECRET}, audience=AUDIENCE)) as idp:
        listeners = SecureListeners(
            pki.broker_keystore,
            pki.ca,
            {SCRAM_USER: SCRAM_PASSWORD},
            jwks_url=idp.jwks_url,
            audience=AUDIENCE,
        )
        broker = LocalKafka(secure=listeners)
        try:
            broker.start(tmp_path_factory.mktemp("secure-kafka"))
        except LocalKafkaError as exc:
            pytest.fail(f"the secured local broker failed to start: {exc}", pytrace=False)
        try:
            yield SecureCluster(broker, listeners, pki, idp)
        finally:
            broker.stop()


def scram(cluster: SecureCluster, folder: Path, password: str = SCRAM_PASSWORD) -> dict[str, Any]:
    secret = folder / "kafka-sasl-password"
    secret.write_text(password + "\n", encoding="utf-8")
    return {
        "bootstrap_servers": cluster.listeners.sasl_ssl_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": SCRAM_USER,
        "sasl_password_file": str(secret),
        "ssl_ca_file": str(cluster.pki.ca),
    }


def mutual_tls(cluster: SecureCluster, _folder: Path) -> dict[str, Any]:
    return {
        "bootstrap_servers": cluster.listeners.ssl_bootstrap,
        "security_protocol": "SSL",
        "ssl_ca_file": str(cluster.pki.ca),
        "ssl_certificate_file": str(cluster.pki.client_cert),
        "ssl_key_file": str(cluster.pki.client_key_encrypted),
        "ssl_key_password": CLIENT_KEY_PASSWORD,
    }


def oauthbearer(cluster: SecureCluster, _folder: Path, secret: str = CLIENT_SECRET) -> dict[str, Any]:
    return {
        "bootstrap_servers": cluster.listeners.sasl_ssl_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauthbearer_token_endpoint_url": cluster.idp.token_url,
        "sasl_oauthbearer_client_id": CLIENT_ID,
        "sasl_oauthbearer_client_secret": secret,
        "sasl_oauthbearer_scope": "kafka",
        "ssl_ca_file": str(cluster.pki.ca),
    }


def config_file(folder: Path, kafka: dict[str, Any], mautic_url: str, mailgun_url: str) -> Path:
    suffix = uuid.uuid4().hex[:10]
    topics = {name: f"sec-{name}-{suffix}" for name in ("source", "deliveries", "dlq")}
    return write_config(
        folder / "config.yaml",
        kafka["bootstrap_servers"],
        topics,
        mautic_url,
        mailgun_url,
        folder / "state",
        kafka=kafka,
    )


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signal_sync.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def events(folder: Path) -> Path:
    path = folder / "events.jsonl"
    lines = [
        {
            "type": "identify",
            "messageId": f"sec-{n}",
            "anonymousId": f"anon-sec-{n}",
            "timestamp": "2026-06-06T10:00:00Z",
            "traits": {"email": f"secure-{n}@example.com", "firstName": "Sec"},
            "context": CONSENT,
        }
        for n in range(3)
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path


@pytest.mark.parametrize("security", [scram, mutual_tls, oauthbearer], ids=["scram", "mtls", "oauthbearer"])
def test_worker_and_cli_round_trip_over_the_secured_listener(
    tmp_path: Path, secure_kafka: SecureCluster, sandboxes, security
) -> None:
    crm, mg = sandboxes
    issued_before = len(secure_kafka.idp.issued)
    kafka = security(secure_kafka, tmp_path)
    config = config_file(tmp_path, kafka, crm.url, mg.url)
    settings = load_settings(config, environ={})

    created = cli("topics", "create", "-c", str(config), "--partitions", "2")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count(": created") == 3

    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        produced = cli("produce", "-c", str(config), str(events(tmp_path)))
        assert produced.returncode == 0, produced.stderr
        outcomes = consume_until(
            secure_kafka.plaintext,
            settings.kafka.deliveries_topic,
            lambda got: len(got) >= 6,
            120,
            check=worker.assert_alive,
        )
    finally:
        code = worker.stop()
    log = (tmp_path / "worker.log").read_text(encoding="utf-8", errors="replace")
    assert code == 0, log[-4000:]
    assert {(o["message_id"], o["integration"], o["status"]) for o in outcomes} == {
        (f"sec-{n}", integration, "delivered")
        for n in range(3)
        for integration in ("mautic-main", "mailgun-news")
    }
    assert not RAW_LIBRDKAFKA_LINE.search(log)
    for secret in (SCRAM_PASSWORD, CLIENT_SECRET, CLIENT_KEY_PASSWORD):
        assert secret not in log

    # The partition reader (the sequence guard's gap reader) over the same listener.
    reader = PartitionReader(client_config(settings.kafka), group_id=settings.kafka.app_id)

    async def read_back() -> tuple[int, int]:
        try:
            records = [r for p in (0, 1) for r in await reader.read(settings.kafka.source_topic, p, 0, 10)]
            committed = sum([await reader.start_offset(settings.kafka.source_topic, p) for p in (0, 1)])
            return len(records), committed
        finally:
            await reader.close()

    assert asyncio.run(read_back()) == (3, 3), "every source record read back, all committed by the worker"

    if security is oauthbearer:
        # librdkafka fetches its own tokens (sasl.oauthbearer.method=oidc); Faust's aiokafka clients
        # get theirs from signal-sync's token provider (Python's requests): both asked the provider.
        agents = [agent for client, agent in secure_kafka.idp.issued[issued_before:] if client == CLIENT_ID]
        assert any(agent.startswith("python-requests/") for agent in agents), agents
        assert any(not agent.startswith("python-requests/") for agent in agents), agents


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert not RAW_LIBRDKAFKA_LINE.search(result.stderr), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "wrong-scram-password",
            "ConfigError: kafka.sasl_password: the brokers refused the SCRAM-SHA-512 credentials of "
            "kafka.sasl_username 'signal-sync'",
            id="wrong-scram-password",
        ),
        pytest.param(
            "untrusted-client-certificate",
            "ConfigError: kafka.ssl_certificate_file: the brokers refused the client certificate",
            id="untrusted-client-certificate",
        ),
        pytest.param(
            "no-client-certificate",
            "ConfigError: kafka.ssl_certificate_file: the brokers refused the client certificate",
            id="no-client-certificate",
        ),
        pytest.param(
            "ca-not-given",
            "ConfigError: kafka.ssl_ca_file: the brokers' certificate is not signed by a CA",
            id="ca-not-given",
        ),
        pytest.param(
            "wrong-oauth-secret",
            "ConfigError: kafka.sasl_oauthbearer_client_secret: no access token",
            id="wrong-oauth-secret",
        ),
    ],
)
def test_refused_credentials_end_the_cli_with_one_error_naming_the_setting(
    tmp_path: Path, secure_kafka: SecureCluster, case: str, expected: str
) -> None:
    cluster = secure_kafka
    kafka = {
        "wrong-scram-password": lambda: scram(cluster, tmp_path, password="not-the-password"),
        "untrusted-client-certificate": lambda: {
            **mutual_tls(cluster, tmp_path),
            "ssl_certificate_file": str(cluster.pki.untrusted_cert),
            "ssl_key_file": str(cluster.pki.untrusted_key),
            "ssl_key_password": None,
        },
        "no-client-certificate": lambda: {
            "bootstrap_servers": cluster.listeners.ssl_bootstrap,
            "security_protocol": "SSL",
            "ssl_ca_file": str(cluster.pki.ca),
        },
        "ca-not-given": lambda: {**scram(cluster, tmp_path), "ssl_ca_file": None},
        "wrong-oauth-secret": lambda: oauthbearer(cluster, tmp_path, secret="not-the-secret"),
    }[case]()
    kafka = {key: value for key, value in kafka.items() if value is not None}
    config = config_file(tmp_path, kafka, "http://127.0.0.1:1", "http://127.0.0.1:2")
    line = _one_error_line(cli("topics", "create", "-c", str(config)))
    assert line.startswith(expected), line
    for secret in ("not-the-password", "not-the-secret", CLIENT_KEY_PASSWORD):
        assert secret not in line


def test_topics_create_against_a_closed_port_prints_one_clear_error(tmp_path: Path) -> None:
    """librdkafka would print a raw ``%3|...|FAIL|`` line every ~50 ms for the 15 s it tries."""
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        f"127.0.0.1:{port}",
        {"source": "s", "deliveries": "d", "dlq": "q"},
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        tmp_path / "state",
    )
    line = _one_error_line(cli("topics", "create", "-c", str(config)))
    assert line.startswith(f"ConfigError: kafka.bootstrap_servers: cannot reach 127.0.0.1:{port}: "), line
    assert "Connection refused" in line
