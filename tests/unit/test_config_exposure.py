"""Config errors never echo a credential: a base_url carrying user:password is refused without
quoting it, and a YAML syntax error names the line and column, not the line's text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.config import check_base_url, load_settings
from signal_sync.errors import ConfigError

SECRET = "s3cr3t-Pa55word"
SECRET_TEXT = st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=8).map(
    lambda text: "S3cr3t-" + text  # a marker no error message contains, so a hit means the secret was echoed
)


@pytest.mark.parametrize(
    "url",
    [
        f"https://signal:{SECRET}@mautic.example.com",
        f"https://{SECRET}@mautic.example.com",
        f"https://signal:{SECRET}@mautic.example.com/api",
        f"http://api:{SECRET}@127.0.0.1:8080",
    ],
)
def test_base_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_base_url(url)
    message = str(refused.value)
    assert "must not carry credentials" in message
    assert SECRET not in message and "signal:" not in message


@given(user=SECRET_TEXT, password=SECRET_TEXT, query=SECRET_TEXT)
def test_no_base_url_error_quotes_userinfo_or_query(user: str, password: str, query: str) -> None:
    for url in (
        f"https://{user}:{password}@m.example.com/x?token={query}",
        f"https://m.example.com/?token={query}",
        f"https://m.example.com/path#{query}",
    ):
        with pytest.raises(ValueError) as refused:
            check_base_url(url)
        message = str(refused.value)
        assert password not in message and query not in message


def test_the_config_error_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "integrations:\n"
        "  - id: m\n"
        "    type: mautic\n"
        f"    base_url: https://signal:{SECRET}@mautic.example.com\n"
        "    api_user: signal\n"
        "    api_password: pw-123456\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert str(refused.value).startswith("integrations[0].base_url: must not carry credentials")
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (f'    api_password: "{SECRET}\\q"\n', "at line 5, column"),  # unknown escape in a quoted scalar
        (f"    api_password: {SECRET}: more\n", "at line 5, column"),  # mapping values not allowed
        (f'    api_password: "{SECRET}\n', "at line"),  # unterminated quote
        (f"    api_password: [{SECRET}\n", "at line"),  # unterminated flow sequence
    ],
)
def test_yaml_errors_give_line_and_column_but_never_the_line(tmp_path: Path, line: str, where: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "integrations:\n  - id: m\n    type: mautic\n    api_user: signal\n" + line + "    consent: []\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    message = str(refused.value)
    assert "not valid YAML" in message and where in message
    assert SECRET not in message and "api_password" not in message


def test_version_flag_prints_the_build() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("signal-sync ") and "faust-streaming" in result.output
