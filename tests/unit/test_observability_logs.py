"""Structured logs: one JSON object per line, extra fields kept, secrets and emails never written."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from signal_sync.config import Settings
from signal_sync.destinations.base import basic_auth
from signal_sync.observability.logs import (
    REDACTED,
    JsonFormatter,
    Redactor,
    TextFormatter,
    build_formatter,
    configure,
    secrets_of,
)
from tests.unit.factories import MAILGUN_KEY, MAILGUN_RAW, MAUTIC_PASSWORD, MAUTIC_RAW

SASL_PASSWORD = "sasl-secret-pw"
EMAIL = "Jane.Doe@Example.com"


def make_settings(**sections: Any) -> Settings:
    kafka = {"security_protocol": "SASL_SSL", "sasl_username": "svc", "sasl_password": SASL_PASSWORD}
    return Settings(integrations=[MAUTIC_RAW, MAILGUN_RAW], kafka=kafka, **sections)


def record(message: str, *args: Any, level: int = logging.INFO, name: str = "signal_sync.test", **extra: Any):
    rec = logging.LogRecord(name, level, __file__, 1, message, args or None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_line_has_time_level_logger_message_and_extra_fields() -> None:
    rec = record(
        "delivered %s", "ok\nsecond line", integration="mautic-main", message_id="m-1", http_status=201
    )
    line = JsonFormatter().format(rec)

    assert "\n" not in line
    entry = orjson.loads(line)
    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert entry["level"] == "INFO" and entry["logger"] == "signal_sync.test"
    assert entry["message"] == "delivered ok\nsecond line"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert (entry["integration"], entry["message_id"], entry["http_status"]) == ("mautic-main", "m-1", 201)


def test_exceptions_become_one_field_of_the_same_line() -> None:
    try:
        raise ValueError(f"boom for {EMAIL} with {MAUTIC_PASSWORD}")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    formatter = JsonFormatter(Redactor(secrets_of(make_settings())))
    entry = orjson.loads(formatter.format(rec))
    assert "ValueError: boom for <email> with <redacted>" in entry["exception"]
    assert EMAIL not in entry["exception"] and MAUTIC_PASSWORD not in entry["exception"]


def test_secrets_never_appear_in_message_or_fields() -> None:
    settings = make_settings()
    mautic_token = basic_auth("signal", MAUTIC_PASSWORD)
    mailgun_token = basic_auth("api", MAILGUN_KEY)
    rec = record(
        "config %s %s headers=%s",
        MAUTIC_PASSWORD,
        MAILGUN_KEY,
        {"Authorization": mautic_token},
        sasl=SASL_PASSWORD,
        headers={"Authorization": mailgun_token, "nested": [f"key={MAILGUN_KEY}"]},
        bearer="Bearer abcdef1234567890xyz",
    )
    for formatter in (JsonFormatter, TextFormatter):
        text = formatter(Redactor(secrets_of(settings))).format(rec)
        for secret in (
            MAUTIC_PASSWORD,
            MAILGUN_KEY,
            SASL_PASSWORD,
            mautic_token,
            mailgun_token,
            "abcdef123456",
        ):
            assert secret not in text, (formatter.__name__, secret)
            assert secret.removeprefix("Basic ") not in text
        assert REDACTED in text


def test_emails_are_redacted_unless_outcomes_include_email() -> None:
    rec = record("contact %s updated", EMAIL, contact={"email": EMAIL.lower()}, emails=[EMAIL])
    hidden = orjson.loads(build_formatter(make_settings()).format(rec))
    assert hidden["message"] == "contact <email> updated"
    assert hidden["contact"] == {"email": "<email>"} and hidden["emails"] == ["<email>"]

    shown = orjson.loads(build_formatter(make_settings(outcomes={"include_email": True})).format(rec))
    assert shown["message"] == f"contact {EMAIL} updated" and shown["emails"] == [EMAIL]


def test_auth_headers_are_redacted_but_prose_about_them_is_not() -> None:
    redactor = Redactor()
    other = basic_auth("someone", "not-configured-pw")
    assert redactor.text(f"Authorization: {other}") == f"Authorization: Basic {REDACTED}"
    assert redactor.text("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x") == f"Bearer {REDACTED}"
    hint = "Basic Authentication is not enabled in Mautic; Bearer authentication too"
    assert redactor.text(hint) == hint


def test_short_or_empty_values_are_not_treated_as_secrets() -> None:
    redactor = Redactor(["", "ab", "long-enough-secret"])
    assert redactor.text("ab cd long-enough-secret") == f"ab cd {REDACTED}"


def test_text_format_keeps_fields_and_redacts() -> None:
    settings = make_settings(worker={"log_format": "text"})
    formatter = build_formatter(settings)
    assert isinstance(formatter, TextFormatter)
    line = formatter.format(record("sent to %s", EMAIL, integration="mailgun-news", level=logging.WARNING))
    assert " WARNING signal_sync.test: sent to <email> integration='mailgun-news'" in line


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    access_level = access.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.setLevel(access_level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
def test_configure_sends_every_logger_through_the_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(worker={"log_level": "info"})
    config = configure(settings)

    logging.getLogger("faust.worker").info("[^Worker]: Ready")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed for %s", EMAIL)
    logging.getLogger("signal_sync.x").debug("not at info level")
    logging.getLogger("aiohttp.access").info("GET /health 200")
    lines = capsys.readouterr().out.splitlines()

    entries = [orjson.loads(line) for line in lines]
    assert [(e["logger"], e["message"]) for e in entries] == [
        ("faust.worker", "[^Worker]: Ready"),
        ("aiokafka.consumer", "heartbeat failed for <email>"),
    ]
    assert config["root"]["level"] == "INFO" and config["disable_existing_loggers"] is False
    assert "sasl" not in repr(config) and SASL_PASSWORD not in repr(config), "no secrets in the dict itself"


@pytest.mark.usefixtures("restore_logging")
def test_uncaught_exceptions_are_logged_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure(make_settings())
    thread = threading.Thread(target=lambda: 1 / 0, name="worker-thread")
    thread.start()
    thread.join(5)
    entry = orjson.loads(capsys.readouterr().out.splitlines()[-1])
    assert entry["level"] == "CRITICAL" and "worker-thread" in entry["message"]
    assert "ZeroDivisionError" in entry["exception"]
