"""Watching running workers over their web port: readiness, assignment, metrics."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from harness import WorkerProcess

from tests.support.config import write_config

SETTLE_TIMEOUT_S = 90


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


def settled(urls: list[str], workers: list[WorkerProcess], partitions: int) -> list[int]:
    """Each worker's partition count once all are ready, none rebalancing and all partitions held."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        for worker in workers:
            worker.assert_alive()
        bodies = [body for url in urls if (body := ready(url)) is not None]
        if len(bodies) == len(urls):
            counts = [body["partitions"]["count"] for body in bodies]
            if (
                sum(counts) == partitions
                and all(counts)
                and not any(b["partitions"]["rebalancing"] for b in bodies)
            ):
                return counts
        time.sleep(0.2)
    raise AssertionError(f"the group did not settle within {SETTLE_TIMEOUT_S}s: {[ready(u) for u in urls]}")


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
