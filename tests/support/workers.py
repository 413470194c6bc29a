"""Watching running workers over their web port: readiness, assignment, metrics."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from harness import WorkerProcess

from tests.support.config import write_config

SETTLE_TIMEOUT_S = 90


def web_port(config: Path) -> int:
    """The worker's web port, from its config file."""
    return int(yaml.safe_load(config.read_text())["worker"]["web_port"])


def worker_json(port: int, path: str) -> tuple[int, Any]:
    """Status and JSON body of the worker's own web endpoint; (0, None) while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return 0, None


def assigned(port: int) -> int:
    """Partitions this worker holds, per its /ready, once it is ready; else 0."""
    status, body = worker_json(port, "/ready")
    return body["partitions"]["count"] if status == 200 and body else 0


def worker_metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of one Prometheus metric whose labels include ``labels``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return float("nan")
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def settled(ports: list[int], workers: list[WorkerProcess], partitions: int) -> list[int]:
    """Each worker's partition count once all are ready, none rebalancing and all partitions held."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        for worker in workers:
            worker.assert_alive()
        answers = [worker_json(port, "/ready") for port in ports]
        bodies = [body for status, body in answers if status == 200 and body]
        if len(bodies) == len(ports):
            counts = [body["partitions"]["count"] for body in bodies]
            if (
                sum(counts) == partitions
                and all(counts)
                and not any(b["partitions"]["rebalancing"] for b in bodies)
            ):
                return counts
        time.sleep(0.2)
    raise AssertionError(f"the group did not settle within {SETTLE_TIMEOUT_S}s: {answers}")


def member_config(
    folder: Path, bootstrap: str, topics: dict[str, str], sandboxes: Any, **sections: dict[str, Any]
) -> Path:
    """The config of one worker of a group (``kafka={"app_id": ...}`` names it), its state folder
    and port its own; ``sections`` update the config's sections."""
    crm, mg = sandboxes
    folder.mkdir()
    return write_config(
        folder / "config.yaml", bootstrap, topics, crm.url, mg.url, folder / "state", **sections
    )


def forgot_kept_state(worker: WorkerProcess) -> bool:
    """Whether the worker logged that it dropped partitions its state folder kept (rocksdb store)."""
    return "last held too long ago" in worker.log_path.read_text(encoding="utf-8", errors="replace")
