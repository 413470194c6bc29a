"""Faust agents: thin loops that hand each record to plain async functions."""

from __future__ import annotations

from signal_sync.agents import deliver, erase, ingest, segment_start
from signal_sync.runtime import Runtime


def attach_all(runtime: Runtime) -> None:
    """Register every agent on the runtime's app."""
    ingest.attach(runtime)
    deliver.attach(runtime)
    erase.attach(runtime)
    segment_start.attach(runtime)
