"""``signal-sync worker``: run the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import faust
import typer

from signal_sync import observability
from signal_sync.agents import attach_all
from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.runtime import create_runtime
from signal_sync.streams.topics import check_topics


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("worker")
    def worker(config: ConfigOption) -> None:
        """Consume events, deliver them, write outcomes. Fails at start on a bad config or missing topic."""
        settings = load_settings(config)
        partitions = check_topics(settings.kafka)
        runtime = create_runtime(settings, partitions)
        attach_all(runtime)
        observability.install(runtime)
        faust.Worker(runtime.app, loglevel=settings.worker.log_level, quiet=True).execute_from_commandline()
