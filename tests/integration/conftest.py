"""Fixtures for tests that run the real worker against the broker and the sandbox emulators, and for
tests that talk to the emulators over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
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
def serve() -> Iterator[Callable[[web.Application], RunningServer]]:
    """``serve(app)``: an emulator app on its own thread and port; every one is stopped after the test."""
    servers: list[RunningServer] = []

    def _serve(app: web.Application) -> RunningServer:
        server = start_in_thread(app)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


@pytest.fixture
def server(start: Callable[..., RunningServer]) -> RunningServer:
    """The emulator the test module's ``start`` fixture starts with its defaults."""
    return start()


@pytest.fixture
def http_timeout_s() -> float:
    """The ``http`` session's timeout for a whole call (a module with slower calls overrides it)."""
    return 5.0


@pytest.fixture
async def http(http_timeout_s: float) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for talking to the emulators."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=http_timeout_s)) as session:
        yield session


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
def write_worker_config(
    tmp_path: Path, kafka_bootstrap: str, pipeline_topics, sandboxes
) -> Callable[..., Path]:
    """``write_worker_config(**overrides)``: the test's worker config (its topics, the emulators), the
    sections in ``overrides`` updated."""
    crm, mg = sandboxes

    def write(**overrides: Any) -> Path:
        return write_config(
            tmp_path / "config.yaml",
            kafka_bootstrap,
            pipeline_topics,
            crm.url,
            mg.url,
            tmp_path / "state",
            **overrides,
        )

    return write


@pytest.fixture
def worker_config(write_worker_config: Callable[..., Path], worker_overrides) -> Path:
    return write_worker_config(**worker_overrides)


@pytest.fixture
def worker(tmp_path: Path, worker_config: Path) -> Iterator[WorkerProcess]:
    """A started ``signal-sync worker``; stopped (and its log shown on failure) after the test."""
    process = WorkerProcess(worker_config, tmp_path / "worker.log").start()
    yield process
    code = process.stop()
    print(f"worker exit code {code}; log tail:\n{process.log_tail(40)}")
