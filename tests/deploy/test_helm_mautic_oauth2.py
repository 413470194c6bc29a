"""The chart's Mautic ``auth`` block: OAuth2 client credentials (and Basic in the block form), the
secret from the chart-made Secret or an existing one, mounted as a file (offline, real helm).

``ci/mautic-oauth2-values.yaml`` also runs through every check of ``test_helm_chart.py`` that takes
each CI values file (lint, Kubernetes schemas, no secret in a ConfigMap, the rendered config loaded
by the worker with the pod's mounts reproduced)."""

# ruff: noqa: F811 - the helm and render fixtures come from test_helm_chart and are parameters here

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from signal_sync.config import MauticIntegration
from tests.deploy.test_helm_chart import (  # noqa: F401 - helm and render are fixtures used below
    CI_DIR,
    FULLNAME,
    MINIMAL,
    SCHEMA_ERROR,
    Helm,
    Rendered,
    _expect_failure,
    _load_config_as_pod_sees_it,
    helm,
    render,
)

VALUES = CI_DIR / "mautic-oauth2-values.yaml"
CREDENTIALS_DIR = "/var/run/secrets/signal-sync/credentials"
CLIENT_ID = "1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8"
SECRET = "ci-mautic-client-secret-5d0e"


def test_the_client_secret_reaches_the_worker_as_a_file(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    rendered = render(VALUES)
    mautic = rendered.config["integrations"][0]
    assert mautic["auth"] == {
        "type": "oauth2",
        "client_id": CLIENT_ID,
        "client_secret_file": f"{CREDENTIALS_DIR}/mautic-main",
    }
    assert "api_password_file" not in mautic and "api_user" not in mautic
    assert SECRET not in rendered.config_text
    assert rendered.secret_data(FULLNAME)["mautic-main"] == SECRET
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    integration = settings.integrations[0]
    assert isinstance(integration, MauticIntegration) and integration.oauth2 is not None
    assert integration.oauth2.client_secret is not None
    assert integration.oauth2.client_secret.get_secret_value() == SECRET


def test_an_existing_secret_holds_the_client_secret(render: Callable[..., Rendered]) -> None:
    rendered = render(
        VALUES, "--set", "credentials.existingSecret=mautic-api", "--set", "credentials.integrations=null"
    )
    assert (
        rendered.config["integrations"][0]["auth"]["client_secret_file"] == f"{CREDENTIALS_DIR}/mautic-main"
    )
    assert rendered.get("Secret", FULLNAME) is None
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert any(v.get("secret", {}).get("secretName") == "mautic-api" for v in volumes.values())


def test_basic_in_the_auth_block_gets_its_password_file(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    values = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    mautic = values["integrations"][0]
    del mautic["api_user"]
    mautic["auth"] = {"type": "basic", "api_user": "signal"}
    basic = tmp_path / "basic-values.yaml"
    basic.write_text(yaml.safe_dump(values), encoding="utf-8")
    rendered = render(basic)
    assert rendered.config["integrations"][0]["auth"] == {
        "type": "basic",
        "api_user": "signal",
        "api_password_file": f"{CREDENTIALS_DIR}/mautic-main",
    }
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    assert settings.integrations[0].credentials() == ("signal", "ci-mautic-password-3f9a")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--set", "integrations[0].api_user=signal"], SCHEMA_ERROR),
        (["--set", "integrations[0].auth.client_secret=literal-secret"], "client_secret"),
        (["--set", "integrations[0].auth.client_id=signal-sync"], "client_id"),
        (["--set", "integrations[0].auth.scope=api"], "scope"),
    ],
    ids=["auth-and-flat-user", "literal-secret", "client-id-form", "scope"],
)
def test_bad_values_are_refused(helm: Helm, extra: list[str], says: str) -> None:
    assert says in _expect_failure(helm, VALUES, *extra)


def test_a_missing_client_secret_names_it(helm: Helm, tmp_path: Path) -> None:
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    del values["credentials"]["integrations"]["mautic-main"]
    path = tmp_path / "no-secret-values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    says = _expect_failure(helm, path)
    assert "credentials.integrations.mautic-main: missing the client_secret" in says
