"""The ``signal-sync`` command: one Typer app, one module per subcommand.

Each subcommand module exposes ``register(app)``; this module only wires them and
turns project errors into ``ErrorType: message`` plus a non-zero exit, so user
mistakes never end in a traceback.
"""

from __future__ import annotations

import sys

import typer

from signal_sync.cli import (
    check_config,
    emulator,
    erase,
    preview,
    produce,
    replay_dlq,
    test_connection,
    topics,
    worker,
)
from signal_sync.errors import SignalSyncError
from signal_sync.observability.build import version_line

app = typer.Typer(
    name="signal-sync",
    help="Sync analytics events from Kafka into Mautic and Mailgun.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def show_version(value: bool) -> None:
    """``--version``: print what is installed and exit before any subcommand runs."""
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=show_version,
        is_eager=True,
        help="Print signal-sync's version (and Python's and faust-streaming's) and exit.",
    ),
) -> None:
    """Sync analytics events from Kafka into Mautic and Mailgun."""


for module in (worker, preview, check_config, test_connection, produce, erase, replay_dlq, topics, emulator):
    module.register(app)


def main() -> None:
    """Console-script entry point: project errors print ``ErrorType: message`` and exit 2."""
    try:
        app()
    except SignalSyncError as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
