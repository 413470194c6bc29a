"""Static group membership on the real broker: a worker restarted with its ``kafka.group_instance_id``
gets its partitions back without a rebalance of the group.

Two workers share a group, each with a name of its own (as the chart's StatefulSet names them). One
stops (SIGTERM) and starts again over its state folder: the other worker takes part in no rebalance
and keeps its partitions throughout, the restarted one holds the same number as before, and the
events produced afterwards are all delivered.

Two workers that share one name (a second deployment with the same app_id and pod names) cannot
both be members: one of them stops, naming the cause, rather than running on without partitions.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from harness import WorkerProcess, consume_until, produce

from tests.support.workers import assigned, forgot_kept_state, member_config, settled, web_port, worker_metric

pytestmark = pytest.mark.integration

TIMEOUT_S = 90
PARTITIONS = 12  # the source topic's 4 and each integration's internal topic's 4
REBALANCES = "signal_sync_rebalances_total"


def record(n: int) -> tuple[bytes, bytes]:
    body = {
        "type": "identify",
        "messageId": f"m-{n}",
        "anonymousId": f"anon-{n}",
        "traits": {"email": f"person{n}@example.com"},
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"consent": {"canonical": {"marketing": True}}},
    }
    return f"anon-{n}".encode(), orjson.dumps(body)


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes
):
    app_id = f"it-static-{time.monotonic_ns() % 10**8}"

    def config(name: str) -> Path:
        instance = f"{app_id}-{name}"
        kafka = {"app_id": app_id, "group_instance_id": instance}
        return member_config(tmp_path / name, kafka_bootstrap, pipeline_topics, sandboxes, kafka=kafka)

    configs = {name: config(name) for name in ("a", "b")}
    ports = [web_port(configs["a"]), web_port(configs["b"])]
    a = WorkerProcess(configs["a"], tmp_path / "a.log").start()
    b = WorkerProcess(configs["b"], tmp_path / "b.log").start()
    try:
        before = settled(ports, [a, b], PARTITIONS)
        b_rebalances = worker_metric(ports[1], REBALANCES)
        assert b_rebalances >= 1  # it joined the group: the counter is read
        assert a.stop() == 0
        a = WorkerProcess(configs["a"], tmp_path / "a-again.log").start()
        after = settled(ports, [a, b], PARTITIONS)
        produce(kafka_bootstrap, pipeline_topics["source"], [record(n) for n in range(20)])
        outcomes = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 40, TIMEOUT_S
        )
        # the worker that stayed took part in no rebalance: its partitions never moved
        assert worker_metric(ports[1], REBALANCES) == b_rebalances
        assert after == before
        assert sorted(o["status"] for o in outcomes) == ["delivered"] * 40
        assert not forgot_kept_state(a), "the restarted worker read its partitions anew"
    finally:
        for worker in (a, b):
            code = worker.stop()
            print(f"worker exit code {code}; log tail:\n{worker.log_tail(30)}")


def test_a_second_worker_with_the_same_instance_id_stops_one_of_them_loudly_and_the_other_delivers(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes
):
    app_id = f"it-static-twin-{time.monotonic_ns() % 10**8}"
    instance = f"{app_id}-0"

    def config(name: str) -> Path:
        kafka = {"app_id": app_id, "group_instance_id": instance}
        return member_config(tmp_path / name, kafka_bootstrap, pipeline_topics, sandboxes, kafka=kafka)

    configs = {name: config(name) for name in ("a", "b")}
    a = WorkerProcess(configs["a"], tmp_path / "a.log").start()
    b = WorkerProcess(configs["b"], tmp_path / "b.log").start()
    workers = {"a": a, "b": b}
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and all(w.proc.poll() is None for w in workers.values()):
            time.sleep(0.2)
        stopped = [name for name, w in workers.items() if w.proc.poll() is not None]
        assert len(stopped) == 1, f"exactly one of the twins stops: {stopped}"
        (gone,) = stopped
        (kept,) = set(workers) - {gone}
        assert workers[gone].proc.returncode != 0
        log = (tmp_path / f"{gone}.log").read_text()
        assert "GroupMembershipError" in log
        assert f"kafka.group_instance_id {instance!r}" in log

        port = web_port(configs[kept])
        assert settled([port], [workers[kept]], PARTITIONS) == [PARTITIONS]
        produce(kafka_bootstrap, pipeline_topics["source"], [record(n) for n in range(20)])
        outcomes = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 40, TIMEOUT_S
        )
        assert sorted(o["status"] for o in outcomes) == ["delivered"] * 40
        assert assigned(port) == PARTITIONS
    finally:
        for worker in workers.values():
            code = worker.stop()
            print(f"worker exit code {code}; log tail:\n{worker.log_tail(30)}")
