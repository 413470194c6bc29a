"""Liveness (``/health``) and readiness (``/ready``) on the worker's web port.

``/health`` answers 200 whenever the event loop runs the handler: a wedged loop is what a
liveness probe must catch, and nothing else should restart the pod. Its body carries the
state of every integration (``ok``, ``paused``, ``fault`` with the HTTP status and the
destination's troubleshooting hint), for people and dashboards; the status code never
depends on it.

``/ready`` answers 200 when the worker runs and can reach Kafka, else 503 with a JSON body
saying why:

* **started**: the consumer group gave this worker its first assignment and the table
  recovery after it finished. This holds from then on: later rebalances move partitions
  between all members at once, and turning every pod unready for them would block node
  drains (the PodDisruptionBudget counts unready pods) for nothing. A worker left without
  partitions (more members than partitions) is ready too, or a rolling update never ends.
* **kafka**: a request to the brokers succeeded within the last ``KAFKA_STALE_AFTER_S``
  seconds. ``KafkaProbe`` asks for the end offset of the source topic's partition 0 every
  ``KAFKA_PROBE_INTERVAL_S`` seconds through the Faust consumer (one small ListOffsets
  request; it works whether or not this worker holds partitions).

Destination health never makes a worker unready: a 401 from one destination is the same on
every pod, so readiness would take them all out at once. Destination faults go to metrics
(``signal_sync_integration_fault`` / ``_paused``), the ``/health`` body, the log (an ERROR
when a fault starts) and alerts. Error texts in both bodies go through the log redaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP

from signal_sync.destinations.delivery import DeliveryHooks, DeliveryResult
from signal_sync.observability.logs import Redactor
from signal_sync.observability.metrics import consumed_topics, paused_integrations
from signal_sync.outcomes import iso_utc

if TYPE_CHECKING:
    from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
READY_PATH = "/ready"

KAFKA_PROBE_INTERVAL_S = 5.0
"""How often the worker asks the brokers for one end offset."""
KAFKA_PROBE_TIMEOUT_S = 5.0
"""A probe that takes longer counts as failed."""
KAFKA_STALE_AFTER_S = 30.0
"""Without a successful broker request for this long, the worker is not ready."""


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


@dataclass(frozen=True, slots=True)
class KafkaContact:
    """The last successful broker request, and the error of the last failed probe."""

    last_success: float | None
    """Monotonic time of the last success; None before the first."""
    error: str | None


def describe_fault(integration: str, fault: Fault) -> str:
    """One line for the log and /health: integration, status and what to do."""
    text = f"integration {integration} is in a config-level fault: HTTP {fault.http_status}"
    return f"{text}: {fault.hint}" if fault.hint else text


def evaluate(
    started: bool,
    assignment: Assignment,
    kafka: KafkaContact,
    now: float,
    redact: Callable[[str], str] = str,
) -> tuple[bool, dict[str, Any]]:
    """Readiness and the JSON body that explains it (``now`` on the monotonic clock)."""
    reasons: list[str] = []
    if not started:
        if not assignment.received:
            reasons.append("waiting for the consumer group to assign partitions")
        else:
            reasons.append("first rebalance in progress (partitions being assigned or tables recovered)")
    age = None if kafka.last_success is None else max(0.0, now - kafka.last_success)
    reachable = age is not None and age <= KAFKA_STALE_AFTER_S
    error = redact(kafka.error) if kafka.error else None
    if not reachable:
        if age is None:
            text = "no request to the Kafka brokers has succeeded yet"
        else:
            text = f"no request to the Kafka brokers has succeeded for {age:.0f}s"
        reasons.append(f"{text}: {error}" if error else text)
    ready = not reasons
    body = {
        "ready": ready,
        "reasons": reasons,
        "started": started,
        "kafka": {
            "reachable": reachable,
            "last_success_s_ago": None if age is None else round(age, 1),
            "error": error,
        },
        "partitions": {"count": assignment.partitions, "rebalancing": assignment.rebalancing},
    }
    return ready, body


class Readiness:
    """Whether the worker has started (first assignment done) and when Kafka last answered."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.assignment_received = False
        self.started = False
        self.last_success: float | None = None
        self.error: str | None = None

    def kafka_succeeded(self) -> None:
        self.last_success = self.clock()
        self.error = None

    def kafka_failed(self, error: str) -> None:
        self.error = error

    def evaluate(
        self, assignment: Assignment, redact: Callable[[str], str] = str
    ) -> tuple[bool, dict[str, Any]]:
        """Latch ``started`` once the first assignment is in place, then evaluate."""
        if not self.started and assignment.received and not assignment.rebalancing:
            self.started = True
        kafka = KafkaContact(self.last_success, self.error)
        return evaluate(self.started, assignment, kafka, self.clock(), redact)


