"""Options shared by subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path,
    typer.Option("-c", "--config", help="YAML config file.", envvar="SIGNAL_SYNC_CONFIG", show_default=False),
]
