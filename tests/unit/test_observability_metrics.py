"""Prometheus metrics: what each source (outcomes, delivery hooks, consumer) adds, and the rendering."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signal_sync.config import DeliverySettings, MauticIntegration
from signal_sync.destinations.base import Request, basic_auth
from signal_sync.destinations.delivery import DeliveryHooks, DeliveryResult, Sender
from signal_sync.observability.build import build_info, version_line
from signal_sync.observability.metrics import (
    EVENT_LATENCY_BUCKETS,
    ConsumedSensor,
    GroupSensor,
    Metrics,
    agent_topics,
    paused_integrations,
    read_lag,
    status_class,
)
from signal_sync.sandbox import mautic, start_in_thread
from tests.unit.factories import MAUTIC_RAW

INTEGRATIONS = ("mautic-main", "mailgun-news")


def parsed(text: str, prefix: str = "") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of an exposition text whose names start with ``prefix`` (``_created`` ones left out)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(prefix) and not sample.name.endswith("_created")
    }


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the rendered text back, so the tests check what Prometheus would read."""
    return parsed(metrics.render().decode())


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def outcome(integration: str, status: str, reason: str | None) -> dict[str, Any]:
    return {"integration": integration, "status": status, "reason": reason}


def test_every_metric_is_rendered_with_integration_series_ready_before_traffic() -> None:
    metrics = Metrics(INTEGRATIONS)
    text = metrics.render().decode()
    for name in (
        "signal_sync_events_consumed_total",
        "signal_sync_outcomes_total",
        "signal_sync_dead_letters_total",
        "signal_sync_http_request_duration_seconds",
        "signal_sync_http_retries_total",
        "signal_sync_http_requests_in_flight",
        "signal_sync_delivery_batch_size",
        "signal_sync_integration_paused",
        "signal_sync_integration_fault",
        "signal_sync_consumer_lag",
        "signal_sync_assigned_partitions",
        "signal_sync_event_to_outcome_seconds",
        "signal_sync_rebalances_total",
        "signal_sync_rebalance_duration_seconds",
        "signal_sync_rebalancing",
        "signal_sync_commit_duration_seconds",
        "signal_sync_last_commit_timestamp_seconds",
        "signal_sync_build_info",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    for integration in INTEGRATIONS:
        assert value(metrics, "signal_sync_integration_paused", integration=integration) == 0
        assert value(metrics, "signal_sync_integration_fault", integration=integration) == 0
        assert value(metrics, "signal_sync_http_requests_in_flight", integration=integration) == 0
        assert value(metrics, "signal_sync_http_retries_total", integration=integration) == 0


def test_registries_are_per_instance() -> None:
    first, second = Metrics(INTEGRATIONS), Metrics(INTEGRATIONS)
    first.count_consumed("signal.events")
    assert value(first, "signal_sync_events_consumed_total", topic="signal.events") == 1
    assert value(second, "signal_sync_events_consumed_total", topic="signal.events") is None


def test_outcomes_counted_by_integration_status_reason_and_dead_letters_for_failed_and_invalid() -> None:
    metrics = Metrics(INTEGRATIONS)
    for item in (
        outcome("mautic-main", "delivered", None),
        outcome("mautic-main", "delivered", None),
        outcome("mautic-main", "dropped", "consent_denied"),
        outcome("mailgun-news", "failed", "http_401"),
        outcome("mailgun-news", "invalid", "invalid_event"),
    ):
        metrics.observe_outcome(item, None)

    assert (
        value(
            metrics,
            "signal_sync_outcomes_total",
            integration="mautic-main",
            status="delivered",
            reason="none",
        )
        == 2
    )
    assert (
        value(
            metrics,
            "signal_sync_outcomes_total",
            integration="mautic-main",
            status="dropped",
            reason="consent_denied",
        )
        == 1
    )
    assert (
        value(metrics, "signal_sync_dead_letters_total", integration="mailgun-news", reason="http_401") == 1
    )
    assert (
        value(metrics, "signal_sync_dead_letters_total", integration="mailgun-news", reason="invalid_event")
        == 1
    )
    dead = [k for k in samples(metrics) if k[0] == "signal_sync_dead_letters_total"]
    assert len(dead) == 2, "drops and deliveries never become dead letters"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (201, "2xx"), (401, "4xx"), (429, "4xx"), (503, "5xx"), (None, "error")],
)
def test_status_class(status: int | None, expected: str) -> None:
    assert status_class(status) == expected


