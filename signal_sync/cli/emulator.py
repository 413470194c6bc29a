"""``signal-sync emulator``: placeholder, replaced by the sandbox work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("emulator")
    def emulator_command(kind: str) -> None:
        """Run a sandbox emulator."""
        raise typer.Exit(2)
