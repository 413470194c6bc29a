"""Liveness (``/health``) and readiness (``/ready``) on the worker's web port.

``/health`` answers 200 whenever the event loop runs the handler: a wedged loop is what a
liveness probe must catch, and nothing else should restart the pod.

``/ready`` answers 200 only when both hold, else 503 with a JSON body saying why:

* **partitions**: the consumer group has given this worker its assignment and the rebalance
  (including table recovery) is over. A worker that got no partitions because the group has
  more members than the topic has partitions is ready too, otherwise a rolling update could
  never finish; the body shows how many partitions it holds.
* **integrations**: none is in a config-level fault. An integration enters one when its last
  delivery ended with ``fault=True`` (401/403/404: credentials, permissions, base URL or list
  wrong; see ``destinations.classify``) and leaves it on its next delivered event. The body and
  the log line name the integration, the HTTP status and the destination's troubleshooting hint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import faust

from signal_sync.destinations.delivery import DeliveryHooks, DeliveryResult
from signal_sync.observability.metrics import consumed_topics
from signal_sync.outcomes import iso_utc

if TYPE_CHECKING:
    from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
READY_PATH = "/ready"


@dataclass(frozen=True, slots=True)
class Fault:
    """Why an integration is unusable until fixed: what the destination answered, and the hint."""

    http_status: int | None
    reason: str | None
    hint: str | None
    error: str | None
    since: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the consumer group has given this worker."""

    received: bool
    rebalancing: bool
    partitions: int


def describe_fault(integration: str, fault: Fault) -> str:
    """One line for the /ready reasons and the log: integration, status and what to do."""
    text = f"integration {integration} is in a config-level fault: HTTP {fault.http_status}"
    return f"{text}: {fault.hint}" if fault.hint else text


def evaluate(
    assignment: Assignment, integrations: Iterable[str], faults: dict[str, Fault]
) -> tuple[bool, dict[str, Any]]:
    """Readiness and the JSON body that explains it."""
    reasons: list[str] = []
    if not assignment.received:
        reasons.append("waiting for the consumer group to assign partitions")
    elif assignment.rebalancing:
        reasons.append("rebalance in progress (partitions being assigned or tables recovered)")
    states: dict[str, Any] = {}
    for integration in integrations:
        fault = faults.get(integration)
        if fault is None:
            states[integration] = {"status": "ok"}
        else:
            states[integration] = {"status": "fault", **asdict(fault)}
            reasons.append(describe_fault(integration, fault))
    ready = not reasons
    body = {
        "ready": ready,
        "reasons": reasons,
        "partitions": {
            "assigned": assignment.received and not assignment.rebalancing,
            "count": assignment.partitions,
        },
        "integrations": states,
    }
    return ready, body


class Readiness(DeliveryHooks):
    """Tracks partition assignment and per-integration config-level faults."""

    def __init__(self, integrations: Iterable[str]) -> None:
        self.integrations = list(integrations)
        self.faults: dict[str, Fault] = {}
        self.assignment_received = False

    def delivery_finished(self, integration_id: str, result: DeliveryResult) -> None:
        """A fault puts the integration in fault; its next delivered event clears it."""
        if result.fault:
            previous = self.faults.get(integration_id)
            fault = Fault(
                http_status=result.http_status,
                reason=result.reason,
                hint=result.hint,
                error=result.error,
                since=previous.since if previous else iso_utc(time.time()),
            )
            self.faults[integration_id] = fault
            if previous is None or previous.http_status != fault.http_status:
                log.error(
                    "%s",
                    describe_fault(integration_id, fault),
                    extra={
                        "integration": integration_id,
                        "http_status": fault.http_status,
                        "reason": fault.reason,
                        "hint": fault.hint,
                        "error": fault.error,
                    },
                )
        elif result.status == "delivered" and integration_id in self.faults:
            del self.faults[integration_id]
            log.warning(
                "integration %s recovered from its config-level fault: delivered again",
                integration_id,
                extra={"integration": integration_id},
            )

    def evaluate(self, assignment: Assignment) -> tuple[bool, dict[str, Any]]:
        return evaluate(assignment, self.integrations, self.faults)


def current_assignment(runtime: Runtime, readiness: Readiness) -> Assignment:
    """Read the assignment state from the Faust app (the consumer may not have started yet)."""
    app = runtime.app
    partitions = 0
    if readiness.assignment_received:
        topics = frozenset(consumed_topics(runtime))
        try:
            partitions = sum(1 for tp in app.consumer.assignment() if tp.topic in topics)
        except Exception:  # consumer not started or stopping
            partitions = 0
    return Assignment(readiness.assignment_received, bool(app.rebalancing), partitions)


def install(runtime: Runtime) -> Readiness:
    """Track assignment and faults, and serve ``/health`` and ``/ready``."""
    readiness = Readiness(runtime.integrations)
    runtime.sender.hooks.append(readiness)
    app = runtime.app
    started = time.monotonic()

    @app.on_partitions_assigned.connect
    async def _assigned(sender: faust.App, assigned: set, **_: object) -> None:
        readiness.assignment_received = True

    @app.page(HEALTH_PATH, name="signal_sync_health")
    async def health(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json({"status": "ok", "uptime_s": round(time.monotonic() - started, 1)})

    @app.page(READY_PATH, name="signal_sync_ready")
    async def ready(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        is_ready, body = readiness.evaluate(current_assignment(runtime, readiness))
        return self.json(body, status=200 if is_ready else 503)

    return readiness
