"""librdkafka's log lines and errors through ``LibrdkafkaLog``: into the logging system (JSON in the
worker), repeats folded, the last failure and refused credentials remembered, nothing on stderr
where logging is not configured."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from confluent_kafka import KafkaError
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.streams.librdkafka_log import LOGGER_NAME, REPEAT_WINDOW_S, LibrdkafkaLog

FMT = "%s [%s] %s"
TEXT = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms)"
REFUSED = f"[thrd:1]: {TEXT}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return caplog


def test_lines_go_to_the_logger_with_facility_and_client(log: pytest.LogCaptureFixture) -> None:
    LibrdkafkaLog().log(logging.ERROR, FMT, "FAIL", "rdkafka#producer-1", REFUSED)
    (record,) = log.records
    assert record.name == LOGGER_NAME and record.levelno == logging.ERROR
    assert record.getMessage() == TEXT
    assert (record.facility, record.client) == ("FAIL", "rdkafka#producer-1")


def test_repeats_are_folded_within_the_window(log: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    router = LibrdkafkaLog(clock)
    for after in range(50):
        router.log(logging.ERROR, FMT, "FAIL", "rdkafka#producer-1", REFUSED.replace("0ms", f"{after}ms"))
        clock.now += 0.05
    assert len(log.records) == 1
    clock.now += REPEAT_WINDOW_S
    router.log(logging.ERROR, FMT, "FAIL", "rdkafka#producer-1", REFUSED)
    assert len(log.records) == 2 and log.records[1].repeated == 49
    router.log(logging.ERROR, FMT, "FAIL", "rdkafka#producer-1", "another line")
    assert len(log.records) == 3, "a different line is not a repeat"


def test_a_property_meant_for_other_clients_is_a_debug_note(log: pytest.LogCaptureFixture) -> None:
    line = (
        "[thrd:app]: Configuration property linger.ms is a producer property and will be ignored by "
        "this consumer instance"
    )
    LibrdkafkaLog().log(logging.WARNING, FMT, "CONFWARN", "rdkafka#consumer-2", line)
    assert log.records[0].levelno == logging.DEBUG


def test_last_failure_and_refused_credentials(log: pytest.LogCaptureFixture) -> None:
    router = LibrdkafkaLog()
    assert router.last_error is None and router.authentication_error is None
    router.log(logging.ERROR, FMT, "FAIL", "c", REFUSED)
    router.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert router.last_error is not None and "Connection refused" in router.last_error, "a summary never wins"
    assert router.authentication_error is None
    sasl = "SASL authentication error: Authentication failed during authentication due to invalid credentials"
    router.error(KafkaError(KafkaError._AUTHENTICATION, sasl))
    assert router.authentication_error == sasl
    tls = LibrdkafkaLog()
    alert = "[thrd:x]: x: Receive failed: SSL routines::ssl/tls alert bad certificate"
    tls.log(logging.ERROR, FMT, "FAIL", "c", alert)
    assert tls.authentication_error is not None
    assert any(r.levelno == logging.ERROR and "_ALL_BROKERS_DOWN" in r.getMessage() for r in log.records)


def test_nothing_reaches_stderr_where_logging_is_not_configured() -> None:
    """The one-shot CLI commands configure no logging: Python's last-resort handler would print
    every WARNING+ line; the router's NullHandler keeps them out (the command's error carries the
    cause)."""
    code = (
        "import logging\n"
        "from signal_sync.streams.librdkafka_log import LibrdkafkaLog\n"
        f"LibrdkafkaLog().log(logging.ERROR, '%s [%s] %s', 'FAIL', 'c', {REFUSED!r})\n"
        "logging.getLogger('elsewhere').error('unrelated: shown')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stderr.strip() == "unrelated: shown"


@given(st.integers(0, 60), st.text(max_size=40), st.text(max_size=40), st.text(max_size=200))
def test_any_line_is_taken(level: int, facility: str, client: str, text: str) -> None:
    LibrdkafkaLog().log(level, FMT, facility, client, text)
