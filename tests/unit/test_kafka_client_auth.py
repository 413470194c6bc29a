"""Mutual TLS, SASL OAUTHBEARER and the ``kafka.client_config`` passthrough: validation that names
the field, and what Faust's aiokafka clients and the confluent-kafka clients get from them.

The certificates are real (``tests/support/pki.py``, openssl); the TLS handshake test runs a
loopback TLS server that requires a client certificate. Against a real broker:
``tests/integration/test_kafka_security.py``.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import faust
import pytest
import yaml
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import KafkaSettings, load_settings
from signal_sync.errors import ConfigError
from signal_sync.observability.logs import secrets_of
from signal_sync.runtime import broker_credentials, create_runtime, ssl_context
from signal_sync.streams.client_properties import MASK, OWNED, check, masked
from signal_sync.streams.clients import client_config, explain, security_properties
from signal_sync.streams.oauth import ClientCredentialsTokenProvider
from tests.support.pki import CLIENT_KEY_PASSWORD, Pki, make_pki
from tests.unit.factories import MAUTIC_RAW

BOOTSTRAP = "kafka-0.kafka:9093"
TOKEN_URL = "https://login.example.com/oauth2/token"
CLIENT_SECRET = "oidc-secret-5f0a"  # noqa: S105 - a test value


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except RuntimeError as exc:
        pytest.skip(str(exc))


def write(tmp_path: Path, kafka: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    config = {"kafka": {"bootstrap_servers": BOOTSTRAP, **kafka}, "integrations": [MAUTIC_RAW]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def load(tmp_path: Path, **kafka: Any) -> KafkaSettings:
    return load_settings(write(tmp_path, kafka), environ={}).kafka


def error(tmp_path: Path, **kafka: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kafka)
    return str(info.value)


def mtls(pki: Pki, **overrides: Any) -> dict[str, Any]:
    return {
        "security_protocol": "SSL",
        "ssl_ca_file": str(pki.ca),
        "ssl_certificate_file": str(pki.client_cert),
        "ssl_key_file": str(pki.client_key_encrypted),
        "ssl_key_password": CLIENT_KEY_PASSWORD,
        **overrides,
    }


def oauth(**overrides: Any) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauthbearer_token_endpoint_url": TOKEN_URL,
        "sasl_oauthbearer_client_id": "signal-sync",
        "sasl_oauthbearer_client_secret": CLIENT_SECRET,
        **overrides,
    }


# -- mutual TLS ---------------------------------------------------------------------------


def test_mtls_maps_to_librdkafka_and_to_faust(tmp_path: Path, pki: Pki) -> None:
    kafka = load(tmp_path, **mtls(pki))
    assert security_properties(kafka) == {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key_encrypted),
        "ssl.key.password": CLIENT_KEY_PASSWORD,
    }
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_faust_tls_context_presents_the_client_certificate(tmp_path: Path, pki: Pki) -> None:
    """A loopback TLS server that requires a client certificate signed by the test CA sees ours."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_cert_chain(str(pki.broker_keystore))
    seen: list[dict[str, Any]] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                seen.append(tls.getpeercert())
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        context = ssl_context(load(tmp_path, **mtls(pki)))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.recv(2) == b"ok"
        thread.join(10)
    subject = dict(item[0] for item in seen[0]["subject"])
    assert subject["commonName"] == "signal-sync"


def test_plain_key_needs_no_password(tmp_path: Path, pki: Pki) -> None:
    kafka = load(tmp_path, **mtls(pki, ssl_key_file=str(pki.client_key), ssl_key_password=None))
    assert kafka.ssl_key_password is None and "ssl.key.password" not in security_properties(kafka)


def test_key_password_from_file(tmp_path: Path, pki: Pki) -> None:
    secret = tmp_path / "key-password"
    secret.write_text(CLIENT_KEY_PASSWORD + "\n", encoding="utf-8")
    kafka = load(tmp_path, **mtls(pki, ssl_key_password=None, ssl_key_password_file=str(secret)))
    assert kafka.ssl_key_password is not None
    assert kafka.ssl_key_password.get_secret_value() == CLIENT_KEY_PASSWORD


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"ssl_key_file": None, "ssl_key_password": None},
            "kafka.ssl_key_file: required with ssl_certificate_file",
        ),
        ({"ssl_certificate_file": None}, "kafka.ssl_certificate_file: required with ssl_key_file"),
        ({"ssl_key_password": None}, "kafka.ssl_key_password: ssl_key_file is encrypted; set"),
        ({"ssl_key_password": "not-the-password"}, "kafka.ssl_key_password: does not decrypt ssl_key_file"),
        ({"ssl_certificate_file": "/nope.crt"}, "kafka.ssl_certificate_file: /nope.crt is not a readable"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p"},
            "kafka.ssl_ca_file: only used with security_protocol SSL or SASL_SSL",
        ),
        (
            {"ssl_certificate_file": None, "ssl_key_file": None},
            "kafka.ssl_key_password: only used with ssl_key_file",
        ),
    ],
)
def test_invalid_client_certificate_settings_name_the_field(
    tmp_path: Path, pki: Pki, overrides: dict[str, Any], message: str
) -> None:
    kafka = {k: v for k, v in mtls(pki, **overrides).items() if v is not None}
    text = error(tmp_path, **kafka)
    assert text.startswith(message), text
    assert CLIENT_KEY_PASSWORD not in text and "not-the-password" not in text


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    text = error(tmp_path, **mtls(pki, ssl_key_file=str(pki.untrusted_key), ssl_key_password=None))
    assert text == "kafka.ssl_key_file: is not the private key of ssl_certificate_file"


