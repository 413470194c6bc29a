"""``signal-sync topics create``: create the source, deliveries and dead-letter topics (and the
erasures topic, when configured)."""

from __future__ import annotations

from typing import Annotated

import typer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.streams.topics import create_topics, user_topics


def register(app: typer.Typer) -> None:
    """Attach the subcommand group to the CLI."""
    topics = typer.Typer(help="Manage the topics signal-sync reads and writes.", no_args_is_help=True)
    app.add_typer(topics, name="topics")

    @topics.command("create")
    def create(
        config: ConfigOption,
        partitions: Annotated[int, typer.Option(min=1, help="Partitions for new topics.")] = 12,
    ) -> None:
        """Create whichever of the configured topics do not exist yet."""
        settings = load_settings(config)
        created = create_topics(settings.kafka, partitions, settings.kafka.replication_factor)
        for name in user_topics(settings.kafka):
            typer.echo(f"{name}: {'created' if name in created else 'exists'}")