class KafkaProbe:
    """One cheap broker request at a time: success or failure lands in ``Readiness``."""

    def __init__(self, readiness: Readiness, request: Callable[[], Awaitable[object]]) -> None:
        self.readiness = readiness
        self.request = request
        self._pending: asyncio.Future[object] | None = None

    async def run_once(self, timeout: float = KAFKA_PROBE_TIMEOUT_S) -> bool:
        """Send the request unless the previous one is still waiting; True on success.

        The request goes through the Faust consumer's Kafka client, and a timeout here leaves it
        waiting there (shielded) rather than cancel it inside the client: a probe that is still
        waiting is not sent again, so an outage never queues up probes in front of the
        consumer's own calls."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self.request())
        try:
            await asyncio.wait_for(asyncio.shield(self._pending), timeout)
        except Exception as exc:  # timeout, broker away, consumer not started or stopping
            message = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            self.readiness.kafka_failed(f"{type(exc).__name__}: {message}")
            return False
        self.readiness.kafka_succeeded()
        return True


class IntegrationFaults(DeliveryHooks):
    """Per-integration config-level faults (401/403/404), for ``/health`` and the log.

    An integration enters a fault when a delivery ends with ``fault=True`` and leaves it on
    its next delivered event; the start of a fault (or a change of its status) is logged at
    ERROR with the hint, the recovery at WARNING."""

    def __init__(self, integrations: Iterable[str]) -> None:
        self.integrations = list(integrations)
        self.faults: dict[str, Fault] = {}

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

    def states(
        self, paused: Mapping[str, bool], redact: Callable[[str], str] = str
    ) -> dict[str, dict[str, Any]]:
        """Each integration: ``ok``, ``paused`` (held back by the engine) or ``fault`` with details."""
        states: dict[str, dict[str, Any]] = {}
        for integration in self.integrations:
            fault = self.faults.get(integration)
            if fault is not None:
                details = asdict(fault)
                if fault.error:
                    details["error"] = redact(fault.error)
                states[integration] = {
                    "status": "fault",
                    "paused": bool(paused.get(integration)),
                    "message": describe_fault(integration, fault),
                    **details,
                }
            elif paused.get(integration):
                states[integration] = {"status": "paused", "paused": True}
            else:
                states[integration] = {"status": "ok", "paused": False}
        return states


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


def source_end_offset(runtime: Runtime) -> Callable[[], Awaitable[object]]:
    """The probe's request: the end offset of the source topic's partition 0."""
    tp = TP(runtime.settings.kafka.source_topic, 0)

    async def request() -> object:
        return await runtime.app.consumer.highwaters(tp)

    return request


def install(runtime: Runtime, redactor: Redactor | None = None) -> tuple[Readiness, IntegrationFaults]:
    """Track start-up, Kafka contact and faults; serve ``/health`` and ``/ready``."""
    redact = (redactor or Redactor()).text
    readiness = Readiness()
    faults = IntegrationFaults(runtime.integrations)
    runtime.sender.hooks.append(faults)
    probe = KafkaProbe(readiness, source_end_offset(runtime))
    app = runtime.app
    started = time.monotonic()

    @app.on_partitions_assigned.connect
    async def _assigned(sender: faust.App, assigned: set, **_: object) -> None:
        readiness.assignment_received = True
        readiness.kafka_succeeded()  # the group coordinator just answered

    @app.timer(KAFKA_PROBE_INTERVAL_S, name="signal_sync_kafka_probe")
    async def _probe_kafka() -> None:
        await probe.run_once()

    @app.page(HEALTH_PATH, name="signal_sync_health")
    async def health(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json(
            {
                "status": "ok",
                "uptime_s": round(time.monotonic() - started, 1),
                "integrations": faults.states(paused_integrations(runtime), redact),
            }
        )

    @app.page(READY_PATH, name="signal_sync_ready")
    async def ready(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        is_ready, body = readiness.evaluate(current_assignment(runtime, readiness), redact)
        return self.json(body, status=200 if is_ready else 503)

    return readiness, faults
