"""The chart's Schema Registry settings: config.kafka.schema_registry, its credentials from the
credentials Secret, its CA from a Secret, and config.outcomes.format (offline, real helm).

``ci/schema-registry-values.yaml`` also runs through every check of ``test_helm_chart.py`` that
takes each CI values file (lint, Kubernetes schemas, no secret in a ConfigMap, the rendered config
loaded by the worker with the pod's mounts reproduced)."""

# ruff: noqa: F811 - the helm and render fixtures come from test_helm_chart and are parameters here

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from signal_sync.config import SchemaRegistrySettings
from tests.deploy.test_helm_chart import (  # noqa: F401 - helm and render are fixtures used below
    CI_DIR,
    FULLNAME,
    MINIMAL,
    Helm,
    Rendered,
    _expect_failure,
    _load_config_as_pod_sees_it,
    _schema,
    helm,
    render,
)

VALUES = CI_DIR / "schema-registry-values.yaml"
CREDENTIALS_DIR = "/var/run/secrets/signal-sync/credentials"
CHART_MANAGED = {"basic_auth_password_file", "bearer_token_file", "ssl_ca_file"}
REGISTRY = "config.kafka.schema_registry.url=https://sr.example.com"


def test_the_schema_offers_exactly_the_registry_fields_the_chart_does_not_set() -> None:
    offered = set(
        _schema()["properties"]["config"]["properties"]["kafka"]["properties"]["schema_registry"][
            "properties"
        ]
    )
    assert offered == set(SchemaRegistrySettings.model_fields) - CHART_MANAGED


def test_basic_auth_password_and_ca_reach_the_worker_from_their_secrets(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    rendered = render(VALUES)
    registry = rendered.config["kafka"]["schema_registry"]
    assert registry["basic_auth_password_file"] == f"{CREDENTIALS_DIR}/schema-registry-password"
    assert registry["ssl_ca_file"] == "/var/run/secrets/signal-sync/schema-registry-ca/ca.crt"
    assert rendered.config["outcomes"]["format"] == "json_schema_registry"
    assert rendered.secret_data(FULLNAME)["schema-registry-password"] == "ci-sr-registry-password-77e3"
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    password = settings.kafka.schema_registry.basic_auth_password
    assert password is not None and password.get_secret_value() == "ci-sr-registry-password-77e3"
    test_pod = rendered.test_pod
    if test_pod is not None:  # `helm test` runs with the same mounts
        assert {v["name"] for v in rendered.pod["volumes"]} <= {
            v["name"] for v in test_pod["spec"]["volumes"]
        }


def test_a_bearer_token_comes_from_the_credentials_secret(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    rendered = render(
        MINIMAL,
        "--set",
        REGISTRY,
        "--set",
        "schemaRegistry.bearerToken=true",
        "--set",
        "credentials.schemaRegistryToken=ci-sr-bearer-token-0b9d",
    )
    registry = rendered.config["kafka"]["schema_registry"]
    assert registry == {
        "url": "https://sr.example.com",
        "bearer_token_file": f"{CREDENTIALS_DIR}/schema-registry-token",
    }
    assert "ci-sr-bearer-token-0b9d" not in rendered.config_text
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    token = settings.kafka.schema_registry.bearer_token
    assert token is not None and token.get_secret_value() == "ci-sr-bearer-token-0b9d"


def test_no_registry_section_without_a_url(render: Callable[..., Rendered]) -> None:
    assert "schema_registry" not in render(MINIMAL).config["kafka"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            ["--set", "schemaRegistry.bearerToken=true", "--set", "credentials.schemaRegistryToken=t"],
            "url is not",
        ),
        (
            ["--set", REGISTRY, "--set", "config.kafka.schema_registry.basic_auth_user=u"],
            "credentials.schemaRegistryPassword: missing",
        ),
        (
            [
                "--set",
                REGISTRY,
                "--set",
                "config.kafka.schema_registry.basic_auth_user=u",
                "--set",
                "credentials.schemaRegistryPassword=p",
                "--set",
                "schemaRegistry.bearerToken=true",
                "--set",
                "credentials.schemaRegistryToken=t",
            ],
            "exclusive",
        ),
        (
            [
                "--set",
                "config.kafka.schema_registry.url=http://sr:8081",
                "--set",
                "schemaRegistry.caSecret.name=ca",
            ],
            "is not https",
        ),
        (
            ["--set", "config.kafka.schema_registry.url=https://u:s3cret-pw@sr.example.com"],
            "must not carry credentials",
        ),
        (["--set", "config.kafka.schema_registry.basic_auth_password=literal-secret"], "basic_auth_password"),
        (["--set", "config.outcomes.format=avro"], "format"),
    ],
    ids=[
        "no-url",
        "no-password",
        "basic-and-bearer",
        "ca-over-http",
        "url-credentials",
        "literal-secret",
        "format",
    ],
)
def test_inconsistent_registry_values_fail_the_render(helm: Helm, extra: list[str], says: str) -> None:
    stderr = _expect_failure(helm, MINIMAL, *extra)
    assert says in stderr and "s3cret-pw" not in stderr
