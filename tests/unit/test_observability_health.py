"""Readiness: partitions assigned and no integration in a config-level fault, explained in the body."""

from __future__ import annotations

import logging

import pytest

from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mailgun import HINTS as MAILGUN_HINTS
from signal_sync.destinations.mautic import HINTS as MAUTIC_HINTS
from signal_sync.observability.health import Assignment, Readiness, evaluate

INTEGRATIONS = ["mautic-main", "mailgun-news"]
ASSIGNED = Assignment(received=True, rebalancing=False, partitions=8)


def fault(status: int, hint: str | None) -> DeliveryResult:
    return DeliveryResult("failed", status, None, 1, f"http_{status}", "Unauthorized", hint, fault=True)


DELIVERED = DeliveryResult("delivered", 201, True, 1, None, None, None)
EVENT_FAILED = DeliveryResult("failed", 400, None, 1, "http_400", "bad email", "hint 400")
RETRIES_EXHAUSTED = DeliveryResult("failed", 503, None, 5, "http_503", "unavailable", None)


def test_ready_when_assigned_and_no_fault() -> None:
    ready, body = evaluate(ASSIGNED, INTEGRATIONS, {})
    assert ready is True
    assert body == {
        "ready": True,
        "reasons": [],
        "partitions": {"assigned": True, "count": 8},
        "integrations": {"mautic-main": {"status": "ok"}, "mailgun-news": {"status": "ok"}},
    }


@pytest.mark.parametrize(
    ("assignment", "reason"),
    [
        (Assignment(received=False, rebalancing=False, partitions=0), "waiting for the consumer group"),
        (Assignment(received=True, rebalancing=True, partitions=8), "rebalance in progress"),
    ],
)
def test_not_ready_until_the_group_has_assigned_partitions(assignment: Assignment, reason: str) -> None:
    ready, body = evaluate(assignment, INTEGRATIONS, {})
    assert ready is False
    assert body["partitions"]["assigned"] is False
    assert len(body["reasons"]) == 1 and body["reasons"][0].startswith(reason)


def test_a_worker_left_without_partitions_by_the_group_is_still_ready() -> None:
    """More replicas than partitions must not block a rolling update."""
    ready, body = evaluate(Assignment(received=True, rebalancing=False, partitions=0), INTEGRATIONS, {})
    assert ready is True and body["partitions"] == {"assigned": True, "count": 0}


def test_fault_makes_the_worker_unready_naming_integration_status_and_hint() -> None:
    readiness = Readiness(INTEGRATIONS)
    readiness.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
    ready, body = readiness.evaluate(ASSIGNED)

    assert ready is False
    state = body["integrations"]["mautic-main"]
    assert state["status"] == "fault" and state["http_status"] == 401 and state["reason"] == "http_401"
    assert state["hint"] == MAUTIC_HINTS[401] and state["since"].endswith("Z")
    assert body["integrations"]["mailgun-news"] == {"status": "ok"}
    assert body["reasons"] == [
        f"integration mautic-main is in a config-level fault: HTTP 401: {MAUTIC_HINTS[401]}"
    ]


def test_fault_clears_on_the_next_success_only() -> None:
    readiness = Readiness(INTEGRATIONS)
    readiness.delivery_finished("mailgun-news", fault(404, MAILGUN_HINTS[404]))
    first_since = readiness.faults["mailgun-news"].since
    for other in (EVENT_FAILED, RETRIES_EXHAUSTED):
        readiness.delivery_finished("mailgun-news", other)
        assert not readiness.evaluate(ASSIGNED)[0], "an event-level failure does not clear the fault"
    readiness.delivery_finished("mautic-main", DELIVERED)
    assert not readiness.evaluate(ASSIGNED)[0], "another integration's success does not clear it"
    readiness.delivery_finished("mailgun-news", fault(404, MAILGUN_HINTS[404]))
    assert readiness.faults["mailgun-news"].since == first_since, "a repeated fault keeps its start time"

    readiness.delivery_finished("mailgun-news", DELIVERED)
    assert readiness.evaluate(ASSIGNED) == evaluate(ASSIGNED, INTEGRATIONS, {})


def test_event_level_failures_never_fault_an_integration() -> None:
    readiness = Readiness(INTEGRATIONS)
    for result in (EVENT_FAILED, RETRIES_EXHAUSTED):
        readiness.delivery_finished("mautic-main", result)
    assert readiness.evaluate(ASSIGNED)[0] is True


def test_fault_and_recovery_are_logged_once_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    readiness = Readiness(INTEGRATIONS)
    with caplog.at_level(logging.INFO, logger="signal_sync.observability.health"):
        for _ in range(3):
            readiness.delivery_finished("mautic-main", fault(401, MAUTIC_HINTS[401]))
        readiness.delivery_finished("mautic-main", fault(403, MAUTIC_HINTS[403]))
        readiness.delivery_finished("mautic-main", DELIVERED)
        readiness.delivery_finished("mautic-main", DELIVERED)

    records = caplog.records
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR, logging.WARNING]
    first = records[0]
    assert first.integration == "mautic-main" and first.http_status == 401 and first.hint == MAUTIC_HINTS[401]
    assert MAUTIC_HINTS[401] in first.getMessage()
    assert records[1].http_status == 403
    assert records[2].integration == "mautic-main" and "recovered" in records[2].getMessage()
