"""Kafka TLS/SASL: config validation naming the field, and the settings every client gets from it.

Faust's clients get ``broker_credentials``; the confluent-kafka clients (admin, output producer,
partition reader, ``signal-sync produce``) get ``client_config``: ``security_properties`` plus the
``kafka.client_config`` passthrough and a log router. All come from the same ``KafkaSettings``.
Mutual TLS and OAUTHBEARER are in ``test_kafka_client_auth.py``.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
import yaml
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from typer.testing import CliRunner

from signal_sync.cli import produce as produce_cli
from signal_sync.cli.main import app
from signal_sync.config import KafkaSettings, load_settings
from signal_sync.errors import ConfigError
from signal_sync.runtime import broker_credentials, create_runtime, ssl_context
from signal_sync.streams import topics
from signal_sync.streams.client_properties import KEYED_PRODUCER
from signal_sync.streams.clients import security_properties
from signal_sync.streams.librdkafka_log import LibrdkafkaLog
from signal_sync.streams.topics import admin_client, client_config
from tests.unit.factories import MAUTIC_RAW

BOOTSTRAP = "kafka-0.kafka:9093,kafka-1.kafka:9093"
PASSWORD = "scram-secret-pw"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_") or name == "KAFKA_SASL_PASSWORD":
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real self-signed CA certificate (PEM), made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=signal-sync test CA",
            "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "ca.crt"


def write(tmp_path: Path, kafka: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    config = {"kafka": {"bootstrap_servers": BOOTSTRAP, **kafka}, "integrations": [MAUTIC_RAW]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def load(tmp_path: Path, environ: dict[str, str] | None = None, **kafka: Any) -> KafkaSettings:
    return load_settings(write(tmp_path, kafka), environ=environ or {}).kafka


def error(tmp_path: Path, **kafka: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kafka)
    return str(info.value)


# -- validation ------------------------------------------------------------------------


def test_default_is_plaintext_without_credentials(tmp_path: Path) -> None:
    kafka = load(tmp_path)
    assert kafka.security_protocol == "PLAINTEXT" and not kafka.uses_sasl and not kafka.uses_tls
    assert security_properties(kafka) == {"bootstrap.servers": BOOTSTRAP, "security.protocol": "PLAINTEXT"}
    assert broker_credentials(kafka) is None


def test_every_client_config_carries_the_properties_and_a_log_router(tmp_path: Path) -> None:
    kafka = load(tmp_path, security_protocol="SASL_SSL", sasl_username="svc", sasl_password=PASSWORD)
    config = client_config(kafka)
    router = config.pop("logger")
    assert isinstance(router, LibrdkafkaLog) and config.pop("error_cb") == router.error
    assert config == security_properties(kafka)
    assert client_config(kafka)["logger"] is not router, "each client gets its own router"


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "TLS"}, "kafka.security_protocol: Input should be 'PLAINTEXT', 'SSL',"),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_username": "u",
                "sasl_password": "p",
                "sasl_mechanism": "GSSAPI",
            },
            "kafka.sasl_mechanism: Input should be 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512' or "
            "'OAUTHBEARER'",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_password": "p"},
            "kafka.sasl_username: required when security_protocol is SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
            "kafka.sasl_password: missing secret (set sasl_password or sasl_password_file)",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": ""},
            "kafka.sasl_password: missing secret",
        ),
        (
            {"sasl_username": "u", "sasl_password": "p"},
            "kafka.sasl_username: only used with security_protocol SASL_SSL or SASL_PLAINTEXT, "
            "but security_protocol is PLAINTEXT",
        ),
        ({"security_protocol": "SSL", "sasl_mechanism": "PLAIN"}, "kafka.sasl_mechanism: only used with"),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_username": "u",
                "sasl_password": "p",
                "ssl_ca_file": "/nope.pem",
            },
            "kafka.ssl_ca_file: /nope.pem is not a readable file",
        ),
    ],
)
def test_invalid_security_settings_name_the_field(
    tmp_path: Path, kafka: dict[str, Any], message: str
) -> None:
    assert message in error(tmp_path, **kafka)


def test_ca_file_only_with_tls(tmp_path: Path, ca_file: Path) -> None:
    message = error(
        tmp_path,
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password="p",
        ssl_ca_file=str(ca_file),
    )
    assert message.startswith("kafka.ssl_ca_file: only used with security_protocol SSL or SASL_SSL")


def test_password_from_file_and_not_both(tmp_path: Path) -> None:
    secret = tmp_path / "sasl-password"
    secret.write_text(f"{PASSWORD}\n", encoding="utf-8")
    kafka = load(tmp_path, security_protocol="SASL_SSL", sasl_username="svc", sasl_password_file=str(secret))
    assert kafka.sasl_password is not None and kafka.sasl_password.get_secret_value() == PASSWORD
    both = error(
        tmp_path,
        security_protocol="SASL_SSL",
        sasl_username="svc",
        sasl_password="x",
        sasl_password_file=str(secret),
    )
    assert "kafka.sasl_password: set either sasl_password or sasl_password_file, not both" in both


def test_password_from_env_interpolation_and_from_settings_env(tmp_path: Path, monkeypatch) -> None:
    kafka = load(
        tmp_path,
        environ={"KAFKA_SASL_PASSWORD": PASSWORD},
        security_protocol="SASL_SSL",
        sasl_username="svc",
        sasl_password="${KAFKA_SASL_PASSWORD}",
    )
    assert kafka.sasl_password.get_secret_value() == PASSWORD

    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__SASL_USERNAME", "from-env")
    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__SASL_PASSWORD", "env-secret")
    kafka = load(tmp_path)
    assert (kafka.security_protocol, kafka.sasl_username) == ("SASL_SSL", "from-env")
    assert kafka.sasl_password.get_secret_value() == "env-secret" and kafka.bootstrap_servers == BOOTSTRAP


def test_check_config_never_prints_the_sasl_password(tmp_path: Path) -> None:
    config = write(
        tmp_path, {"security_protocol": "SASL_SSL", "sasl_username": "svc", "sasl_password": PASSWORD}
    )
    result = CliRunner().invoke(app, ["check-config", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and '"sasl_username": "svc"' in result.output


# -- what the clients get ------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_ca(tmp_path: Path, ca_file: Path, mechanism: str) -> None:
    kafka = load(
        tmp_path,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="svc",
        sasl_password=PASSWORD,
        ssl_ca_file=str(ca_file),
    )
    assert security_properties(kafka) == {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": "svc",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca_file),
    }
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL and credentials.mechanism is SASLMechanism(mechanism)
    assert PASSWORD not in repr(credentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", mechanism)
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("svc", PASSWORD)
    context = auth["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["signal-sync test CA"]


def test_sasl_plaintext_defaults_to_plain_without_tls(tmp_path: Path) -> None:
    kafka = load(tmp_path, security_protocol="SASL_PLAINTEXT", sasl_username="svc", sasl_password=PASSWORD)
    assert kafka.sasl_mechanism == "PLAIN"
    assert security_properties(kafka)["security.protocol"] == "SASL_PLAINTEXT"
    assert "ssl.ca.location" not in security_properties(kafka)
    auth = credentials_to_aiokafka_auth(broker_credentials(kafka))
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    assert auth["sasl_mechanism"] == "PLAIN"


def test_ssl_with_and_without_custom_ca(tmp_path: Path, ca_file: Path) -> None:
    kafka = load(tmp_path, security_protocol="SSL", ssl_ca_file=str(ca_file))
    assert security_properties(kafka) == {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca_file),
    }
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SSL" and len(auth["ssl_context"].get_ca_certs()) == 1

    system = load(tmp_path, security_protocol="SSL")
    assert "ssl.ca.location" not in security_properties(system)
    assert ssl_context(system).verify_mode is ssl.CERT_REQUIRED


def test_a_ca_file_that_is_not_pem_fails_naming_the_field(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate", encoding="utf-8")
    kafka = load(tmp_path, security_protocol="SSL", ssl_ca_file=str(bogus))
    with pytest.raises(ConfigError, match=r"^kafka\.ssl_ca_file: cannot load .* as a PEM CA bundle"):
        broker_credentials(kafka)


def test_faust_app_gets_the_credentials(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, {"security_protocol": "SASL_SSL", "sasl_username": "svc", "sasl_password": PASSWORD}),
        environ={},
    )
    runtime = create_runtime(settings, partitions=1)
    credentials = runtime.app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials) and credentials.username == "svc"


def test_admin_client_and_produce_use_the_security_settings(tmp_path: Path, monkeypatch) -> None:
    seen: list[dict[str, str]] = []

    class FakeClient:
        def __init__(self, config: dict[str, Any]) -> None:
            assert isinstance(config.pop("logger"), LibrdkafkaLog) and config.pop("error_cb")
            seen.append(dict(config))

        def list_topics(self, timeout: float) -> object:
            return object()

        def produce(self, *args: Any, **kwargs: Any) -> None:
            kwargs["on_delivery"](None, None)

        def poll(self, _timeout: float) -> int:
            return 0

        def flush(self, _timeout: float) -> int:
            return 0

    monkeypatch.setattr(topics, "AdminClient", FakeClient)
    monkeypatch.setattr(produce_cli, "Producer", FakeClient)
    config = write(
        tmp_path,
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
            "sasl_password": PASSWORD,
        },
    )
    kafka = load_settings(config, environ={}).kafka
    admin_client(kafka)
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "identify", "messageId": "m1"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["produce", "-c", str(config), str(events)])
    assert result.exit_code == 0, result.output

    expected = security_properties(kafka)
    assert seen[0] == expected
    assert seen[1] == expected, "produce checks the cluster first"
    assert seen[2] == {**expected, **KEYED_PRODUCER}
    assert seen[2]["sasl.mechanism"] == "SCRAM-SHA-256" and seen[2]["sasl.password"] == PASSWORD
