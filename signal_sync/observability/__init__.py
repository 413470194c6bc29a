"""Operational surface of the worker: metrics, health/readiness, logs, the event debugger.

Everything here attaches to a ``Runtime`` from the outside (outcome observers, delivery
hooks, a Faust sensor, web pages), so the agents and the delivery engine never import it.

    /metrics   Prometheus text format (``metrics``)
    /health    liveness: 200 while the event loop answers (``health``)
    /ready     readiness: partitions assigned, no integration in a config-level fault (``health``)
    /debugger  the last outcomes per integration, live (``debugger``)
"""

from __future__ import annotations

from signal_sync.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Attach every observability feature to a runtime before the worker starts."""
    from signal_sync.observability import debugger, health, logs, metrics

    metrics.install(runtime)
    health.install(runtime)
    logs.install(runtime)
    debugger.install(runtime)
