"""Restart-to-ready: a worker stopped after the backlog, started again over its tables.

Two restarts of the same worker config, one after the other, after the drained run's worker
stopped cleanly (its offsets committed):

* ``kept_state``: the same ``worker.state_dir`` (a container restart, or a pod whose volume
  survives): with ``rocksdb://`` recovery reads only the changelog written since the stop;
* ``lost_state``: the ``state_dir`` deleted first (a new pod on ``emptyDir``): recovery replays
  the tables' whole changelogs.

Each reports ``ready_s`` (process start to ``/ready`` answering 200: group joined, tables
recovered) and ``first_outcome_s`` (process start to the first outcome of ``probe`` events,
new contacts produced once the worker is ready), and the peak RSS of the restarted process.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml
from confluent_kafka import Consumer, TopicPartition
from harness import WorkerProcess
from workload import index_of

POLL_S = 0.05


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as reply:  # noqa: S310
            return reply.status == 200
    except OSError:
        return False


def outcome_ends(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` at its current end: where outcomes written from now on start."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
        for p in partitions
    ]


def restart_once(
    config: Path,
    log_path: Path,
    bootstrap: str,
    topics: dict[str, str],
    probe: Sequence[tuple[bytes, bytes]],
    produce: Callable[[Sequence[tuple[bytes, bytes]]], Any],
    first_probe_index: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Start the worker, time it to ``/ready`` and to the first outcome of ``probe``, stop it."""
    port = int(yaml.safe_load(config.read_text())["worker"]["web_port"])
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-restart", "enable.auto.commit": False}
    )
    consumer.assign(outcome_ends(consumer, topics["outcomes"]))
    process = WorkerProcess(config, log_path)
    started = time.monotonic()
    process.start()
    assert process.proc is not None
    watched = psutil.Process(process.proc.pid)
    peak = 0
    ready_s = first_s = None
    try:
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            process.assert_alive()
            peak = max(peak, watched.memory_info().rss)
            if ready(port):
                ready_s = time.monotonic() - started
                break
            time.sleep(POLL_S)
        if ready_s is not None:
            produce(probe)
            while first_s is None and time.monotonic() < deadline:
                process.assert_alive()
                peak = max(peak, watched.memory_info().rss)
                for message in consumer.consume(num_messages=500, timeout=POLL_S):
                    if message.error() is None:
                        index = index_of(str(orjson.loads(message.value()).get("message_id")))
                        if index is not None and index >= first_probe_index:
                            first_s = time.monotonic() - started
                            break
    finally:
        process.stop(timeout=40)
        consumer.close()
    return {
        "ready_s": None if ready_s is None else round(ready_s, 2),
        "first_outcome_s": None if first_s is None else round(first_s, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
    }


def measure_restarts(
    configs: Sequence[Path],
    bootstrap: str,
    topics: dict[str, str],
    probes: Sequence[Sequence[tuple[bytes, bytes]]],
    first_probe_index: int,
    produce: Callable[[Sequence[tuple[bytes, bytes]]], Any],
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """The kept-state restart, then the lost-state one, of the first worker config (stopped)."""
    config = configs[0]
    state_dir = Path(yaml.safe_load(config.read_text())["worker"]["state_dir"])
    state_bytes = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    result: dict[str, Any] = {"state_dir_mb": round(state_bytes / 2**20, 1), "probe_events": len(probes[0])}
    kept_probe, lost_probe = probes
    result["kept_state"] = restart_once(
        config,
        config.with_suffix(".kept.log"),
        bootstrap,
        topics,
        kept_probe,
        produce,
        first_probe_index,
        timeout_s,
    )
    shutil.rmtree(state_dir)
    result["lost_state"] = restart_once(
        config,
        config.with_suffix(".lost.log"),
        bootstrap,
        topics,
        lost_probe,
        produce,
        first_probe_index + len(kept_probe),
        timeout_s,
    )
    return result
