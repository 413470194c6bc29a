"""Running the real worker as a subprocess and reading what it wrote: for the tests and the demo.

The worker is started exactly as a user starts it (``signal-sync worker -c FILE``), so
whatever uses this covers the CLI, config loading, topic checks and Faust start-up too.
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
from confluent_kafka import Consumer, Producer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerProcess:
    """A ``signal-sync worker`` child process with its log file."""

    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None
    """The worker's working directory (default: this process's); ``-m`` imports from it first."""
    _log: Any = field(default=None, repr=False)

    def start(self) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signal_sync.cli.main", "worker", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
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


def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    config: dict[str, str | int] | None = None,
) -> None:
    """Produce keyed records and fail unless every one is acknowledged. ``config``: more producer
    properties (``compression.type``, ...)."""
    errors: list[str] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **(config or {})}
    )
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
