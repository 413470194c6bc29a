"""Operational surface of the worker: metrics, health/readiness, logs, the event debugger."""

from __future__ import annotations

from signal_sync.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Attach every observability feature to a runtime before the worker starts."""
    from signal_sync.observability import debugger

    debugger.install(runtime)