def test_delivery_hooks_feed_latency_in_flight_batch_retries_and_fault() -> None:
    metrics = Metrics(INTEGRATIONS)
    metrics.request_started("mautic-main", 1)
    assert value(metrics, "signal_sync_http_requests_in_flight", integration="mautic-main") == 1
    metrics.request_finished("mautic-main", 503, 0.02)
    metrics.retry_started("mautic-main")
    metrics.request_started("mautic-main", 1)
    metrics.request_finished("mautic-main", 201, 0.3)
    metrics.request_started("mautic-main", 1)
    metrics.request_finished("mautic-main", None, 5.0)

    assert value(metrics, "signal_sync_http_requests_in_flight", integration="mautic-main") == 0
    count = "signal_sync_http_request_duration_seconds_count"
    assert value(metrics, count, integration="mautic-main", status_class="5xx") == 1
    assert value(metrics, count, integration="mautic-main", status_class="2xx") == 1
    assert value(metrics, count, integration="mautic-main", status_class="error") == 1
    bucket = "signal_sync_http_request_duration_seconds_bucket"
    assert value(metrics, bucket, integration="mautic-main", status_class="2xx", le="0.25") == 0
    assert value(metrics, bucket, integration="mautic-main", status_class="2xx", le="0.5") == 1
    assert value(metrics, "signal_sync_http_retries_total", integration="mautic-main") == 1
    assert value(metrics, "signal_sync_delivery_batch_size_count", integration="mautic-main") == 3
    assert value(metrics, "signal_sync_delivery_batch_size_sum", integration="mautic-main") == 3

    fault = DeliveryResult("failed", 401, None, 1, "http_401", "Unauthorized", "hint", fault=True)
    failed = DeliveryResult("failed", 400, None, 1, "http_400", "bad", None)
    delivered = DeliveryResult("delivered", 200, False, 1, None, None, None)
    metrics.delivery_finished("mautic-main", fault)
    assert value(metrics, "signal_sync_integration_fault", integration="mautic-main") == 1
    metrics.delivery_finished("mautic-main", failed)
    assert value(metrics, "signal_sync_integration_fault", integration="mautic-main") == 1
    metrics.delivery_finished("mautic-main", delivered)
    assert value(metrics, "signal_sync_integration_fault", integration="mautic-main") == 0


def test_lag_samples_are_replaced_not_accumulated() -> None:
    metrics = Metrics(INTEGRATIONS)
    metrics.set_lag({("signal.events", 0): 5, ("signal.events", 1): 0})
    assert value(metrics, "signal_sync_consumer_lag", topic="signal.events", partition="0") == 5
    assert value(metrics, "signal_sync_assigned_partitions") == 2
    metrics.set_lag({("signal.events", 1): 2})
    assert value(metrics, "signal_sync_consumer_lag", topic="signal.events", partition="0") is None
    assert value(metrics, "signal_sync_consumer_lag", topic="signal.events", partition="1") == 2
    assert value(metrics, "signal_sync_assigned_partitions") == 1


class FakeConsumer:
    def __init__(self, assigned: set[TP], ends: dict[TP, int], positions: dict[TP, int | None]) -> None:
        self._assigned, self._ends, self._positions = assigned, ends, positions

    def assignment(self) -> set[TP]:
        return self._assigned

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self._ends[tp] for tp in tps if tp in self._ends}

    async def position(self, tp: TP) -> int | None:
        return self._positions.get(tp)


async def test_read_lag_is_end_minus_position_for_agent_topics_only() -> None:
    src0, src1, contacts0 = TP("signal.events", 0), TP("signal.events", 1), TP("app-contacts", 0)
    changelog = TP("app-identities-changelog", 0)
    consumer = FakeConsumer(
        {src0, src1, contacts0, changelog},
        {src0: 10, src1: 4, contacts0: 7, changelog: 99},
        {src0: 7, src1: None, contacts0: 7, changelog: 0},
    )
    app = SimpleNamespace(consumer=consumer)
    lags = await read_lag(app, {"signal.events", "app-contacts"})
    assert lags == {("signal.events", 0): 3, ("app-contacts", 0): 0}, (
        "unknown positions and changelogs left out"
    )
    reader = SimpleNamespace(topic="signal.events", position={0: 9, 1: 1}.get)
    lags = await read_lag(app, {"signal.events", "app-contacts"}, reader)
    assert lags == {("signal.events", 0): 1, ("signal.events", 1): 3, ("app-contacts", 0): 0}, (
        "the source's positions are the source reader's"
    )


def test_agent_topics_and_sensor_count_only_what_agents_read() -> None:
    app = SimpleNamespace(
        agents={
            "ingest": SimpleNamespace(channel=SimpleNamespace(topics=["signal.events"])),
            "deliver": SimpleNamespace(channel=SimpleNamespace(topics=["app-contacts"])),
        }
    )
    assert agent_topics(app) == {"signal.events", "app-contacts"}
    metrics = Metrics(INTEGRATIONS)
    sensor = ConsumedSensor(metrics, app)
    for tp in (TP("signal.events", 0), TP("signal.events", 3), TP("app-contacts", 1), TP("x-changelog", 0)):
        sensor.on_message_in(tp, 0, None)
    assert value(metrics, "signal_sync_events_consumed_total", topic="signal.events") == 2
    assert value(metrics, "signal_sync_events_consumed_total", topic="app-contacts") == 1
    assert value(metrics, "signal_sync_events_consumed_total", topic="x-changelog") is None


def test_paused_state_comes_from_engine_gates_when_present() -> None:
    runtime = SimpleNamespace(integrations={"a": None, "b": None})
    assert paused_integrations(runtime) == {"a": False, "b": False}
    runtime.gates = {"a": SimpleNamespace(state=SimpleNamespace(paused=True))}
    assert paused_integrations(runtime) == {"a": True, "b": False}
    metrics = Metrics(["a", "b"])
    metrics.set_paused(paused_integrations(runtime))
    assert value(metrics, "signal_sync_integration_paused", integration="a") == 1
    assert value(metrics, "signal_sync_integration_paused", integration="b") == 0


class Recorder(DeliveryHooks):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def request_started(self, integration_id: str, batch_size: int) -> None:
        self.calls.append(("started", integration_id, batch_size))

    def request_finished(self, integration_id: str, status: int | None, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("finished", integration_id, status))

    def retry_started(self, integration_id: str) -> None:
        self.calls.append(("retry", integration_id))

    def delivery_finished(self, integration_id: str, result: DeliveryResult) -> None:
        self.calls.append(("done", integration_id, result.status, result.attempts))


class Broken(DeliveryHooks):
    def request_started(self, integration_id: str, batch_size: int) -> None:
        raise RuntimeError("observer bug")


async def test_sender_reports_each_attempt_retry_and_result_to_hooks() -> None:
    """Against the sandbox Mautic on loopback: one 429, then the upsert succeeds."""
    faults = {"rate_limit": {"burst": 1, "retry_after_s": 0}}
    with start_in_thread(mautic.create_app(username="signal", password="pw-1234", faults=faults)) as server:
        integration = MauticIntegration(**{**MAUTIC_RAW, "base_url": server.url, "api_password": "pw-1234"})
        sender = Sender(DeliverySettings(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02))
        recorder = Recorder()
        sender.hooks.extend([Broken(), recorder])
        upsert = Request(
            "POST",
            f"{server.url}/api/contacts/new",
            {"Authorization": basic_auth("signal", "pw-1234"), "Content-Type": "application/json"},
            json={"email": "hook@example.com"},
        )
        try:
            result = await sender.deliver(integration, upsert)
        finally:
            await sender.close()
    assert result.status == "delivered" and result.attempts == 2
    assert recorder.calls == [
        ("started", "mautic-main", 1),
        ("finished", "mautic-main", 429),
        ("retry", "mautic-main"),
        ("started", "mautic-main", 1),
        ("finished", "mautic-main", 201),
        ("done", "mautic-main", "delivered", 2),
    ], "a broken hook is logged and skipped, the others still run"


# --- build info, event-to-outcome latency, rebalances and commits ------------------------------


def test_build_info_names_the_running_versions() -> None:
    import platform
    from importlib import metadata

    metrics = Metrics(INTEGRATIONS)
    labels = {
        "version": metadata.version("signal-sync"),
        "python": platform.python_version(),
        "faust": metadata.version("faust-streaming"),
    }
    assert build_info() == labels
    assert value(metrics, "signal_sync_build_info", **labels) == 1
    assert version_line() == (
        f"signal-sync {labels['version']} (Python {labels['python']}, faust-streaming {labels['faust']})"
    )


def test_event_to_outcome_latency_by_integration_and_status_only() -> None:
    metrics = Metrics(INTEGRATIONS)
    metrics.observe_outcome({**outcome("mautic-main", "delivered", None), "latency_ms": 180.0}, None)
    metrics.observe_outcome({**outcome("mautic-main", "delivered", None), "latency_ms": 4200.0}, None)
    metrics.observe_outcome({**outcome("mautic-main", "failed", "http_400"), "latency_ms": -3.0}, None)
    metrics.observe_outcome({**outcome("mailgun-news", "dropped", "no_email"), "latency_ms": None}, None)
    name = "signal_sync_event_to_outcome_seconds"
    assert value(metrics, f"{name}_count", integration="mautic-main", status="delivered") == 2
    assert value(metrics, f"{name}_sum", integration="mautic-main", status="delivered") == pytest.approx(4.38)
    assert value(metrics, f"{name}_bucket", integration="mautic-main", status="delivered", le="0.25") == 1
    assert value(metrics, f"{name}_bucket", integration="mautic-main", status="delivered", le="5.0") == 2
    assert value(metrics, f"{name}_sum", integration="mautic-main", status="failed") == 0, "clock skew: 0"
    assert value(metrics, f"{name}_count", integration="mailgun-news", status="dropped") is None
    labels = {key for (n, ls) in samples(metrics) if n.startswith(name) for key, _ in ls if key != "le"}
    assert labels == {"integration", "status"}, "no reason, message or contact label"


OUTCOME_FAMILIES = (
    "signal_sync_outcomes",
    "signal_sync_operations",
    "signal_sync_dead_letters",
    "signal_sync_event_to_outcome_seconds",
)
generated_outcomes = st.lists(
    st.fixed_dictionaries(
        {
            "integration": st.sampled_from(INTEGRATIONS),
            "status": st.sampled_from(["delivered", "dropped", "failed", "invalid", "skipped"]),
            "reason": st.sampled_from([None, "http_400", "no_email", "consent_denied"]),
            "operation": st.sampled_from([None, "upsert", "erase"]),
            "latency_ms": st.one_of(
                st.none(),
                st.sampled_from(EVENT_LATENCY_BUCKETS).map(lambda bound: bound * 1000),  # on a bound
                st.floats(-1000, 5_000_000, allow_nan=False),
                st.integers(-5, 4_000_000),
            ),
        }
    ),
    max_size=40,
)


@given(generated_outcomes)
def test_outcome_metrics_read_as_prometheus_clients_own_counters_and_histogram_would(
    items: list[dict[str, Any]],
) -> None:
    """The outcome families are counted in plain dicts (``OutcomeCounts``); the same outcomes fed to
    the client library's own ``Counter`` and ``Histogram`` expose the same samples."""
    metrics = Metrics(INTEGRATIONS)
    reference = CollectorRegistry()
    outcomes = Counter("signal_sync_outcomes", "-", ["integration", "status", "reason"], registry=reference)
    operations = Counter(
        "signal_sync_operations", "-", ["integration", "operation", "status"], registry=reference
    )
    dead_letters = Counter("signal_sync_dead_letters", "-", ["integration", "reason"], registry=reference)
    latency = Histogram(
        "signal_sync_event_to_outcome_seconds",
        "-",
        ["integration", "status"],
        buckets=EVENT_LATENCY_BUCKETS,
        registry=reference,
    )
    for item in items:
        metrics.observe_outcome(item, None)
        reason = item["reason"] or "none"
        outcomes.labels(item["integration"], item["status"], reason).inc()
        if item["operation"] is not None:
            operations.labels(item["integration"], item["operation"], item["status"]).inc()
        if item["status"] in ("failed", "invalid"):
            dead_letters.labels(item["integration"], reason).inc()
        if item["latency_ms"] is not None:
            latency.labels(item["integration"], item["status"]).observe(max(0.0, item["latency_ms"] / 1000))

    counted, expected = metrics.render().decode(), generate_latest(reference).decode()
    for family in OUTCOME_FAMILIES:
        assert parsed(counted, family) == parsed(expected, family)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_group_sensor_counts_rebalances_and_times_them_with_recovery() -> None:
    metrics, clock = Metrics(INTEGRATIONS), Clock()
    sensor = GroupSensor(metrics, clock)
    state = sensor.on_rebalance_start(None)
    assert value(metrics, "signal_sync_rebalancing") == 1
    assert value(metrics, "signal_sync_rebalances_total") == 1
    clock.now += 12.5
    sensor.on_rebalance_end(None, state)
    assert value(metrics, "signal_sync_rebalancing") == 0
    assert value(metrics, "signal_sync_rebalance_duration_seconds_sum") == 12.5
    assert value(metrics, "signal_sync_rebalance_duration_seconds_bucket", le="10.0") == 0
    assert value(metrics, "signal_sync_rebalance_duration_seconds_bucket", le="30.0") == 1


def test_group_sensor_times_commit_rounds() -> None:
    metrics, clock = Metrics(INTEGRATIONS), Clock()
    sensor = GroupSensor(metrics, clock)
    assert value(metrics, "signal_sync_last_commit_timestamp_seconds") == 0
    state = sensor.on_commit_initiated(None)
    clock.now += 0.02
    sensor.on_commit_completed(None, state)
    assert value(metrics, "signal_sync_commit_duration_seconds_count") == 1
    assert value(metrics, "signal_sync_commit_duration_seconds_sum") == pytest.approx(0.02)
    assert value(metrics, "signal_sync_last_commit_timestamp_seconds") > 1_700_000_000


async def test_faust_calls_the_group_sensor_through_its_sensor_delegate() -> None:
    """Faust hands each sensor its own state back (``SensorDelegate`` keys it by sensor)."""
    import faust

    app = faust.App("unit-group-sensor", autodiscover=False)
    metrics, clock = Metrics(INTEGRATIONS), Clock()
    app.sensors.add(GroupSensor(metrics, clock))
    state = app.sensors.on_commit_initiated(None)
    clock.now += 0.5
    app.sensors.on_commit_completed(None, state)
    app.on_rebalance_start()
    clock.now += 3
    app.on_rebalance_end()
    assert value(metrics, "signal_sync_commit_duration_seconds_sum") == pytest.approx(0.5)
    assert value(metrics, "signal_sync_rebalance_duration_seconds_sum") == pytest.approx(3)
    assert value(metrics, "signal_sync_rebalances_total") == 1
