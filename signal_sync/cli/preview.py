"""``signal-sync preview``: show the requests the worker would send, without network or Kafka."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

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
        events: Annotated[
            str | None,
            typer.Argument(help="JSONL file of events, or - for stdin (default: -, none with --erasures)."),
        ] = None,
        erasures: Annotated[
            Path | None,
            typer.Option(
                "--erasures", help="JSONL file of erasure requests, previewed after the events (if any)."
            ),
        ] = None,
    ) -> None:
        """Print one JSON line per (event, integration): send with the request, or drop with the reason;
        then one per (erasure request, integration) with the calls the erasure makes."""
        settings = load_settings(config)
        if events is None:
            events = "" if erasures is not None else "-"
        if events not in ("", "-") and not Path(events).is_file():
            raise SignalSyncError(f"cannot read events file {events}: no such file")
        if erasures is not None and not erasures.is_file():
            raise SignalSyncError(f"cannot read erasures file {erasures}: no such file")
        requests = erasures.read_bytes().splitlines() if erasures is not None else []
        if events == "":
            stream: Any = contextlib.nullcontext(iter(()))
        else:
            stream = sys.stdin.buffer if events == "-" else Path(events).open("rb")  # noqa: SIM115
        with stream as lines:
            for line in preview_lines(settings, lines, requests):
                sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.flush()
