"""Static group membership on the real broker: a worker restarted with its ``kafka.group_instance_id``
gets its partitions back without a rebalance of the group.

Two workers share a group, each with a name of its own (as the chart's StatefulSet names them). One
stops (SIGTERM) and starts again over its state folder: the other worker takes part in no rebalance
and keeps its partitions throughout, the restarted one holds the same number as before, and the
events produced afterwards are all delivered.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from harness import WorkerProcess, consume_until, produce

from tests.support.config import write_config

pytestmark = pytest.mark.integration

TIMEOUT_S = 90
PARTITIONS = 12  # the source topic's 4 and each integration's internal topic's 4


def web(config: Path) -> str:
    return f"http://127.0.0.1:{yaml.safe_load(config.read_text())['worker']['web_port']}"


def ready(url: str) -> dict[str, Any] | None:
    """The worker's /ready body while it is ready, else None."""
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=5) as reply:  # loopback worker
            return json.loads(reply.read())
    except (urllib.error.URLError, OSError):
        return None


def rebalances(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # loopback worker
        text = reply.read().decode()
    (value,) = re.findall(r"^signal_sync_rebalances_total (\S+)$", text, re.MULTILINE)
    return float(value)


def settled(urls: list[str], workers: list[WorkerProcess]) -> list[int]:
    """Each worker's partition count once all are ready, none rebalancing and all partitions held."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for worker in workers:
            worker.assert_alive()
        bodies = [ready(url) for url in urls]
        if all(bodies):
            counts = [b["partitions"]["count"] for b in bodies]  # type: ignore[index]
            if (
                sum(counts) == PARTITIONS
                and all(counts)
                and not any(b["partitions"]["rebalancing"] for b in bodies)
            ):  # type: ignore[index]
                return counts
        time.sleep(0.2)
    raise AssertionError(f"the group did not settle within {TIMEOUT_S}s: {[ready(u) for u in urls]}")


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
    crm, mg = sandboxes
    app_id = f"it-static-{time.monotonic_ns() % 10**8}"

    def config(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        return write_config(
            folder / "config.yaml",
            kafka_bootstrap,
            pipeline_topics,
            crm.url,
            mg.url,
            folder / "state",
            kafka={"app_id": app_id, "group_instance_id": f"{app_id}-{name}"},
        )

    configs = {name: config(name) for name in ("a", "b")}
    urls = [web(configs["a"]), web(configs["b"])]
    a = WorkerProcess(configs["a"], tmp_path / "a.log").start()
    b = WorkerProcess(configs["b"], tmp_path / "b.log").start()
    try:
        before = settled(urls, [a, b])
        b_rebalances = rebalances(urls[1])
        assert a.stop() == 0
        a = WorkerProcess(configs["a"], tmp_path / "a-again.log").start()
        after = settled(urls, [a, b])
        produce(kafka_bootstrap, pipeline_topics["source"], [record(n) for n in range(20)])
        outcomes = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 40, TIMEOUT_S
        )
        # the worker that stayed took part in no rebalance: its partitions never moved
        assert rebalances(urls[1]) == b_rebalances
        assert after == before
        assert sorted(o["status"] for o in outcomes) == ["delivered"] * 40
    finally:
        for worker in (a, b):
            code = worker.stop()
            print(f"worker exit code {code}; log tail:\n{worker.log_tail(30)}")
