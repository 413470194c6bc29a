"""Checking a Mautic integration's configured segments: each exists and is published.

``GET /api/segments/{id}`` answers unpublished segments too (``isPublished``), and an add to one
is refused with 403, so both are read here. ``test-connection`` reports every problem as a
``FAIL`` line; the worker logs them as warnings once at start, without waiting for the answers
(a Mautic that is down must not stop the worker from starting: its events wait for it anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from signal_sync.config import MauticIntegration
from signal_sync.destinations.classify import Verdict
from signal_sync.destinations.delivery import Attempt, Sender, error_text
from signal_sync.destinations.mautic_segments import (
    SEGMENT_FORBIDDEN,
    SEGMENT_NOT_FOUND,
    hint,
    published,
    segment_request,
)


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    """One configured segment signal-sync cannot add contacts to, or could not check."""

    key: str
    """The ``segments`` key it is configured under (an event name or ``*``)."""
    segment: int
    text: str

    def line(self, integration_id: str) -> str:
        return f"FAIL {integration_id}: segments.{self.key}: {self.text}"


def problem_of(attempt: Attempt, segment: int) -> str | None:
    """What is wrong with a segment, from the answer to ``GET /api/segments/{id}``; None: fine."""
    verdict, reason = attempt.classification.verdict, attempt.classification.reason
    if verdict is Verdict.DELIVERED:
        if published(attempt.body) is False:
            return (
                f"segment {segment} is unpublished: Mautic refuses to add contacts to it (403, "
                "segment_forbidden). Publish it in Mautic, or change the segments config."
            )
        return None
    if verdict is Verdict.FAILED and reason == SEGMENT_NOT_FOUND:
        return f"HTTP 404: {hint(reason, segment)}"
    if verdict is Verdict.FAILED and reason == SEGMENT_FORBIDDEN:
        return (
            f"HTTP 403: the API user may not view segment {segment}; give its role the segments "
            "permissions (view, and edit contacts)."
        )
    if attempt.status is None:
        return f"segment {segment} could not be checked: {attempt.error}"
    detail = error_text(attempt.body) or "no details in the reply"
    return f"segment {segment} could not be checked: HTTP {attempt.status}: {detail}"


async def check_segments(sender: Sender, integration: MauticIntegration) -> list[SegmentProblem]:
    """One read per configured segment (once each, one attempt, no retries), in config order."""
    problems: list[SegmentProblem] = []
    checked: dict[int, str | None] = {}
    for key, segment in integration.segments.items():
        if segment not in checked:
            attempt = await sender.attempt(
                integration.id, segment_request(integration, segment), tokens=sender.tokens_of(integration)
            )
            checked[segment] = problem_of(attempt, segment)
        text = checked[segment]
        if text is not None:
            problems.append(SegmentProblem(key, segment, text))
    return problems
