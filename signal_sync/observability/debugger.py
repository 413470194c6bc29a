"""Event debugger page (placeholder until the debugger lands)."""

from __future__ import annotations

from signal_sync.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Register the debugger's observer and pages on the runtime."""
