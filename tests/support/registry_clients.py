"""Schema Registry clients for the tests: every request has a deadline, every serde names its subject.

``registry_client`` gives each HTTP request a deadline (confluent-kafka's client has none by
default and retries a request that times out), so a request the registry never answers costs
seconds, not the test's whole timeout.

``TOPIC_SUBJECTS`` is the serde configuration for ``<topic>-value`` subjects. Without a subject
name strategy, confluent-kafka 2.16+ first asks the registry for the topic's associations
(``GET /associations/resources/...``), an API of Confluent's registry that Apicurio Registry does
not implement (404) and that signal-sync never calls: the worker decodes by schema id only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

REQUEST_TIMEOUT_S = 15
TOPIC_SUBJECTS: dict[str, Any] = {"subject.name.strategy.type": "TOPIC"}


def registry_client(url: str, conf: Mapping[str, Any] | None = None) -> SchemaRegistryClient:
    """A client of the registry at ``url`` whose requests time out after ``REQUEST_TIMEOUT_S``."""
    return SchemaRegistryClient({"url": url, "timeout": REQUEST_TIMEOUT_S, **(conf or {})})
