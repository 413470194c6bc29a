"""Fixtures for tests that run the real worker against the broker and the sandbox emulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import WorkerProcess

from signal_sync.sandbox import mailgun, mautic, start_in_thread
from signal_sync.sandbox.server import RunningServer
from tests.support.config import write_config


@pytest.fixture
def sandboxes() -> Iterator[tuple[RunningServer, RunningServer]]:
    """A fresh Mautic and Mailgun emulator with the credentials the test configs use."""
    with (
        start_in_thread(mautic.create_app(username="signal", password="sandbox-password")) as crm,
        start_in_thread(mailgun.create_app(api_key="key-sandbox")) as mg,
    ):
        yield crm, mg


@pytest.fixture
def pipeline_topics(kafka_topics) -> dict[str, str]:
    """Unique source (4 partitions), deliveries and dead-letter topics for one test."""
    return {
        "source": kafka_topics("it.events", partitions=4),
        "deliveries": kafka_topics("it.deliveries", partitions=4),
        "dlq": kafka_topics("it.dlq", partitions=1),
    }


@pytest.fixture
def worker_overrides() -> dict:
    """Config sections a test overrides (parametrize or override this fixture)."""
    return {}


@pytest.fixture
def worker_config(tmp_path: Path, kafka_bootstrap: str, pipeline_topics, sandboxes, worker_overrides) -> Path:
    crm, mg = sandboxes
    return write_config(
        tmp_path / "config.yaml",
        kafka_bootstrap,
        pipeline_topics,
        crm.url,
        mg.url,
        tmp_path / "state",
        **worker_overrides,
    )


@pytest.fixture
def worker(tmp_path: Path, worker_config: Path) -> Iterator[WorkerProcess]:
    """A started ``signal-sync worker``; stopped (and its log shown on failure) after the test."""
    process = WorkerProcess(worker_config, tmp_path / "worker.log").start()
    yield process
    code = process.stop()
    print(f"worker exit code {code}; log tail:\n{process.log_tail(40)}")
