"""Config loading: YAML, ``${ENV}`` interpolation, ``*_file`` secrets, validation naming the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import MailgunIntegration, MauticIntegration, load_settings
from signal_sync.errors import ConfigError
from tests.unit.factories import MAILGUN_RAW, MAUTIC_PASSWORD, MAUTIC_RAW

ISSUE_CONFIG = """
kafka: {bootstrap_servers: "127.0.0.1:9092", source_topic: signal.events, deliveries_topic: signal.deliveries}
integrations:
  - {id: mautic-main, type: mautic, base_url: "https://mautic.example.com", api_user: signal,
     api_password: "${MAUTIC_PASSWORD}", consent: [marketing]}
  - {id: mailgun-news, type: mailgun, base_url: "https://api.mailgun.net", api_key: "${MAILGUN_API_KEY}",
     list_address: "newsletter@mg.example.com", consent: [marketing]}
"""


@pytest.fixture(autouse=True)
def _no_signal_sync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read SIGNAL_SYNC_* from the environment; keep the developer's out of these tests."""
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def load(
    tmp_path: Path, integrations: list[dict[str, Any]], environ: dict[str, str] | None = None, **top: Any
):
    return load_settings(write(tmp_path, {**top, "integrations": integrations}), environ=environ or {})


def config_error(tmp_path: Path, integrations: list[dict[str, Any]], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, integrations, **kwargs)
    return str(info.value)


def test_issue_example_loads_with_env_secrets(tmp_path: Path) -> None:
    env = {"MAUTIC_PASSWORD": "pw-from-env", "MAILGUN_API_KEY": "key-from-env"}
    settings = load_settings(write(tmp_path, ISSUE_CONFIG), environ=env)

    assert [i.id for i in settings.integrations] == ["mautic-main", "mailgun-news"]
    mautic, mailgun = settings.integrations
    assert isinstance(mautic, MauticIntegration) and isinstance(mailgun, MailgunIntegration)
    assert mautic.credentials() == ("signal", "pw-from-env")
    assert mailgun.credentials() == ("api", "key-from-env")
    assert mailgun.list_address == "newsletter@mg.example.com"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.source_topic == "signal.events"
    assert settings.kafka.deliveries_topic == "signal.deliveries"


def test_consent_defaults_to_marketing_and_empty_list_is_kept(tmp_path: Path) -> None:
    settings = load(tmp_path, [MAUTIC_RAW, {**MAILGUN_RAW, "consent": []}])
    assert settings.integrations[0].consent == ["marketing"]
    assert settings.integrations[1].consent == []


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("https://mautic.example.com/", "trailing slash"),
        ("https://mautic.example.com/mautic", "without a path"),
        ("https://mautic.example.com/api/contacts/new", "without a path"),
        ("https://mautic.example.com?x=1", "without a path"),
        ("mautic.example.com", "must start with https://"),
        ("//mautic.example.com", "must start with https://"),
        ("ftp://mautic.example.com", "must start with https://"),
        ("http://mautic.example.com", "plain http is only allowed to a loopback host"),
        ("http://10.0.0.5:8080", "plain http is only allowed to a loopback host"),
    ],
)
def test_bad_mautic_base_url_names_the_field(tmp_path: Path, base_url: str, message: str) -> None:
    error = config_error(tmp_path, [{**MAUTIC_RAW, "base_url": base_url}])
    assert error.startswith("integrations[0].base_url: ")
    assert message in error


@pytest.mark.parametrize(
    "base_url",
    [
        "https://mautic.example.com",
        "https://mautic.example.com:8443",
        "http://127.0.0.1:8081",
        "http://127.0.0.2",
        "http://localhost:8081",
        "http://[::1]:8081",
    ],
)
def test_good_mautic_base_url_is_accepted(tmp_path: Path, base_url: str) -> None:
    assert load(tmp_path, [{**MAUTIC_RAW, "base_url": base_url}]).integrations[0].base_url == base_url


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.mailgun.com",
        "https://mailgun.example.com",
        "https://api.mailgun.net.evil.example",
        "https://eu.api.mailgun.net",
    ],
)
def test_mailgun_base_url_must_be_us_eu_or_loopback(tmp_path: Path, base_url: str) -> None:
    error = config_error(tmp_path, [MAUTIC_RAW, {**MAILGUN_RAW, "base_url": base_url}])
    assert error.startswith("integrations[1].base_url: ")
    assert "api.mailgun.net" in error and "api.eu.mailgun.net" in error


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.mailgun.net",
        "https://api.eu.mailgun.net",
        "http://127.0.0.1:8082",
        "http://localhost:8082",
    ],
)
def test_mailgun_base_url_accepted(tmp_path: Path, base_url: str) -> None:
    settings = load(tmp_path, [{**MAILGUN_RAW, "base_url": base_url}])
    assert settings.integrations[0].base_url == base_url


