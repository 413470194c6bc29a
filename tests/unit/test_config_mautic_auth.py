"""A Mautic integration's ``auth`` block: Basic or OAuth2 client credentials beside the flat
``api_user`` / ``api_password`` fields, errors naming the field, secrets hidden."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import MauticBasicAuth, MauticIntegration, MauticOAuth2Auth, load_settings
from signal_sync.destinations.mautic_auth import static_headers
from signal_sync.errors import ConfigError
from signal_sync.observability.logs import secrets_of
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW

CLIENT_ID = "1_3bcbxmwlzlkw8oswokccwk8osk8ww0wsogs8ok08wwo4wk0ck8"
CLIENT_SECRET = "4ok2x70rlfokc8g0wws8c8kwcokw80k44sg48goc0ok4w0so0k"
FLAT = {k: v for k, v in MAUTIC_RAW.items() if k not in ("api_user", "api_password")}
OAUTH2 = {**FLAT, "auth": {"type": "oauth2", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}


@pytest.fixture(autouse=True)
def _no_signal_sync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, mautic: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"integrations": [mautic, MAILGUN_RAW]}), encoding="utf-8")
    return path


def error_of(tmp_path: Path, mautic: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, mautic), environ={})
    return str(info.value)


def test_oauth2_client_credentials(tmp_path: Path) -> None:
    mautic = load_settings(write(tmp_path, OAUTH2), environ={}).integrations[0]
    assert isinstance(mautic, MauticIntegration) and isinstance(mautic.auth, MauticOAuth2Auth)
    assert mautic.oauth2 is mautic.auth and mautic.oauth2.client_id == CLIENT_ID
    assert mautic.oauth2.client_secret is not None
    assert mautic.oauth2.client_secret.get_secret_value() == CLIENT_SECRET
    assert static_headers(mautic) == {}
    with pytest.raises(TypeError):
        mautic.credentials()


def test_the_flat_fields_and_an_auth_block_of_type_basic_are_the_same(tmp_path: Path) -> None:
    block = {**FLAT, "auth": {"type": "basic", "api_user": "signal", "api_password": "pw"}}
    flat = {**FLAT, "api_user": "signal", "api_password": "pw"}
    by_block = load_settings(write(tmp_path, block), environ={}).integrations[0]
    by_flat = load_settings(write(tmp_path, flat), environ={}).integrations[0]
    assert isinstance(by_block, MauticIntegration) and isinstance(by_block.auth, MauticBasicAuth)
    assert isinstance(by_flat, MauticIntegration) and by_flat.auth is None and by_flat.oauth2 is None
    assert by_block.credentials() == by_flat.credentials() == ("signal", "pw")
    assert static_headers(by_block) == static_headers(by_flat)


def test_the_client_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    raw = {**FLAT, "auth": {"type": "oauth2", "client_id": CLIENT_ID, "client_secret_file": str(secret)}}
    mautic = load_settings(write(tmp_path, raw), environ={}).integrations[0]
    assert isinstance(mautic, MauticIntegration) and mautic.oauth2 is not None
    assert mautic.oauth2.client_secret is not None
    assert mautic.oauth2.client_secret.get_secret_value() == CLIENT_SECRET


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({**OAUTH2, "api_user": "signal"}, "integrations[0].api_user: set either auth or the flat"),
        ({**OAUTH2, "api_password": "pw"}, "integrations[0].api_password: set either auth or the flat"),
        (FLAT, "integrations[0].api_user: required (or an auth block"),
        (
            {**FLAT, "auth": {"type": "oauth2", "client_id": CLIENT_ID}},
            "integrations[0].auth.client_secret: missing secret",
        ),
        (
            {**FLAT, "auth": {"type": "oauth2", "client_id": CLIENT_ID, "client_secret": ""}},
            "integrations[0].auth.client_secret: missing secret",
        ),
        (
            {**FLAT, "auth": {"type": "oauth2", "client_id": "signal-sync", "client_secret": "s"}},
            "integrations[0].auth.client_id: a Mautic client id is '<number>_",
        ),
        (
            {
                **FLAT,
                "auth": {"type": "oauth2", "client_id": CLIENT_ID, "client_secret": "s", "scope": "api"},
            },
            "integrations[0].auth.scope: Extra inputs are not permitted",
        ),
        (
            {**FLAT, "auth": {"type": "basic", "api_user": "signal"}},
            "integrations[0].auth.api_password: missing",
        ),
        ({**FLAT, "auth": {"type": "jwt"}}, "integrations[0].auth: Input tag 'jwt' found using 'type'"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, raw: dict[str, Any], expected: str) -> None:
    message = error_of(tmp_path, raw)
    assert message.startswith(expected), message
    assert CLIENT_SECRET not in message


def test_both_the_client_secret_and_its_file_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET, encoding="utf-8")
    raw = {**OAUTH2, "auth": {**OAUTH2["auth"], "client_secret_file": str(secret)}}
    assert error_of(tmp_path, raw).startswith("integrations[0].auth.client_secret: set either client_secret")


def test_check_config_hides_the_client_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check-config", "-c", str(write(tmp_path, OAUTH2))])
    assert result.exit_code == 0, result.output
    assert CLIENT_SECRET not in result.output
    assert '"client_secret": "**********"' in result.output and CLIENT_ID in result.output


def test_the_logs_redact_the_client_secret(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, OAUTH2), environ={})
    assert CLIENT_SECRET in secrets_of(settings)
