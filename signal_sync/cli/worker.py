"""``signal-sync worker``: run the Faust worker until SIGTERM/SIGINT.

Logging is configured from ``worker.log_format`` before anything else happens, and the
Faust worker re-applies the same configuration, so every line the process writes (Faust's,
aiokafka's, ours) goes through one formatter. A stop (SIGTERM from Kubernetes, SIGINT) is
bounded by ``worker.shutdown_grace_s``: in-flight deliveries get that long to finish and
commit, then the process exits regardless. Offsets of unfinished events are not committed,
so they are delivered again after the restart (at-least-once).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import faust
import typer

from signal_sync import collector, observability
from signal_sync.agents import attach_all
from signal_sync.allocator import tune_allocator
from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.observability import logs
from signal_sync.runtime import create_runtime
from signal_sync.streams.internal import changelog_topics, ensure_internal_topics, written_topics
from signal_sync.streams.topics import check_topics, delete_retention_ms, max_message_bytes

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMEOUT = 70
"""Exit status when the grace period ran out (EX_SOFTWARE): the stop was not clean."""


class Worker(faust.Worker):
    """``faust.Worker`` with our logging (no spinner, no extra handlers) and a bounded stop."""

    def __init__(self, app: faust.App, *, shutdown_grace_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.spinner = None  # it would write progress characters between the JSON lines
        self.shutdown_grace_s = shutdown_grace_s
        self._deadline: threading.Timer | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Faust adds its spinner handler here; our logging config is already complete."""

    async def on_stop(self) -> None:
        self.arm_shutdown_deadline()
        await super().on_stop()

    def arm_shutdown_deadline(self) -> None:
        """Start the grace-period clock once; it runs in a thread so a stuck loop cannot stop it."""
        if self._deadline is not None:
            return
        log.info("stopping: in-flight work has %.0fs (worker.shutdown_grace_s)", self.shutdown_grace_s)
        self._deadline = threading.Timer(self.shutdown_grace_s, self._shutdown_timed_out)
        self._deadline.daemon = True
        self._deadline.start()

    def _shutdown_timed_out(self) -> None:
        log.critical(
            "shutdown did not finish within worker.shutdown_grace_s=%ss; exiting now "
            "(events whose offsets were not committed are delivered again after the restart)",
            self.shutdown_grace_s,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("worker")
    def worker(config: ConfigOption) -> None:
        """Consume events, deliver them, write outcomes. Fails at start on a bad config or missing topic."""
        settings = load_settings(config)
        logging_config = logs.configure(settings)
        tune_allocator()  # before the Kafka clients and RocksDB start their threads
        partitions = check_topics(settings.kafka)
        integration_ids = [i.id for i in settings.integrations]
        ensure_internal_topics(settings.kafka, integration_ids, partitions)
        limits = max_message_bytes(settings.kafka, written_topics(settings.kafka, integration_ids))
        kept = None
        if settings.worker.store == "rocksdb://":  # memory:// keeps nothing between starts
            kept = delete_retention_ms(settings.kafka, changelog_topics(settings.kafka))
        runtime = create_runtime(settings, partitions, limits, kept)
        runtime.outputs.connect()
        attach_all(runtime)
        observability.install(runtime)
        collector.install(runtime.app)
        Worker(
            runtime.app,
            loglevel=settings.worker.log_level,
            logging_config=logging_config,
            quiet=True,
            shutdown_grace_s=settings.worker.shutdown_grace_s,
        ).execute_from_commandline()
