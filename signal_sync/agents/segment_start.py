"""The worker's start-up check of configured Mautic segments: warnings, never a failed start.

Once the app has started, a task reads each configured segment (``segment_check``) and logs a
warning with what to do for each one that is missing or unpublished. The start does not wait for
it: a Mautic that is down or slow must not keep the worker from starting (its events wait in the
integration's topic; the integration pauses and probes as usual). A segment that stays missing
fails the events that add to it (``segment_not_found`` plus a dead letter), which the warning
announces early.
"""

from __future__ import annotations

import logging

from signal_sync.config import MauticIntegration
from signal_sync.destinations.segment_check import check_segments
from signal_sync.runtime import Runtime

log = logging.getLogger(__name__)


def attach(runtime: Runtime) -> None:
    """Register the check when some Mautic integration has segments."""
    integrations = [
        integration
        for integration in runtime.settings.integrations
        if isinstance(integration, MauticIntegration) and integration.segments
    ]
    if not integrations:
        return

    @runtime.app.task
    async def check_configured_segments() -> None:
        for integration in integrations:
            try:
                problems = await check_segments(runtime.sender, integration)
            except Exception as exc:  # a check must never stop the worker
                log.warning(
                    "segments not checked: integration=%s error_type=%s",
                    integration.id,
                    type(exc).__name__,
                    extra={"integration": integration.id, "error_type": type(exc).__name__},
                )
                continue
            for problem in problems:
                log.warning(
                    "segment not usable: integration=%s segments.%s: %s",
                    integration.id,
                    problem.key,
                    problem.text,
                    extra={"integration": integration.id, "segment": problem.segment},
                )
