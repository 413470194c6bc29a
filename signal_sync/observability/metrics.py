"""Prometheus metrics, served at ``/metrics`` on the worker's web port.

One ``CollectorRegistry`` per runtime (never the process-global default), so tests and
several apps in one process never share counters. The numbers come from these places,
none of which the agents know about:

* Faust sensors: every record the consumer hands to a stream (``events_consumed``; the source
  reader's records are counted as it hands them to the ingest agent), the
  consumer group's rebalances and the consumer's commits (no labels: one series each);
* the runtime's outcome observers: every outcome and dead letter written, and the time from
  the input record to its outcome (``latency_ms``), by integration and status (counted in plain
  dicts and read at scrape time: ``observability.outcome_counts``);
* the sender's ``DeliveryHooks``: HTTP latency, in-flight requests, retries, batch sizes;
* the installed distributions: ``signal_sync_build_info`` (version, Python, faust-streaming).

Consumer lag is read at scrape time from the Faust consumer (end offset minus position for
each assigned partition of the topics the agents read), so it is as fresh as the scrape; so is
the paused state, read from the delivery engine's per-integration gates when it has them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP, Message
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from signal_sync.agents.outputs import DEAD_LETTER_STATUSES
from signal_sync.destinations.delivery import DeliveryHooks, DeliveryResult
from signal_sync.observability.build import build_info
from signal_sync.observability.outcome_counts import OutcomeCounts

if TYPE_CHECKING:
    from signal_sync.runtime import Runtime
    from signal_sync.streams.source_reader import SourceReader

log = logging.getLogger(__name__)

PREFIX = "signal_sync"
METRICS_PATH = "/metrics"
LAG_TIMEOUT_S = 2.0
"""Scrapes must stay fast: a lag refresh that takes longer keeps the previous values."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
EVENT_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Input record to outcome: sub-second when keeping up, minutes while a backlog drains."""
REBALANCE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
COMMIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def status_class(status: int | None) -> str:
    """``2xx``/``4xx``/``5xx`` for a reply, ``error`` when no reply came (timeout, reset, refused)."""
    if status is None:
        return "error"
    return f"{status // 100}xx"


class Metrics(DeliveryHooks):
    """Every metric of one worker, in its own registry."""

    def __init__(self, integrations: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.build_info = Info(
            f"{PREFIX}_build",
            "The running build: signal-sync's version, the Python and faust-streaming versions.",
            registry=r,
        )
        self.build_info.info(build_info())
        self.events_consumed = Counter(
            f"{PREFIX}_events_consumed",
            "Kafka records handed to the agents, by topic (source and internal contacts topic).",
            ["topic"],
            registry=r,
        )
        self.outcome_counts = OutcomeCounts(PREFIX, EVENT_LATENCY_BUCKETS, DEAD_LETTER_STATUSES)
        r.register(self.outcome_counts)
        self.rebalances = Counter(
            f"{PREFIX}_rebalances",
            "Consumer-group rebalances this worker took part in (counted when one starts).",
            registry=r,
        )
        self.rebalance_duration = Histogram(
            f"{PREFIX}_rebalance_duration_seconds",
            "Time from the start of a rebalance to its end, table recovery included.",
            buckets=REBALANCE_BUCKETS,
            registry=r,
        )
        self.rebalancing = Gauge(
            f"{PREFIX}_rebalancing",
            "1 while a rebalance (or the table recovery after it) is in progress in this worker.",
            registry=r,
        )
        self.commit_duration = Histogram(
            f"{PREFIX}_commit_duration_seconds",
            "Duration of each offset commit round (the outputs it waits for included); its count is the "
            "number of commit rounds.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.last_commit = Gauge(
            f"{PREFIX}_last_commit_timestamp_seconds",
            "Unix time the last commit round finished (0 before the first).",
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Duration of each HTTP request to a destination, by integration and status class "
            "(2xx, 4xx, 5xx, error = no reply).",
            ["integration", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}_http_retries",
            "HTTP requests sent again after a retryable answer (429, 5xx, timeout), by integration.",
            ["integration"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight",
            "HTTP requests currently waiting for a reply, by integration.",
            ["integration"],
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_delivery_batch_size",
            "Entries carried by one HTTP request, by integration (1 for a single call; a bulk call's items).",
            ["integration"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.paused = Gauge(
            f"{PREFIX}_integration_paused",
            "1 while the delivery engine holds back deliveries to the integration (fault pause, open "
            "circuit); always 0 with an engine that cannot pause.",
            ["integration"],
            registry=r,
        )
        self.fault = Gauge(
            f"{PREFIX}_integration_fault",
            "1 while the integration is in a config-level fault (last delivery got 401/403/404); "
            "/health shows the hint. Readiness does not depend on it.",
            ["integration"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Records between the consumer's position and the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            f"{PREFIX}_assigned_partitions",
            "Partitions of the topics the agents read that are assigned to this worker.",
            registry=r,
        )
        for integration in integrations:
            self.in_flight.labels(integration)
            self.paused.labels(integration).set(0)
            self.fault.labels(integration).set(0)
            self.retries.labels(integration)

    # -- outcome observer ----------------------------------------------------------------

    def observe_outcome(self, outcome: dict[str, Any], _request: object = None) -> None:
        """Runtime observer: count one outcome written, and its dead letter if it got one."""
        self.outcome_counts.observe(outcome)

    # -- DeliveryHooks -------------------------------------------------------------------

    def request_started(self, integration_id: str, batch_size: int) -> None:
        self.in_flight.labels(integration_id).inc()
        self.batch_size.labels(integration_id).observe(batch_size)

    def request_finished(self, integration_id: str, status: int | None, seconds: float) -> None:
        self.in_flight.labels(integration_id).dec()
        self.request_duration.labels(integration_id, status_class(status)).observe(seconds)

    def retry_started(self, integration_id: str) -> None:
        self.retries.labels(integration_id).inc()

    def delivery_finished(self, integration_id: str, result: DeliveryResult) -> None:
        """Same rule as /health: a fault sets the gauge, the next delivered event clears it."""
        if result.fault:
            self.fault.labels(integration_id).set(1)
        elif result.status == "delivered":
            self.fault.labels(integration_id).set(0)

    # -- consumer ------------------------------------------------------------------------

    def count_consumed(self, topic: str, records: int = 1) -> None:
        self.events_consumed.labels(topic).inc(records)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace every lag sample (partitions no longer assigned disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in sorted(lags.items()):
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self.assigned_partitions.set(len(lags))

    def set_paused(self, paused: dict[str, bool]) -> None:
        for integration, is_paused in paused.items():
            self.paused.labels(integration).set(1 if is_paused else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class GroupSensor(faust.Sensor):
    """Rebalances and commits of the Faust consumer, as label-free series.

    Faust calls ``on_rebalance_start`` when the group starts moving partitions and
    ``on_rebalance_end`` once the new assignment is in place and the tables have recovered;
    ``on_commit_initiated`` / ``on_commit_completed`` around every commit round (the outputs it
    flushes first included). A commit round that raises never reports completion, so the
    last-commit timestamp stops moving."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.metrics = metrics
        self.clock = clock

    def on_rebalance_start(self, app: faust.App) -> dict:
        self.metrics.rebalances.inc()
        self.metrics.rebalancing.set(1)
        return {"time_start": self.clock()}

    def on_rebalance_end(self, app: faust.App, state: dict) -> None:
        self.metrics.rebalancing.set(0)
        started = state.get("time_start") if isinstance(state, dict) else None
        if started is not None:
            self.metrics.rebalance_duration.observe(max(0.0, self.clock() - started))

    def on_commit_initiated(self, consumer: object) -> float:
        return self.clock()

    def on_commit_completed(self, consumer: object, state: Any) -> None:
        if isinstance(state, int | float):
            self.metrics.commit_duration.observe(max(0.0, self.clock() - state))
        self.metrics.last_commit.set(time.time())


