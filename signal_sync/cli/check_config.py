"""``signal-sync check-config``: validate a config file and show what it resolves to (secrets hidden),
then, per integration, every destination field with its source (defaults included) and the events
it takes."""

from __future__ import annotations

import typer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.field_mapping import describe_lines


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("check-config")
    def check_config(config: ConfigOption) -> None:
        """Validate the config; exit non-zero naming the field when something is wrong."""
        settings = load_settings(config)
        typer.echo(settings.model_dump_json(indent=2))
        for integration in settings.integrations:
            typer.echo("\n".join(describe_lines(integration.field_mapping, integration.id)))
        typer.echo(f"OK: {len(settings.integrations)} integration(s)", err=True)