def test_mailgun_base_url_still_needs_a_bare_root(tmp_path: Path) -> None:
    error = config_error(tmp_path, [{**MAILGUN_RAW, "base_url": "https://api.mailgun.net/v3"}])
    assert error.startswith("integrations[0].base_url: ")


def test_mailgun_list_address_must_be_an_address(tmp_path: Path) -> None:
    error = config_error(tmp_path, [{**MAILGUN_RAW, "list_address": "newsletter"}])
    assert error.startswith("integrations[0].list_address: ")


def test_duplicate_integration_id(tmp_path: Path) -> None:
    error = config_error(tmp_path, [MAUTIC_RAW, {**MAILGUN_RAW, "id": MAUTIC_RAW["id"]}])
    assert error.startswith("integrations: ")
    assert "duplicate integration id 'mautic-main'" in error


@pytest.mark.parametrize(
    ("raw", "index", "secret"),
    [
        ({k: v for k, v in MAUTIC_RAW.items() if k != "api_password"}, 0, "api_password"),
        ({**MAUTIC_RAW, "api_password": ""}, 0, "api_password"),
        ({k: v for k, v in MAILGUN_RAW.items() if k != "api_key"}, 1, "api_key"),
        ({**MAILGUN_RAW, "api_key": None}, 1, "api_key"),
    ],
)
def test_missing_secret_names_the_field(tmp_path: Path, raw: dict[str, Any], index: int, secret: str) -> None:
    integrations = [raw, MAILGUN_RAW] if index == 0 else [MAUTIC_RAW, raw]
    error = config_error(tmp_path, integrations)
    assert error.startswith(f"integrations[{index}]")
    assert f"{secret}: missing secret" in error


def test_unset_env_var_names_field_and_variable(tmp_path: Path) -> None:
    error = config_error(tmp_path, [{**MAUTIC_RAW, "api_password": "${MAUTIC_PASSWORD}"}], environ={})
    assert error == "integrations[0].api_password: environment variable MAUTIC_PASSWORD is not set"


def test_unset_env_var_in_kafka_section(tmp_path: Path) -> None:
    error = config_error(tmp_path, [MAUTIC_RAW], kafka={"bootstrap_servers": "${BROKERS}"})
    assert error.startswith("kafka.bootstrap_servers: ") and "BROKERS" in error


def test_env_default_used_when_unset_and_env_wins_when_set(tmp_path: Path) -> None:
    raw = [{**MAUTIC_RAW, "base_url": "${MAUTIC_BASE_URL:-http://127.0.0.1:8081}"}]
    assert load(tmp_path, raw).integrations[0].base_url == "http://127.0.0.1:8081"
    env = {"MAUTIC_BASE_URL": "https://crm.example.org"}
    assert load(tmp_path, raw, environ=env).integrations[0].base_url == "https://crm.example.org"


def test_interpolation_inside_a_longer_string(tmp_path: Path) -> None:
    raw = [{**MAUTIC_RAW, "api_password": "pre-${PART}-post"}]
    settings = load(tmp_path, raw, environ={"PART": "mid"})
    assert settings.integrations[0].credentials() == ("signal", "pre-mid-post")


def test_empty_default_for_a_secret_is_a_missing_secret(tmp_path: Path) -> None:
    error = config_error(tmp_path, [{**MAUTIC_RAW, "api_password": "${NOPE:-}"}])
    assert "api_password: missing secret" in error


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("  pw-from-file \n\n", encoding="utf-8")
    key = tmp_path / "key"
    key.write_text("key-from-file\n", encoding="utf-8")
    mautic = {k: v for k, v in MAUTIC_RAW.items() if k != "api_password"} | {"api_password_file": str(pw)}
    mailgun = {k: v for k, v in MAILGUN_RAW.items() if k != "api_key"} | {"api_key_file": str(key)}
    settings = load(tmp_path, [mautic, mailgun])
    assert settings.integrations[0].credentials() == ("signal", "pw-from-file")
    assert settings.integrations[1].credentials() == ("api", "key-from-file")


