"""User mistakes on the command line end in ``ErrorType: message`` and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from signal_sync.cli.main import main
from tests.unit.factories import MAILGUN_RAW, MAUTIC_RAW

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_SYNC_") or name in ("MAUTIC_PASSWORD", "MAILGUN_API_KEY"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run the console-script entry point in process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["signal-sync", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


BAD_CONFIGS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "trailing-slash": (
        {"integrations": [{**MAUTIC_RAW, "base_url": "https://mautic.example.com/"}]},
        "ConfigError: integrations[0].base_url: has a trailing slash",
    ),
    "path": (
        {"integrations": [{**MAUTIC_RAW, "base_url": "https://mautic.example.com/mautic"}]},
        "ConfigError: integrations[0].base_url: ",
    ),
    "no-scheme": (
        {"integrations": [{**MAUTIC_RAW, "base_url": "mautic.example.com"}]},
        "ConfigError: integrations[0].base_url: ",
    ),
    "plain-http": (
        {"integrations": [{**MAUTIC_RAW, "base_url": "http://mautic.example.com"}]},
        "ConfigError: integrations[0].base_url: plain http",
    ),
    "mailgun-host": (
        {"integrations": [MAUTIC_RAW, {**MAILGUN_RAW, "base_url": "https://mailgun.example.com"}]},
        "ConfigError: integrations[1].base_url: ",
    ),
    "duplicate-id": (
        {"integrations": [MAUTIC_RAW, {**MAILGUN_RAW, "id": "mautic-main"}]},
        "ConfigError: integrations: duplicate integration id 'mautic-main'",
    ),
    "missing-secret": (
        {"integrations": [{k: v for k, v in MAUTIC_RAW.items() if k != "api_password"}]},
        "ConfigError: integrations[0].api_password: missing secret",
    ),
    "unset-env": (
        {"integrations": [{**MAUTIC_RAW, "api_password": "${MAUTIC_PASSWORD}"}]},
        "ConfigError: integrations[0].api_password: environment variable MAUTIC_PASSWORD is not set",
    ),
    "not-yaml": ("integrations: [\n", "ConfigError: "),
}


@pytest.mark.parametrize("command", ["check-config", "preview"])
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_on_stderr(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    command: str,
) -> None:
    data, expected = BAD_CONFIGS[case]
    config = write(tmp_path, data)
    events = tmp_path / "events.jsonl"
    events.write_text("", encoding="utf-8")
    args = (
        ["check-config", "-c", str(config)]
        if command == "check-config"
        else ["preview", "-c", str(config), str(events)]
    )

    code, out, err = run_main(monkeypatch, capsys, *args)

    assert code != 0
    assert err.startswith(expected), err
    assert "Traceback" not in err
    assert out == ""


def test_missing_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "check-config", "-c", str(tmp_path / "absent.yaml"))
    assert code != 0
    assert err.startswith("ConfigError: cannot read config file")


def test_good_config_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, {"integrations": [MAUTIC_RAW, MAILGUN_RAW]})
    code, out, err = run_main(monkeypatch, capsys, "check-config", "-c", str(config))
    assert code == 0
    assert '"mautic-main"' in out and "ConfigError" not in err


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_SYNC_") and k != "MAUTIC_PASSWORD"
    }
    return subprocess.run(
        [sys.executable, "-m", "signal_sync.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_real_process_bad_config_has_no_traceback(tmp_path: Path) -> None:
    config = write(tmp_path, {"integrations": [{**MAUTIC_RAW, "api_password": "${MAUTIC_PASSWORD}"}]})
    proc = cli("check-config", "-c", str(config))
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "ConfigError: integrations[0].api_password: environment variable MAUTIC_PASSWORD is not set"
    )
    assert proc.stdout == ""


def test_real_process_env_var_makes_it_valid(tmp_path: Path) -> None:
    config = write(tmp_path, {"integrations": [{**MAUTIC_RAW, "api_password": "${MAUTIC_PASSWORD}"}]})
    proc = cli("check-config", "-c", str(config), env={"MAUTIC_PASSWORD": "from-env-only"})
    assert proc.returncode == 0, proc.stderr
    assert "from-env-only" not in proc.stdout + proc.stderr


def test_preview_of_a_missing_events_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """main.py promises user mistakes never end in a traceback; a mistyped events path is one."""
    config = write(tmp_path, {"integrations": [MAUTIC_RAW]})
    proc = cli("preview", "-c", str(config), str(tmp_path / "no-such-events.jsonl"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "no-such-events.jsonl" in proc.stderr