class ConsumedSensor(faust.Sensor):
    """Counts records as the Faust consumer hands them over to the agents, by topic.

    Changelog records read during table recovery are not counted: they are not events."""

    def __init__(self, metrics: Metrics, app: faust.App) -> None:
        super().__init__()
        self.metrics = metrics
        self.app = app
        self._topics: frozenset[str] | None = None

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        if self._topics is None:  # agents are all attached once messages flow
            self._topics = agent_topics(self.app)
        if tp.topic in self._topics:
            self.metrics.count_consumed(tp.topic)


def agent_topics(app: faust.App) -> frozenset[str]:
    """The topics the app's agents read: the source topic and the internal delivery topic(s)."""
    names: set[str] = set()
    for agent in app.agents.values():
        names.update(getattr(agent.channel, "topics", ()) or ())
    return frozenset(names)


def consumed_topics(runtime: Runtime) -> frozenset[str]:
    """``agent_topics`` of the runtime's app (kept as the one name health and metrics share)."""
    return agent_topics(runtime.app)


def paused_integrations(runtime: Runtime) -> dict[str, bool]:
    """Paused state per integration, from the delivery engine's gates when it has them."""
    gates = getattr(runtime, "gates", None) or {}
    paused = {}
    for integration in runtime.integrations:
        state = getattr(gates.get(integration), "state", None)
        paused[integration] = bool(getattr(state, "paused", False))
    return paused


