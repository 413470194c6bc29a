"""The worker process wrapper: Faust keeps our logging, and a stop is bounded by the grace period."""

from __future__ import annotations

import logging
import time

import faust
import pytest

from signal_sync.cli import worker as worker_cli
from signal_sync.cli.worker import EXIT_SHUTDOWN_TIMEOUT, Worker


def make_worker(grace: float) -> Worker:
    return Worker(faust.App("unit-worker", autodiscover=False), shutdown_grace_s=grace, quiet=True)


def test_no_spinner_and_no_extra_root_handlers() -> None:
    worker = make_worker(25)
    root = logging.getLogger()
    before = root.handlers[:], root.level
    worker.on_setup_root_logger(root, logging.WARNING)
    assert worker.spinner is None
    assert (root.handlers, root.level) == before


def test_stop_past_the_grace_period_exits_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(worker_cli.os, "_exit", exits.append)
    worker = make_worker(0.05)
    worker.arm_shutdown_deadline()
    worker.arm_shutdown_deadline()  # a second signal does not start a second clock
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [EXIT_SHUTDOWN_TIMEOUT]


def test_no_exit_before_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(worker_cli.os, "_exit", exits.append)
    worker = make_worker(30)
    worker.arm_shutdown_deadline()
    assert worker._deadline is not None and worker._deadline.daemon
    worker._deadline.cancel()
    assert exits == []
