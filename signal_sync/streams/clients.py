"""What every confluent-kafka client signal-sync builds starts from, and what its failures mean.

``client_config`` is the one place a librdkafka client's connection is configured: the bootstrap
servers, the ``kafka.security_protocol`` with its SASL (PLAIN, SCRAM, OAUTHBEARER through
librdkafka's own OIDC client-credentials support) and TLS settings (CA, client certificate and
key), the ``kafka.client_config`` passthrough, and a fresh ``LibrdkafkaLog`` as ``logger`` and
``error_cb``. Each client adds what its job needs (a group id, idempotence) on top. Faust's
aiokafka clients get the same security from ``signal_sync.runtime.broker_credentials``.

``explain`` turns librdkafka's text for a failed connection into one message that starts with
the setting to look at (``kafka.sasl_password: the brokers refused ...``).
"""

from __future__ import annotations

import re
from typing import Any

from signal_sync.config import KafkaSettings
from signal_sync.streams.client_properties import as_property
from signal_sync.streams.librdkafka_log import LibrdkafkaLog


def security_properties(kafka: KafkaSettings) -> dict[str, str]:
    """The bootstrap servers and the librdkafka properties of ``kafka``'s security settings."""
    config = {"bootstrap.servers": kafka.bootstrap_servers, "security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        assert kafka.sasl_mechanism is not None
        config["sasl.mechanism"] = kafka.sasl_mechanism
        if kafka.sasl_mechanism == "OAUTHBEARER":
            assert kafka.sasl_oauthbearer_token_endpoint_url and kafka.sasl_oauthbearer_client_id
            assert kafka.sasl_oauthbearer_client_secret is not None
            config["sasl.oauthbearer.method"] = "oidc"
            config["sasl.oauthbearer.token.endpoint.url"] = kafka.sasl_oauthbearer_token_endpoint_url
            config["sasl.oauthbearer.client.id"] = kafka.sasl_oauthbearer_client_id
            config["sasl.oauthbearer.client.secret"] = kafka.sasl_oauthbearer_client_secret.get_secret_value()
            if kafka.sasl_oauthbearer_scope:
                config["sasl.oauthbearer.scope"] = kafka.sasl_oauthbearer_scope
        else:
            assert kafka.sasl_username and kafka.sasl_password is not None
            config["sasl.username"] = kafka.sasl_username
            config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.uses_tls:
        if kafka.ssl_ca_file is not None:
            config["ssl.ca.location"] = str(kafka.ssl_ca_file)
        if kafka.ssl_certificate_file is not None and kafka.ssl_key_file is not None:
            config["ssl.certificate.location"] = str(kafka.ssl_certificate_file)
            config["ssl.key.location"] = str(kafka.ssl_key_file)
            if kafka.ssl_key_password is not None:
                config["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return config


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The librdkafka settings a confluent-kafka client (admin, producer, consumer) starts from:
    the ``kafka.client_config`` passthrough, the connection and security properties, and a new
    ``LibrdkafkaLog`` as ``logger`` and ``error_cb`` (``client_log`` finds it again)."""
    config: dict[str, Any] = {key: as_property(value) for key, value in kafka.client_config.items()}
    config.update(security_properties(kafka))
    router = LibrdkafkaLog()
    config["logger"] = router
    config["error_cb"] = router.error
    return config


def client_log(config: dict[str, Any]) -> LibrdkafkaLog | None:
    """The ``LibrdkafkaLog`` a ``client_config`` result carries, if any."""
    router = config.get("logger")
    return router if isinstance(router, LibrdkafkaLog) else None


# librdkafka's words for a failure → the setting to look at and what it means. First match wins.
_CAUSES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"invalid_scope", re.I),
        "sasl_oauthbearer_scope",
        "the OIDC provider refused the scope asked for",
    ),
    (
        re.compile(r"OIDC|token endpoint|retrieve.*token|acquire.*token|oauthbearer", re.I),
        "sasl_oauthbearer_client_secret",
        "no access token from kafka.sasl_oauthbearer_token_endpoint_url for "
        "kafka.sasl_oauthbearer_client_id (check the URL, the client id and secret, the scope)",
    ),
    (
        re.compile(r"SASL authentication error|Authentication failed|invalid credentials", re.I),
        "sasl_password",
        "the brokers refused the SASL credentials",
    ),
    (
        re.compile(r"certificate verify failed|broker certificate could not be verified", re.I),
        "ssl_ca_file",
        "the brokers' certificate is not signed by a CA in kafka.ssl_ca_file (or the system trust "
        "store when it is unset), or does not name the host in kafka.bootstrap_servers",
    ),
    (
        re.compile(r"alert (bad certificate|certificate required|unknown ca|certificate unknown)", re.I),
        "ssl_certificate_file",
        "the brokers refused the client certificate (none sent, or not signed by a CA they trust)",
    ),
    (
        re.compile(r"ssl\.(key|certificate)|private key", re.I),
        "ssl_key_file",
        "librdkafka cannot use the client certificate or key",
    ),
    (
        re.compile(
            r"security\.protocol|Unsupported SASL mechanism|SSL handshake failed|"
            r"Disconnected.*state (APIVERSION_QUERY|SSL_HANDSHAKE|AUTH)",
            re.I,
        ),
        "security_protocol",
        "the brokers' listener closed the connection at its start: does it expect another "
        "security_protocol (SSL, SASL_SSL) or sasl_mechanism?",
    ),
]


def explain(kafka: KafkaSettings, text: str) -> str:
    """``kafka.<field>: <what it means>: <librdkafka's text>`` for a failed connection; the
    bootstrap servers when nothing more specific matches."""
    for pattern, field, meaning in _CAUSES:
        if pattern.search(text):
            if field == "sasl_password" and kafka.sasl_mechanism == "OAUTHBEARER":
                field, meaning = "sasl_oauthbearer_client_secret", "the brokers refused the access token"
            elif field == "sasl_password":
                meaning = (
                    f"the brokers refused the {kafka.sasl_mechanism} credentials of kafka.sasl_username "
                    f"{kafka.sasl_username!r}"
                )
            return f"kafka.{field}: {meaning}: {text}"
    return f"kafka.bootstrap_servers: cannot reach {kafka.bootstrap_servers}: {text}"


def unwritten(kafka: KafkaSettings, config: dict[str, Any], failures: list[str]) -> str:
    """Why records a producer made from ``config`` did not write: the first delivery error, else
    librdkafka's last logged error explained, else a timeout."""
    if failures:
        return failures[0]
    router = client_log(config)
    cause = router.last_error if router is not None else None
    return explain(kafka, cause) if cause else "timed out"