async def read_lag(
    app: faust.App, topics: Iterable[str], source_reader: SourceReader | None = None
) -> dict[tuple[str, int], int]:
    """End offset minus position for every assigned partition of ``topics`` (the position of
    ``source_reader``'s topic is the reader's, which reads it in Faust's stead).

    The end offsets come from one ListOffsets request; a partition whose position is not known
    yet (just assigned, still seeking) is left out rather than reported as lag."""
    wanted = frozenset(topics)
    consumer = app.consumer
    tps = sorted(tp for tp in consumer.assignment() if tp.topic in wanted)
    if not tps:
        return {}
    highwaters = await consumer.highwaters(*tps)
    lags: dict[tuple[str, int], int] = {}
    for tp in tps:
        end = highwaters.get(tp)
        if source_reader is not None and tp.topic == source_reader.topic:
            position = source_reader.position(tp.partition)
        else:
            position = await consumer.position(tp)
        if end is None or position is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, end - position)
    return lags


async def refresh_lag(runtime: Runtime, metrics: Metrics) -> None:
    """Update the lag gauges, keeping the last values when the consumer cannot answer in time."""
    try:
        lags = await asyncio.wait_for(
            read_lag(runtime.app, consumed_topics(runtime), runtime.source_reader), LAG_TIMEOUT_S
        )
    except Exception as exc:  # not started, rebalancing, broker away: keep the last values
        log.debug("consumer lag not refreshed: %s: %s", type(exc).__name__, exc)
        return
    metrics.set_lag(lags)


def install(runtime: Runtime) -> Metrics:
    """Create the runtime's metrics, feed them from observers, hooks and a sensor, serve ``/metrics``."""
    metrics = Metrics(runtime.integrations)
    runtime.observers.append(metrics.observe_outcome)
    runtime.sender.hooks.append(metrics)
    runtime.app.sensors.add(ConsumedSensor(metrics, runtime.app))
    runtime.source_reader.on_read = functools.partial(metrics.count_consumed, runtime.source_reader.topic)
    runtime.app.sensors.add(GroupSensor(metrics))

    @runtime.app.page(METRICS_PATH, name="signal_sync_metrics")
    async def prometheus_metrics(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        await refresh_lag(runtime, metrics)
        metrics.set_paused(paused_integrations(runtime))
        return self.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics
