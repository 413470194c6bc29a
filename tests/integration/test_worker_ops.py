"""The worker's operational surface on a real broker: /health, /ready, /metrics and JSON logs.

The worker runs as users run it (``signal-sync worker -c FILE``). Values served over HTTP are
checked against what the worker really wrote to the deliveries topic, then Mautic is made
to answer 401: ``/health`` must name the integration, the status and the seed's hint, the
metrics must show the fault and the pause, and readiness must stay 200 throughout (a
destination fault is the same on every pod: it must never take them all out of service),
until Mautic accepts deliveries again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml
from harness import WorkerProcess, consume_until, produce
from prometheus_client.parser import text_string_to_metric_families

from signal_sync.destinations.mautic import HINTS as MAUTIC_HINTS
from signal_sync.observability.health import (
    KAFKA_PROBE_INTERVAL_S,
    KAFKA_PROBE_TIMEOUT_S,
    KAFKA_STALE_AFTER_S,
)
from tests.support.config import write_config

pytestmark = pytest.mark.integration

T = TypeVar("T")
SECRETS = ("sandbox-password", "key-sandbox")


def event(n: int, *, email: str | None, consent: bool = True) -> bytes:
    traits: dict[str, Any] = {"first_name": "Ops", "last_name": f"Person{n}"}
    if email:
        traits["email"] = email
    return json.dumps(
        {
            "type": "identify",
            "messageId": f"ops-{n}",
            "anonymousId": f"anon-ops-{n}",
            "timestamp": "2026-06-06T14:40:00Z",
            "traits": traits,
            "context": {"ip": "203.0.113.7", "consent": {"canonical": {"marketing": consent}}},
        }
    ).encode()


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body; status 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # loopback worker
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError) as exc:
        return 0, str(exc).encode()


def http_post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        assert reply.status == 200


def poll(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float, check: Callable[[], None]) -> T:
    """Call ``fetch`` until ``ok(value)`` or the deadline; returns the last value either way."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not ok(value) and time.monotonic() < deadline:
        check()
        time.sleep(0.25)
        value = fetch()
    return value


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    status, body = http_get(f"{base}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_sum(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def counted(samples: dict, name: str, keys: tuple[str, ...]) -> Counter:
    """Non-zero samples of a counter, keyed by the values of ``keys``."""
    return Counter({tuple(dict(ls)[k] for k in keys): v for (n, ls), v in samples.items() if n == name and v})


def written_counts(outcomes: list[dict[str, Any]]) -> tuple[Counter, Counter]:
    """What the outcome and dead-letter counters must say about these outcomes."""
    by_outcome = Counter((o["integration"], o["status"], o["reason"] or "none") for o in outcomes)
    dead = Counter((o["integration"], o["reason"]) for o in outcomes if o["status"] in ("failed", "invalid"))
    return by_outcome, dead


def counters_match(samples: dict, outcomes: list[dict[str, Any]]) -> bool:
    by_outcome, dead = written_counts(outcomes)
    return (
        counted(samples, "signal_sync_outcomes_total", ("integration", "status", "reason")) == by_outcome
        and counted(samples, "signal_sync_dead_letters_total", ("integration", "reason")) == dead
    )


def test_health_ready_metrics_and_logs(kafka_bootstrap, pipeline_topics, sandboxes, worker, worker_config):
    crm, _mg = sandboxes
    port = yaml.safe_load(worker_config.read_text())["worker"]["web_port"]
    base = f"http://127.0.0.1:{port}"
    alive = worker.assert_alive

    # Liveness answers while the worker is still joining the group.
    health = poll(lambda: http_get(f"{base}/health")[0], lambda s: s == 200, 60, alive)
    assert health == 200

    emails = [f"ops.person{n}@example.com" for n in range(4)]
    records = [(f"anon-ops-{n}".encode(), event(n, email=emails[n])) for n in range(4)]
    records.append((b"anon-ops-4", event(4, email=None)))  # no_email for both integrations
    records.append((b"bad", b"{not json"))  # invalid: one outcome + dead letter per integration
    produce(kafka_bootstrap, pipeline_topics["source"], records)
    expected = 2 * len(records)
    outcomes = consume_until(
        kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= expected, 180, alive
    )
    assert len(outcomes) == expected, worker.log_tail()

    status, body = poll(lambda: http_get(f"{base}/ready"), lambda r: r[0] == 200, 60, alive)
    assert status == 200, body
    ready = json.loads(body)
    assert ready["ready"] is True and ready["reasons"] == [] and ready["started"] is True
    assert ready["kafka"]["reachable"] is True and ready["kafka"]["error"] is None
    assert ready["partitions"]["count"] >= 4
    status, body = http_get(f"{base}/health")
    assert status == 200
    assert json.loads(body)["integrations"] == {
        "mautic-main": {"status": "ok", "paused": False},
        "mailgun-news": {"status": "ok", "paused": False},
    }

    # Outcome and dead-letter counters equal what was written, label for label.
    samples = poll(lambda: scrape(base), lambda got: counters_match(got, outcomes), 30, alive)
    by_outcome, dead = written_counts(outcomes)
    assert counted(samples, "signal_sync_outcomes_total", ("integration", "status", "reason")) == by_outcome
    assert counted(samples, "signal_sync_dead_letters_total", ("integration", "reason")) == dead
    assert dead == {("mautic-main", "invalid_event"): 1, ("mailgun-news", "invalid_event"): 1}
    source = pipeline_topics["source"]
    assert metric_sum(samples, "signal_sync_events_consumed_total", topic=source) == len(records)
    duration_count = "signal_sync_http_request_duration_seconds_count"
    for integration in ("mautic-main", "mailgun-news"):
        delivered = by_outcome[(integration, "delivered", "none")]
        assert delivered == 4
        # Deliveries may share bulk requests: every request succeeded and together they carried each
        # delivered contact once.
        requests = metric_sum(samples, duration_count, integration=integration)
        assert 1 <= requests <= delivered
        assert metric_sum(samples, duration_count, integration=integration, status_class="2xx") == requests
        assert (
            metric_sum(samples, "signal_sync_delivery_batch_size_count", integration=integration) == requests
        )
        assert (
            metric_sum(samples, "signal_sync_delivery_batch_size_sum", integration=integration) == delivered
        )
        for gauge in (
            "http_requests_in_flight",
            "integration_paused",
            "integration_fault",
            "http_retries_total",
        ):
            assert metric_sum(samples, f"signal_sync_{gauge}", integration=integration) == 0, gauge
    # Every source partition is reported, and once everything is read the lag is zero.
    samples = poll(
        lambda: scrape(base),
        lambda got: (
            metric_sum(got, "signal_sync_consumer_lag", topic=source) == 0
            and sum(1 for (n, ls) in got if n == "signal_sync_consumer_lag" and ("topic", source) in ls) == 4
        ),
        30,
        alive,
    )
    lags = {dict(ls)["partition"]: v for (n, ls), v in samples.items() if n == "signal_sync_consumer_lag"}
    source_lags = {
        dict(ls)["partition"]: v
        for (n, ls), v in samples.items()
        if n == "signal_sync_consumer_lag" and dict(ls)["topic"] == source
    }
    assert source_lags == {"0": 0, "1": 0, "2": 0, "3": 0}
    assert len(lags) >= 4 and metric_sum(samples, "signal_sync_assigned_partitions") >= 4

    # Mautic starts answering 401: the next delivery faults it; /health names it with the hint.
    http_post_json(f"{crm.url}/_sandbox/faults", {"force_status": 401})
    produce(kafka_bootstrap, source, [(b"anon-ops-5", event(5, email="ops5@example.com"))])

    def mautic_state() -> dict[str, Any]:
        status, body = http_get(f"{base}/health")
        assert status == 200, body
        return json.loads(body)["integrations"]

    states = poll(mautic_state, lambda got: got["mautic-main"]["status"] == "fault", 90, alive)
    fault = states["mautic-main"]
    assert fault["status"] == "fault" and fault["http_status"] == 401 and fault["hint"] == MAUTIC_HINTS[401]
    assert "mautic-main" in fault["message"] and MAUTIC_HINTS[401] in fault["message"]
    assert states["mailgun-news"] == {"status": "ok", "paused": False}
    assert not any(secret in json.dumps(states) for secret in SECRETS)
    # ...and the worker stays ready: the fault is the destination's, not this pod's.
    status, body = http_get(f"{base}/ready")
    assert status == 200, body
    assert json.loads(body)["ready"] is True
    # The delivery engine holds Mautic's events back (and probes) while it is faulted.
    samples = poll(
        lambda: scrape(base),
        lambda got: metric_sum(got, "signal_sync_integration_paused", integration="mautic-main") == 1,
        30,
        alive,
    )
    assert metric_sum(samples, "signal_sync_integration_paused", integration="mautic-main") == 1
    assert metric_sum(samples, "signal_sync_integration_paused", integration="mailgun-news") == 0
    assert metric_sum(samples, "signal_sync_integration_fault", integration="mautic-main") == 1
    assert metric_sum(samples, duration_count, integration="mautic-main", status_class="4xx") >= 1
    status, body = http_get(f"{base}/ready")
    assert status == 200, f"paused and faulted, the worker is still ready: {body!r}"

    # Fixed: the next delivered request (the engine's probe of the held event 5) clears the fault.
    http_post_json(f"{crm.url}/_sandbox/faults", {})
    produce(kafka_bootstrap, source, [(b"anon-ops-6", event(6, email="ops6@example.com"))])
    states = poll(mautic_state, lambda got: got["mautic-main"]["status"] == "ok", 90, alive)
    assert states["mautic-main"] == {"status": "ok", "paused": False}
    expected += 4
    outcomes = consume_until(
        kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= expected, 120, alive
    )
    assert len(outcomes) == expected
    samples = poll(lambda: scrape(base), lambda got: counters_match(got, outcomes), 30, alive)
    assert counters_match(samples, outcomes)
    assert metric_sum(samples, "signal_sync_integration_fault", integration="mautic-main") == 0
    assert metric_sum(samples, "signal_sync_integration_paused", integration="mautic-main") == 0
    # The event-to-outcome histogram counts every outcome, by integration and status.
    latency_count = "signal_sync_event_to_outcome_seconds_count"
    assert metric_sum(samples, latency_count) == len(outcomes)
    for integration in ("mautic-main", "mailgun-news"):
        delivered = sum(1 for o in outcomes if (o["integration"], o["status"]) == (integration, "delivered"))
        assert metric_sum(samples, latency_count, integration=integration, status="delivered") == delivered
    # Faust's rebalances and commits, one series each; and what is running.
    assert metric_sum(samples, "signal_sync_rebalances_total") >= 1
    assert metric_sum(samples, "signal_sync_rebalance_duration_seconds_count") >= 1
    assert metric_sum(samples, "signal_sync_commit_duration_seconds_count") >= 1
    assert metric_sum(samples, "signal_sync_last_commit_timestamp_seconds") > time.time() - 60
    (build,) = [dict(ls) for (n, ls) in samples if n == "signal_sync_build_info"]
    assert set(build) == {"version", "python", "faust"} and build["faust"] == "0.15.3"

    # SIGTERM: a clean exit well within worker.shutdown_grace_s (default 25 s).
    started = time.monotonic()
    code = worker.stop(timeout=40)
    assert code == 0, worker.log_tail()
    assert time.monotonic() - started < 25

    lines = [line for line in worker.log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line the process wrote is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    assert any(e["logger"].startswith(("faust", "mode", "aiokafka")) for e in entries), "Faust's logs too"
    faults = [e for e in entries if e.get("integration") == "mautic-main" and e["level"] == "ERROR"]
    assert faults and faults[0]["hint"] == MAUTIC_HINTS[401] and faults[0]["http_status"] == 401
    text = "\n".join(lines)
    assert "@example.com" not in text, "no plaintext email in logs by default"
    assert not any(secret in text for secret in SECRETS)


def test_the_kafka_probe_keeps_an_idle_worker_ready_past_the_stale_window(worker, worker_config):
    """Readiness needs a broker answer within KAFKA_STALE_AFTER_S; on a quiet topic only the
    worker's own probe gives one, so a worker that stays ready well past that window (and reports
    a recent success) proves the probe reaches the real broker."""
    base = f"http://127.0.0.1:{yaml.safe_load(worker_config.read_text())['worker']['web_port']}"
    alive = worker.assert_alive
    status, body = poll(lambda: http_get(f"{base}/ready"), lambda r: r[0] == 200, 120, alive)
    assert status == 200, body
    became_ready = time.monotonic()

    def ready_body() -> tuple[int, dict[str, Any]]:
        status, body = http_get(f"{base}/ready")
        return status, json.loads(body) if status in (200, 503) else {}

    past_window = KAFKA_STALE_AFTER_S + 2 * KAFKA_PROBE_INTERVAL_S
    while time.monotonic() - became_ready < past_window:
        status, body = ready_body()
        assert status == 200, body
        assert body["kafka"]["last_success_s_ago"] <= KAFKA_PROBE_INTERVAL_S + KAFKA_PROBE_TIMEOUT_S, body
        alive()
        time.sleep(1)  # sampling readiness over the window; each sample must hold on its own


def test_sigterm_exits_within_the_grace_period_while_a_request_hangs(
    tmp_path, kafka_bootstrap, pipeline_topics, sandboxes
):
    """``worker.shutdown_grace_s`` bounds the stop even when a destination never answers."""
    crm, mg = sandboxes
    grace = 3
    config = write_config(
        tmp_path / "grace.yaml",
        kafka_bootstrap,
        pipeline_topics,
        crm.url,
        mg.url,
        tmp_path / "state",
        worker={"shutdown_grace_s": grace},
        delivery={"timeout_s": 60, "max_attempts": 1},
    )
    base = f"http://127.0.0.1:{yaml.safe_load(config.read_text())['worker']['web_port']}"
    http_post_json(f"{crm.url}/_sandbox/faults", {"hang_rate": 1.0, "hang_seconds": 120})
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        status, body = poll(
            lambda: http_get(f"{base}/ready"), lambda r: r[0] == 200, 120, worker.assert_alive
        )
        assert status == 200, body
        produce(
            kafka_bootstrap, pipeline_topics["source"], [(b"anon-ops-7", event(7, email="ops7@example.com"))]
        )
        samples = poll(
            lambda: scrape(base),
            lambda got: (
                metric_sum(got, "signal_sync_http_requests_in_flight", integration="mautic-main") == 1
            ),
            60,
            worker.assert_alive,
        )
        assert metric_sum(samples, "signal_sync_http_requests_in_flight", integration="mautic-main") == 1

        started = time.monotonic()
        code = worker.stop(timeout=grace + 20)
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    assert elapsed < grace + 5, f"stop took {elapsed:.1f}s with a {grace}s grace period"
    assert code == 70, worker.log_tail()
    entries = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert any(e["level"] == "CRITICAL" and "shutdown_grace_s" in e["message"] for e in entries)
