"""``kafka.client_config``: extra librdkafka properties for the confluent-kafka clients.

signal-sync builds every client's connection and security properties from its own
``kafka.*`` fields, and each client adds the properties its job depends on (the output
producer's idempotence, the partition reader's manual offsets). A passthrough property may set
neither: ``check`` refuses such a key and names the field to use instead, so a config never says
one thing in a field and another in the passthrough. Everything else (``linger.ms``,
``compression.type``, ``client.id``, ``socket.keepalive.enable``, ``sasl.oauthbearer.extensions``,
…) goes to every confluent-kafka client as given, after librdkafka itself accepted the key and the
value. A property of one kind of client only (a producer's ``linger.ms``) is ignored by the others;
librdkafka's note that it ignores one is logged at debug level (``streams.librdkafka_log``).

Faust's own clients (aiokafka) do not read librdkafka properties; ``FAUST_MAPPED`` lists the few
that ``signal_sync.runtime`` applies to them too. Values of secret-looking keys (``SECRET_KEY``)
are masked when the config is shown and redacted from the logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from confluent_kafka import KafkaException, Producer

KEYED_PRODUCER = {
    "enable.idempotence": True,  # acks=all, no duplicates or reordering from librdkafka's retries
    "partitioner": "murmur2_random",  # a key's partition as the Java client (and Faust) computes it
}
"""What every confluent producer of signal-sync sets: records of one key land on the partition other
producers of the topic (Java clients, Faust) put that key on, once and in order."""

_OIDC_ONLY = "kafka.sasl_oauthbearer_* fields (unsecured tokens are not supported)"

OWNED: dict[str, str] = {
    "bootstrap.servers": "kafka.bootstrap_servers",
    "metadata.broker.list": "kafka.bootstrap_servers",
    "security.protocol": "kafka.security_protocol",
    "sasl.mechanism": "kafka.sasl_mechanism",
    "sasl.mechanisms": "kafka.sasl_mechanism",
    "sasl.username": "kafka.sasl_username",
    "sasl.password": "kafka.sasl_password",
    "ssl.ca.location": "kafka.ssl_ca_file",
    "ssl.ca.pem": "kafka.ssl_ca_file",
    "ssl.certificate.location": "kafka.ssl_certificate_file",
    "ssl.certificate.pem": "kafka.ssl_certificate_file",
    "ssl.key.location": "kafka.ssl_key_file",
    "ssl.key.pem": "kafka.ssl_key_file",
    "ssl.key.password": "kafka.ssl_key_password",
    "ssl.keystore.location": "kafka.ssl_certificate_file and kafka.ssl_key_file (PEM)",
    "ssl.keystore.password": "kafka.ssl_key_password",
    "sasl.oauthbearer.method": "kafka.sasl_mechanism OAUTHBEARER",
    "sasl.oauthbearer.token.endpoint.url": "kafka.sasl_oauthbearer_token_endpoint_url",
    "sasl.oauthbearer.client.id": "kafka.sasl_oauthbearer_client_id",
    "sasl.oauthbearer.client.secret": "kafka.sasl_oauthbearer_client_secret",
    "sasl.oauthbearer.scope": "kafka.sasl_oauthbearer_scope",
    "sasl.oauthbearer.config": _OIDC_ONLY,
    "enable.sasl.oauthbearer.unsecure.jwt": _OIDC_ONLY,
    "group.id": "kafka.app_id (each client sets its own group)",
    "enable.auto.commit": "nothing: signal-sync commits offsets itself",
    "enable.auto.offset.store": "nothing: signal-sync commits offsets itself",
    "auto.offset.reset": "nothing: the worker reads from the earliest offset, as Faust does",
    "enable.partition.eof": "nothing: the partition reader needs it",
    "enable.idempotence": "nothing: the output producer is always idempotent (ordered, no duplicates)",
    "transactional.id": "nothing: signal-sync does not write in transactions",
    "partitioner": "nothing: records are partitioned as the Java client and Faust do (murmur2)",
}
"""Properties signal-sync sets itself → the field that sets them."""

CALLBACK_KEY = re.compile(r"(_cb|^logger|^on_delivery|^on_commit|^default\.topic\.config)$")
SECRET_KEY = re.compile(r"password|passphrase|secret|private|jaas|\.pem$|oauthbearer\.config", re.IGNORECASE)
"""Keys whose values are secrets (or may hold one): masked in ``check-config``, redacted in logs."""
MASK = "**********"

FAUST_MAPPED = {
    "client.id": "Faust's broker_client_id (consumer, producer, admin)",
    "ssl.endpoint.identification.algorithm": "none: aiokafka's TLS context skips the host name check too",
    "sasl.oauthbearer.extensions": "SASL extensions of aiokafka's OAUTHBEARER token",
    "https.ca.location": "CA file for the aiokafka side's token endpoint requests",
}
"""Passthrough keys Faust's aiokafka clients honour as well; every other key is librdkafka only."""

PassthroughValue = str | int | float | bool


class _Silent:
    """A ``logger`` for the throwaway client ``check`` builds: it never connects, nothing to say."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        """Drop librdkafka's line (e.g. "no bootstrap.servers configured")."""


def as_property(value: PassthroughValue) -> str:
    """A YAML value as librdkafka reads it: ``true`` → ``"true"``, ``5`` → ``"5"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_secret_key(key: str) -> bool:
    """Whether the value of passthrough property ``key`` is (or may hold) a secret."""
    return bool(SECRET_KEY.search(key))


def masked(values: Mapping[str, PassthroughValue]) -> dict[str, PassthroughValue]:
    """``values`` with the values of secret-looking keys replaced by a mask, for display."""
    return {key: MASK if is_secret_key(key) else value for key, value in values.items()}


def check(values: Mapping[str, PassthroughValue]) -> dict[str, str]:
    """The passthrough as librdkafka strings; ``ValueError`` naming the first key that signal-sync
    owns, that is a callback, or that librdkafka refuses (unknown key, value it cannot read).
    A value is never quoted in the message: it may be a secret."""
    properties: dict[str, str] = {}
    for key, value in values.items():
        if key in OWNED:
            raise ValueError(f"client_config: {key!r} is set by signal-sync; use {OWNED[key]}")
        if CALLBACK_KEY.search(key):
            raise ValueError(f"client_config: {key!r} is a callback or object, not a property")
        properties[key] = as_property(value)
    if properties:
        _librdkafka_accepts(properties)
    return properties


def _librdkafka_accepts(properties: dict[str, str]) -> None:
    """Build (and drop) a producer with the properties, as the output producer uses them: librdkafka
    checks every key and value, consumer ones included, without connecting anywhere."""
    try:
        Producer({**properties, "enable.idempotence": "true", "logger": _Silent()})
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        text = error.str() if hasattr(error, "str") else str(error)
        for value in properties.values():
            if len(value) >= 4:
                text = text.replace(value, MASK)
        raise ValueError(f"client_config: librdkafka refuses it: {text}") from None
