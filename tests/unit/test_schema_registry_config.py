"""``kafka.schema_registry`` and ``outcomes.format``: what is accepted, and errors that name the field
without echoing a secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from signal_sync.config import Settings, load_settings
from signal_sync.errors import ConfigError
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW


@pytest.fixture(autouse=True)
def _no_signal_sync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, registry: dict[str, Any], **top: Any) -> Settings:
    path = tmp_path / "config.yaml"
    config = {"kafka": {"schema_registry": registry}, "integrations": [MAUTIC_RAW, MAILGUN_RAW], **top}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path, environ={})


def error(tmp_path: Path, registry: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, registry, **top)
    return str(info.value)


def test_no_registry_by_default_and_outcomes_stay_plain_json(tmp_path: Path) -> None:
    settings = load(tmp_path, {})
    assert settings.kafka.schema_registry.url is None and settings.outcomes.format == "json"


def test_a_registry_with_basic_auth_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("registry-pw\n", encoding="utf-8")
    registry = load(
        tmp_path,
        {
            "url": "https://sr.example.com:8081/",
            "basic_auth_user": "signal",
            "basic_auth_password_file": str(secret),
        },
    ).kafka.schema_registry
    assert registry.url == "https://sr.example.com:8081"
    assert registry.basic_auth_password is not None
    assert registry.basic_auth_password.get_secret_value() == "registry-pw"


def test_apicurio_style_path_and_plain_http_inside_the_cluster(tmp_path: Path) -> None:
    registry = load(tmp_path, {"url": "http://apicurio:8080/apis/ccompat/v7"}).kafka.schema_registry
    assert registry.url == "http://apicurio:8080/apis/ccompat/v7"


@pytest.mark.parametrize(
    ("registry", "field", "says"),
    [
        ({"url": "https://signal:s3cret-pw@sr.example.com"}, "url", "must not carry credentials"),
        ({"url": "ftp://sr.example.com"}, "url", "https://"),
        ({"url": "https://sr.example.com?token=s3cret-pw"}, "url", "query or fragment"),
        (
            {"url": "http://sr.example.com", "basic_auth_user": "u", "basic_auth_password": "s3cret-pw"},
            "url",
            "clear text",
        ),
        ({"url": "https://sr.example.com", "basic_auth_user": "u"}, "basic_auth_password", "missing secret"),
        (
            {"url": "https://sr.example.com", "basic_auth_password": "s3cret-pw"},
            "basic_auth_user",
            "required",
        ),
        (
            {
                "url": "https://sr.example.com",
                "basic_auth_user": "u",
                "basic_auth_password": "p",
                "bearer_token": "t",
            },
            "bearer_token",
            "not both",
        ),
        ({"basic_auth_user": "u", "basic_auth_password": "s3cret-pw"}, "basic_auth_user", "set url too"),
        ({"url": "http://127.0.0.1:8081", "ssl_ca_file": "/etc/hosts"}, "ssl_ca_file", "https url"),
        ({"url": "https://sr.example.com", "ssl_ca_file": "/nonexistent/ca.crt"}, "ssl_ca_file", "readable"),
    ],
)
def test_bad_registry_settings_fail_at_load_naming_the_field(
    tmp_path: Path, registry: dict[str, Any], field: str, says: str
) -> None:
    message = error(tmp_path, registry)
    assert message.startswith(f"kafka.schema_registry.{field}: "), message
    assert says in message
    assert "s3cret-pw" not in message


def test_credentials_over_http_to_a_loopback_registry_are_allowed(tmp_path: Path) -> None:
    registry = load(
        tmp_path, {"url": "http://127.0.0.1:8081", "basic_auth_user": "u", "basic_auth_password": "p"}
    ).kafka.schema_registry
    assert registry.basic_auth_user == "u"


def test_framed_outcomes_need_a_registry(tmp_path: Path) -> None:
    message = error(tmp_path, {}, outcomes={"format": "json_schema_registry"})
    assert message == "outcomes.format: json_schema_registry needs kafka.schema_registry.url"
    settings = load(tmp_path, {"url": "http://127.0.0.1:8081"}, outcomes={"format": "json_schema_registry"})
    assert settings.outcomes.format == "json_schema_registry"


def test_the_registry_url_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__SCHEMA_REGISTRY__URL", "https://sr.example.com")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"integrations": [MAUTIC_RAW, MAILGUN_RAW]}), encoding="utf-8")
    assert load_settings(path, environ={}).kafka.schema_registry.url == "https://sr.example.com"
