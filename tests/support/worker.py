"""Running the real worker as a subprocess and reading what it wrote, for integration tests.

The worker is started exactly as a user starts it (``signal-sync worker -c FILE``), so
these tests cover the CLI, config loading, topic checks and Faust start-up as well.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, Producer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(
    path: Path,
    bootstrap: str,
    topics: dict[str, str],
    mautic_url: str,
    mailgun_url: str,
    state_dir: Path,
    **overrides: Any,
) -> Path:
    """A worker config for one test: unique app id and topics, emulator URLs, fast retries."""
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "app_id": f"it-{uuid.uuid4().hex[:8]}",
            "source_topic": topics["source"],
            "deliveries_topic": topics["deliveries"],
            "dead_letter_topic": topics["dlq"],
        },
        "worker": {"state_dir": str(state_dir), "web_port": free_port(), "commit_interval_s": 0.5},
        "delivery": {"timeout_s": 5, "max_attempts": 4, "backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        "integrations": [
            {
                "id": "mautic-main",
                "type": "mautic",
                "base_url": mautic_url,
                "api_user": "signal",
                "api_password": "sandbox-password",
            },
            {
                "id": "mailgun-news",
                "type": "mailgun",
                "base_url": mailgun_url,
                "api_key": "key-sandbox",
                "list_address": "newsletter@mg.example.com",
            },
        ],
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class WorkerProcess:
    """A ``signal-sync worker`` child process with its log file."""

    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signal_sync.cli.main", "worker", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce keyed records and fail unless every one is acknowledged."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=value,
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0, "records not flushed"
    assert not errors, errors[:3]


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    check: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Read a topic from the start until ``done(records)`` or the deadline; returns decoded values."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(records):
            message = consumer.poll(0.5)
            check()
            if message is None or message.error():
                continue
            value = orjson.loads(message.value())
            value["_key"] = message.key()
            records.append(value)
    finally:
        consumer.close()
    return records
