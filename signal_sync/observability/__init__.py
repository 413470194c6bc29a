"""Operational surface of the worker: metrics, health/readiness, logs, the event debugger.

Everything here attaches to a ``Runtime`` from the outside (outcome observers, delivery
hooks, Faust sensors, web pages), so the agents and the delivery engine never import it.

    /metrics   Prometheus text format (``metrics``)
    /health    liveness: 200 while the event loop answers; integration states in the body (``health``)
    /ready     readiness: started (first assignment done) and Kafka answers (``health``)
    /debugger  the last outcomes per integration, live; only with ``debugger.enabled`` (``debugger``)
"""

from __future__ import annotations

from signal_sync.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Attach every observability feature to a runtime before the worker starts."""
    from signal_sync.observability import debugger, health, logs, metrics

    redactor = logs.redactor_for(runtime.settings)
    runtime.redact = logs.Redactor(redactor.secrets).text  # dead-letter headers: never an email
    metrics.install(runtime)
    health.install(runtime, redactor)
    logs.install(runtime)
    if runtime.settings.debugger.enabled:
        debugger.install(runtime)
