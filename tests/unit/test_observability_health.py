"""Readiness (started + Kafka reachable, never destination health) and /health's integration states."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mailgun import HINTS as MAILGUN_HINTS
from signal_sync.destinations.mautic import HINTS as MAUTIC_HINTS
from signal_sync.observability import health
from signal_sync.observability.health import (
    KAFKA_STALE_AFTER_S,
    Assignment,
    IntegrationFaults,
    KafkaContact,
    KafkaProbe,
    Readiness,
    evaluate,
)
from signal_sync.observability.logs import Redactor
from signal_sync.runtime import create_runtime
from tests.unit.factories import MAUTIC_PASSWORD, settings

INTEGRATIONS = ["mautic-main", "mailgun-news"]
ASSIGNED = Assignment(received=True, rebalancing=False, partitions=8)
NOW = 1000.0
FRESH = KafkaContact(last_success=NOW - 1, error=None)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fault(status: int, hint: str | None) -> DeliveryResult:
    return DeliveryResult("failed", status, None, 1, f"http_{status}", "Unauthorized", hint, fault=True)


DELIVERED = DeliveryResult("delivered", 201, True, 1, None, None, None)
EVENT_FAILED = DeliveryResult("failed", 400, None, 1, "http_400", "bad email", "hint 400")
RETRIES_EXHAUSTED = DeliveryResult("failed", 503, None, 5, "http_503", "unavailable", None)


# --- readiness -----------------------------------------------------------------------------------


def test_ready_when_started_and_kafka_answered_recently() -> None:
    ready, body = evaluate(True, ASSIGNED, FRESH, NOW)
    assert ready is True
    assert body == {
        "ready": True,
        "reasons": [],
        "started": True,
        "kafka": {"reachable": True, "last_success_s_ago": 1.0, "error": None},
        "partitions": {"count": 8, "rebalancing": False},
    }


@pytest.mark.parametrize(
    ("assignment", "reason"),
    [
        (Assignment(received=False, rebalancing=False, partitions=0), "waiting for the consumer group"),
        (Assignment(received=True, rebalancing=True, partitions=8), "first rebalance in progress"),
    ],
)
def test_not_ready_until_the_first_assignment_is_done(assignment: Assignment, reason: str) -> None:
    readiness = Readiness(Clock())
    readiness.kafka_succeeded()
    ready, body = readiness.evaluate(assignment)
    assert ready is False and body["started"] is False
    assert len(body["reasons"]) == 1 and body["reasons"][0].startswith(reason)


def test_later_rebalances_do_not_make_a_started_worker_unready() -> None:
    """A rebalance moves partitions between every member at once: all pods unready would only
    block node drains."""
    readiness = Readiness(Clock())
    readiness.kafka_succeeded()
    assert readiness.evaluate(ASSIGNED)[0] is True
    ready, body = readiness.evaluate(Assignment(received=True, rebalancing=True, partitions=0))
    assert ready is True and body["started"] is True and body["partitions"]["rebalancing"] is True


def test_a_worker_left_without_partitions_by_the_group_is_still_ready() -> None:
    """More replicas than partitions must not block a rolling update."""
    ready, body = evaluate(True, Assignment(received=True, rebalancing=False, partitions=0), FRESH, NOW)
    assert ready is True and body["partitions"]["count"] == 0


def test_not_ready_once_kafka_has_not_answered_for_the_stale_window() -> None:
    clock = Clock()
    readiness = Readiness(clock)
    readiness.kafka_succeeded()
    assert readiness.evaluate(ASSIGNED)[0] is True
    clock.now += KAFKA_STALE_AFTER_S  # the boundary is still fine
    readiness.kafka_failed("KafkaConnectionError: Unable to bootstrap from [('kafka', 9092)]")
    assert readiness.evaluate(ASSIGNED)[0] is True
    clock.now += 1
    ready, body = readiness.evaluate(ASSIGNED)
    assert ready is False
    assert body["kafka"] == {
        "reachable": False,
        "last_success_s_ago": KAFKA_STALE_AFTER_S + 1,
        "error": "KafkaConnectionError: Unable to bootstrap from [('kafka', 9092)]",
    }
    assert body["reasons"] == [
        f"no request to the Kafka brokers has succeeded for {KAFKA_STALE_AFTER_S + 1:.0f}s: "
        "KafkaConnectionError: Unable to bootstrap from [('kafka', 9092)]"
    ]
    readiness.kafka_succeeded()
    assert readiness.evaluate(ASSIGNED) == (True, readiness.evaluate(ASSIGNED)[1])
    assert readiness.evaluate(ASSIGNED)[1]["kafka"]["error"] is None


def test_not_ready_before_any_broker_answer() -> None:
    ready, body = evaluate(True, ASSIGNED, KafkaContact(None, None), NOW)
    assert ready is False
    assert body["reasons"] == ["no request to the Kafka brokers has succeeded yet"]
    assert body["kafka"]["last_success_s_ago"] is None


def test_a_destination_fault_never_touches_readiness() -> None:
    """A 401 from Mautic is the same on every pod: readiness stays 200 and the fault goes to /health."""
    readiness = Readiness(Clock())
    readiness.kafka_succeeded()
    faults = IntegrationFaults(INTEGRATIONS)
    before = readiness.evaluate(ASSIGNED)
    faults.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
    assert readiness.evaluate(ASSIGNED) == before
    assert faults.states({})["mautic-main"]["status"] == "fault"


def test_ready_error_text_goes_through_the_log_redaction() -> None:
    redact = Redactor(secrets=["kafka-sasl-s3cret"]).text
    contact = KafkaContact(None, "SaslAuthenticationFailed: user signal, password kafka-sasl-s3cret")
    _, body = evaluate(True, ASSIGNED, contact, NOW, redact)
    text = str(body)
    assert "kafka-sasl-s3cret" not in text and "<redacted>" in body["kafka"]["error"]


# --- the Kafka probe ------------------------------------------------------------------------------


async def test_probe_success_and_failure_land_in_readiness() -> None:
    clock = Clock()
    readiness = Readiness(clock)
    answers: list[Any] = [{"tp": 5}, ConnectionError("broker away")]

    async def request() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    probe = KafkaProbe(readiness, request)
    assert await probe.run_once() is True
    assert readiness.last_success == NOW and readiness.error is None
    clock.now += 10
    assert await probe.run_once() is False
    assert readiness.last_success == NOW and readiness.error == "ConnectionError: broker away"


async def test_a_hanging_probe_times_out_and_is_not_sent_again_while_it_hangs() -> None:
    readiness = Readiness(Clock())
    release = asyncio.Event()
    sent = 0

    async def request() -> object:
        nonlocal sent
        sent += 1
        await release.wait()
        return {}

    probe = KafkaProbe(readiness, request)
    assert await probe.run_once(timeout=0.01) is False
    assert readiness.error == "TimeoutError: timed out"
    assert await probe.run_once(timeout=0.01) is False
    assert sent == 1, "the first request still waits: no second one behind it"
    release.set()
    assert await probe.run_once(timeout=1) is True
    assert sent == 1 and readiness.last_success is not None
    assert await probe.run_once(timeout=1) is True and sent == 2


# --- integration faults (/health) ----------------------------------------------------------------


def test_fault_is_reported_naming_integration_status_and_hint() -> None:
    faults = IntegrationFaults(INTEGRATIONS)
    faults.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
    states = faults.states({"mautic-main": True})
    state = states["mautic-main"]
    assert state["status"] == "fault" and state["http_status"] == 401 and state["reason"] == "http_401"
    assert state["hint"] == MAUTIC_HINTS[401] and state["since"].endswith("Z") and state["paused"] is True
    assert (
        state["message"]
        == f"integration mautic-main is in a config-level fault: HTTP 401: {MAUTIC_HINTS[401]}"
    )
    assert states["mailgun-news"] == {"status": "ok", "paused": False}
    assert faults.states({"mailgun-news": True})["mailgun-news"] == {"status": "paused", "paused": True}


def test_fault_clears_on_the_next_success_only() -> None:
    faults = IntegrationFaults(INTEGRATIONS)
    faults.delivery_finished("mailgun-news", fault(404, MAILGUN_HINTS[404]))
    first_since = faults.faults["mailgun-news"].since
    for other in (EVENT_FAILED, RETRIES_EXHAUSTED):
        faults.delivery_finished("mailgun-news", other)
        assert "mailgun-news" in faults.faults, "an event-level failure does not clear the fault"
    faults.delivery_finished("mautic-main", DELIVERED)
    assert "mailgun-news" in faults.faults, "another integration's success does not clear it"
    faults.delivery_finished("mailgun-news", fault(404, MAILGUN_HINTS[404]))
    assert faults.faults["mailgun-news"].since == first_since, "a repeated fault keeps its start time"
    faults.delivery_finished("mailgun-news", DELIVERED)
    assert faults.states({}) == {i: {"status": "ok", "paused": False} for i in INTEGRATIONS}


def test_event_level_failures_never_fault_an_integration() -> None:
    faults = IntegrationFaults(INTEGRATIONS)
    for result in (EVENT_FAILED, RETRIES_EXHAUSTED):
        faults.delivery_finished("mautic-main", result)
    assert faults.faults == {}


def test_fault_error_text_goes_through_the_log_redaction() -> None:
    faults = IntegrationFaults(INTEGRATIONS)
    result = DeliveryResult(
        "failed", 401, None, 1, "http_401", f"bad login jane@example.com / {MAUTIC_PASSWORD}", "h", fault=True
    )
    faults.delivery_finished("mautic-main", result)
    state = faults.states({}, Redactor([MAUTIC_PASSWORD]).text)["mautic-main"]
    assert MAUTIC_PASSWORD not in state["error"] and "jane@example.com" not in state["error"]


def test_fault_and_recovery_are_logged_once_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    faults = IntegrationFaults(INTEGRATIONS)
    with caplog.at_level(logging.INFO, logger="signal_sync.observability.health"):
        for _ in range(3):
            faults.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
        faults.delivery_finished("mautic-main", fault(403, MAUTIC_HINTS[403]))
        faults.delivery_finished("mautic-main", DELIVERED)
        faults.delivery_finished("mautic-main", DELIVERED)

    records = caplog.records
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR, logging.WARNING]
    first = records[0]
    assert first.integration == "mautic-main" and first.http_status == 401 and first.hint == MAUTIC_HINTS[401]
    assert MAUTIC_HINTS[401] in first.getMessage()
    assert records[1].http_status == 403
    assert records[2].integration == "mautic-main" and "recovered" in records[2].getMessage()


# --- the endpoints --------------------------------------------------------------------------------


async def test_health_and_ready_endpoints_serve_the_states() -> None:
    runtime = create_runtime(settings(), partitions=1)
    readiness, faults = health.install(runtime, Redactor([MAUTIC_PASSWORD]))
    async with TestClient(TestServer(runtime.app.web.web_app)) as client:
        reply = await client.get("/ready")
        assert reply.status == 503
        body = await reply.json()
        assert body["ready"] is False and body["started"] is False

        readiness.assignment_received = True
        readiness.kafka_succeeded()
        faults.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
        reply = await client.get("/ready")
        assert reply.status == 200, await reply.text()
        body = await reply.json()
        assert "integrations" not in body, "destination state is not part of readiness"

        reply = await client.get("/health")
        assert reply.status == 200
        states = (await reply.json())["integrations"]
        assert states["mautic-main"]["status"] == "fault" and states["mautic-main"]["http_status"] == 401
        assert states["mailgun-news"]["status"] == "ok"