# -- OAUTHBEARER ----------------------------------------------------------------------------


def test_oauthbearer_maps_to_librdkafka_oidc_and_to_faust(tmp_path: Path) -> None:
    kafka = load(tmp_path, **oauth(sasl_oauthbearer_scope="kafka"))
    assert security_properties(kafka) == {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": TOKEN_URL,
        "sasl.oauthbearer.client.id": "signal-sync",
        "sasl.oauthbearer.client.secret": CLIENT_SECRET,
        "sasl.oauthbearer.scope": "kafka",
    }
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.OAuthCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert isinstance(auth["sasl_oauth_token_provider"], ClientCredentialsTokenProvider)
    assert auth["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    assert CLIENT_SECRET not in repr(credentials)


def test_oauthbearer_over_sasl_plaintext_has_no_tls(tmp_path: Path) -> None:
    kafka = load(tmp_path, **oauth(security_protocol="SASL_PLAINTEXT"))
    auth = credentials_to_aiokafka_auth(broker_credentials(kafka))
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None


def test_client_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    from_file = oauth(sasl_oauthbearer_client_secret=None, sasl_oauthbearer_client_secret_file=str(secret))
    kafka = load(tmp_path, **from_file)
    assert kafka.sasl_oauthbearer_client_secret is not None
    assert kafka.sasl_oauthbearer_client_secret.get_secret_value() == CLIENT_SECRET


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"sasl_oauthbearer_token_endpoint_url": None},
            "kafka.sasl_oauthbearer_token_endpoint_url: required when sasl_mechanism is OAUTHBEARER",
        ),
        (
            {"sasl_oauthbearer_client_id": None},
            "kafka.sasl_oauthbearer_client_id: required when sasl_mechanism is OAUTHBEARER",
        ),
        (
            {"sasl_oauthbearer_client_secret": None},
            "kafka.sasl_oauthbearer_client_secret: missing secret",
        ),
        (
            {"sasl_oauthbearer_token_endpoint_url": "http://login.example.com/token"},
            "kafka.sasl_oauthbearer_token_endpoint_url: plain http is only allowed to a loopback host",
        ),
        (
            {"sasl_oauthbearer_token_endpoint_url": "https://id:hunter2-secret@login.example.com/token"},
            "kafka.sasl_oauthbearer_token_endpoint_url: must not carry credentials",
        ),
        (
            {"sasl_username": "svc"},
            "kafka.sasl_username: only used with sasl_mechanism PLAIN or SCRAM-*, but it is OAUTHBEARER",
        ),
        (
            {"security_protocol": "SSL", "sasl_mechanism": None},
            "kafka.sasl_oauthbearer_token_endpoint_url: only used with security_protocol SASL_SSL",
        ),
        (
            {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc", "sasl_password": "pw-12345"},
            "kafka.sasl_oauthbearer_token_endpoint_url: only used with sasl_mechanism OAUTHBEARER, "
            "but it is SCRAM-SHA-512",
        ),
    ],
)
def test_invalid_oauthbearer_settings_name_the_field(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    kafka = {k: v for k, v in oauth(**overrides).items() if v is not None}
    text = error(tmp_path, **kafka)
    assert text.startswith(message), text
    assert "hunter2-secret" not in text and CLIENT_SECRET not in text


def test_an_http_token_endpoint_on_loopback_is_allowed(tmp_path: Path) -> None:
    kafka = load(tmp_path, **oauth(sasl_oauthbearer_token_endpoint_url="http://127.0.0.1:8080/token"))
    assert kafka.sasl_oauthbearer_token_endpoint_url == "http://127.0.0.1:8080/token"


# -- the kafka.client_config passthrough -----------------------------------------------------------


def test_passthrough_reaches_every_confluent_client_as_librdkafka_strings(tmp_path: Path) -> None:
    kafka = load(
        tmp_path, client_config={"linger.ms": 5, "socket.keepalive.enable": True, "compression.type": "zstd"}
    )
    config = client_config(kafka)
    assert {k: config[k] for k in ("linger.ms", "socket.keepalive.enable", "compression.type")} == {
        "linger.ms": "5",
        "socket.keepalive.enable": "true",
        "compression.type": "zstd",
    }
    assert config["bootstrap.servers"] == BOOTSTRAP


@pytest.mark.parametrize("key", sorted(OWNED))
def test_properties_signal_sync_owns_are_refused_naming_the_field(tmp_path: Path, key: str) -> None:
    text = error(tmp_path, client_config={key: "x"})
    assert text == f"kafka.client_config: {key!r} is set by signal-sync; use {OWNED[key]}"


def test_callbacks_and_what_librdkafka_refuses_are_refused(tmp_path: Path) -> None:
    assert error(tmp_path, client_config={"stats_cb": "x"}).startswith(
        "kafka.client_config: 'stats_cb' is a callback"
    )
    unknown = error(tmp_path, client_config={"no.such.property": 1})
    assert unknown.startswith("kafka.client_config: librdkafka refuses it: No such configuration property")
    bad = error(tmp_path, client_config={"socket.timeout.ms": "soon", "ssl.keystore.location2": 1})
    assert bad.startswith("kafka.client_config: librdkafka refuses it:")
    conflict = error(tmp_path, client_config={"acks": 1})
    assert "acks" in conflict and "enable.idempotence" in conflict


def test_secret_looking_passthrough_values_are_masked_and_redacted(tmp_path: Path) -> None:
    secret = "assertion-passphrase-77"  # noqa: S105 - a test value
    config = write(
        tmp_path,
        {"client_config": {"sasl.oauthbearer.assertion.private.key.passphrase": secret, "client.id": "shop"}},
    )
    result = CliRunner().invoke(app, ["check-config", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert secret not in result.output and '"client.id": "shop"' in result.output and MASK in result.output
    assert secret in secrets_of(load_settings(config, environ={}))


def test_passthrough_keys_faust_honours(tmp_path: Path, pki: Pki) -> None:
    kafka = load(
        tmp_path,
        **oauth(ssl_ca_file=str(pki.ca)),
        client_config={
            "client.id": "shop-sync",
            "ssl.endpoint.identification.algorithm": "none",
            "sasl.oauthbearer.extensions": "logicalCluster=lkc-1, identityPoolId=pool-2",
        },
    )
    assert not ssl_context(kafka).check_hostname
    provider = credentials_to_aiokafka_auth(broker_credentials(kafka))["sasl_oauth_token_provider"]
    assert provider.extensions() == {"logicalCluster": "lkc-1", "identityPoolId": "pool-2"}
    settings = load_settings(write(tmp_path, {"client_config": {"client.id": "shop-sync"}}), environ={})
    assert create_runtime(settings, partitions=1).app.conf.broker_client_id == "shop-sync"


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=30),
        st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.floats(allow_nan=False)),
        max_size=4,
    )
)
def test_check_refuses_with_a_value_error_or_returns_strings(values: dict[str, Any]) -> None:
    """Whatever YAML holds, the passthrough is either librdkafka strings or a ValueError naming
    kafka.client_config, never another exception."""
    try:
        checked = check(values)
    except ValueError as exc:
        assert str(exc).startswith("client_config: ")
    else:
        assert set(checked) == set(values) and all(isinstance(v, str) for v in checked.values())
    assert set(masked(values)) == set(values)


