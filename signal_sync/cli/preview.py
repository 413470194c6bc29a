"""``signal-sync preview``: show the requests the worker would send, without network or Kafka."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from signal_sync.cli.options import ConfigOption
from signal_sync.config import load_settings
from signal_sync.errors import SignalSyncError
from signal_sync.preview import preview_lines


def register(app: typer.Typer) -> None:
    """Attach the subcommand to the CLI."""

    @app.command("preview")
    def preview(
        config: ConfigOption,
        events: Annotated[str, typer.Argument(help="JSONL file of events, or - for stdin.")] = "-",
    ) -> None:
        """Print one JSON line per (event, integration): send with the request, or drop with the reason."""
        settings = load_settings(config)
        if events != "-" and not Path(events).is_file():
            raise SignalSyncError(f"cannot read events file {events}: no such file")
        stream = sys.stdin.buffer if events == "-" else Path(events).open("rb")  # noqa: SIM115
        with stream:
            for line in preview_lines(settings, stream):
                sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.flush()