def test_secret_value_and_file_together_is_an_error(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x", encoding="utf-8")
    error = config_error(tmp_path, [{**MAUTIC_RAW, "api_password_file": str(pw)}])
    assert error.startswith("integrations[0]")
    assert "api_password" in error and "not both" in error


def test_unreadable_secret_file_names_the_field(tmp_path: Path) -> None:
    raw = {k: v for k, v in MAILGUN_RAW.items() if k != "api_key"} | {"api_key_file": str(tmp_path / "nope")}
    error = config_error(tmp_path, [raw])
    assert error.startswith("integrations[0]") and "api_key_file" in error


def test_env_override_of_bootstrap_servers_keeps_the_rest_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    settings = load(
        tmp_path, [MAUTIC_RAW], kafka={"bootstrap_servers": "file:9092", "source_topic": "my.events"}
    )
    assert settings.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert settings.kafka.source_topic == "my.events"


def test_without_env_override_the_file_value_is_used(tmp_path: Path) -> None:
    settings = load(tmp_path, [MAUTIC_RAW], kafka={"bootstrap_servers": "file:9092"})
    assert settings.kafka.bootstrap_servers == "file:9092"


@pytest.mark.parametrize(
    ("top", "field"),
    [
        ({"kafak": {"bootstrap_servers": "x:1"}}, "kafak"),
        ({"kafka": {"bootstrap": "x:1"}}, "kafka.bootstrap"),
    ],
)
def test_unknown_keys_are_rejected_by_name(tmp_path: Path, top: dict[str, Any], field: str) -> None:
    error = config_error(tmp_path, [MAUTIC_RAW], **top)
    assert error.startswith(f"{field}: ")


def test_unknown_integration_type_names_the_integration(tmp_path: Path) -> None:
    error = config_error(tmp_path, [{**MAUTIC_RAW, "type": "hubspot"}])
    assert error.startswith("integrations[0]")


def test_no_integrations_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^integrations: "):
        load_settings(write(tmp_path, {"kafka": {}}), environ={})


@pytest.mark.parametrize("text", ["- a\n- b\n", "integrations: [\n"])
def test_yaml_that_is_not_a_mapping_or_not_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, text), environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_check_config_never_prints_secrets(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("key-only-in-a-file\n", encoding="utf-8")
    mailgun = {k: v for k, v in MAILGUN_RAW.items() if k != "api_key"} | {"api_key_file": str(key_file)}
    path = write(tmp_path, {"integrations": [MAUTIC_RAW, mailgun]})

    result = CliRunner().invoke(app, ["check-config", "-c", str(path)])

    assert result.exit_code == 0, result.output
    everything = result.stdout + result.stderr
    assert "mautic-main" in result.stdout and "mailgun-news" in result.stdout
    for secret in (MAUTIC_PASSWORD, "key-only-in-a-file"):
        assert secret not in everything


MAUTIC_OK = {
    "id": "m",
    "type": "mautic",
    "base_url": "https://mautic.example.com",
    "api_user": "u",
    "api_password": "p",
}
MAILGUN_OK = {
    "id": "g",
    "type": "mailgun",
    "base_url": "https://api.mailgun.net",
    "api_key": "k",
    "list_address": "news@mg.example.com",
}


def test_consent_withdrawals_are_propagated_by_default_and_can_be_dropped(tmp_path: Path) -> None:
    settings = load(tmp_path, [MAUTIC_OK, {**MAILGUN_OK, "on_consent_withdrawn": "drop"}])
    assert [i.on_consent_withdrawn for i in settings.integrations] == ["propagate", "drop"]
    message = config_error(tmp_path, [{**MAUTIC_OK, "on_consent_withdrawn": "ignore"}])
    assert message.startswith("integrations[0].on_consent_withdrawn:")


@pytest.mark.parametrize(
    "domain",
    ["mg", "mg.example.com.", "-mg.example.com", "news@mg.example.com", "mg.example.1x", "m g.example.com"],
)
def test_unsubscribe_domain_must_be_a_domain(tmp_path: Path, domain: str) -> None:
    message = config_error(tmp_path, [{**MAILGUN_OK, "unsubscribe_domain": domain}])
    assert message.startswith("integrations[0].unsubscribe_domain: must be a sending domain")


def test_unsubscribe_domain_is_lowercased_and_only_for_mailgun(tmp_path: Path) -> None:
    settings = load(tmp_path, [{**MAILGUN_OK, "unsubscribe_domain": "MG.Example.com"}])
    assert settings.integrations[0].unsubscribe_domain == "mg.example.com"
    assert "unsubscribe_domain" in config_error(
        tmp_path, [{**MAUTIC_OK, "unsubscribe_domain": "mg.example.com"}]
    )


def test_contact_id_key_from_a_file_and_at_least_32_characters(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s" * 40 + "\n", encoding="utf-8")
    settings = load(tmp_path, [MAUTIC_OK], outcomes={"contact_id_key_file": str(key_file)})
    assert settings.outcomes.contact_id_key is not None
    assert settings.outcomes.contact_id_key.get_secret_value() == "s" * 40
    short = config_error(tmp_path, [MAUTIC_OK], outcomes={"contact_id_key": "too-short"})
    assert short == "outcomes.contact_id_key: must be at least 32 characters" and "too-short" not in short
    both = config_error(
        tmp_path, [MAUTIC_OK], outcomes={"contact_id_key": "s" * 40, "contact_id_key_file": str(key_file)}
    )
    assert both.startswith("outcomes.contact_id_key: set either")
    assert load(tmp_path, [MAUTIC_OK]).outcomes.contact_id_key is None