# -- what librdkafka's failures mean --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during "
            "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
            "kafka.sasl_password: the brokers refused the SCRAM-SHA-512 credentials of "
            "kafka.sasl_username 'svc'",
        ),
        (
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker "
            "certificate could not be verified, verify that ssl.ca.location is correctly configured",
            "kafka.ssl_ca_file: ",
        ),
        (
            "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert "
            "bad certificate: SSL alert number 42 (after 1ms in state APIVERSION_QUERY)",
            "kafka.ssl_certificate_file: ",
        ),
        (
            'Failed to acquire SASL OAUTHBEARER token: {"error":"invalid_client"}',
            "kafka.sasl_oauthbearer_client_secret: ",
        ),
        (
            "127.0.0.1:1/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN "
            "(after 2ms in state APIVERSION_QUERY)",
            "kafka.security_protocol: ",
        ),
        (
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
            f"kafka.bootstrap_servers: cannot reach {BOOTSTRAP}: ",
        ),
    ],
)
def test_explain_names_the_setting(tmp_path: Path, text: str, field: str) -> None:
    kafka = load(tmp_path, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
                 sasl_password="pw-123456")  # fmt: skip
    message = explain(kafka, text)
    assert message.startswith(field) and message.endswith(text)


@given(st.text(max_size=200))
def test_explain_always_names_a_kafka_field(text: str) -> None:
    kafka = KafkaSettings()
    assert explain(kafka, text).startswith("kafka.")
