"""The one place that turns a destination's reply into a decision.

    2xx                        → DELIVERED
    408, 425, 429, 5xx         → RETRY (honouring Retry-After / X-RateLimit-Reset)
    timeouts, resets, refused  → RETRY
    400, 422, other 4xx        → FAILED for this event
    401, 403, 404              → FAULT: the integration itself is misconfigured

Nothing else in the code base looks at status codes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp

RETRYABLE_STATUSES = frozenset({408, 425, 429})
FAULT_STATUSES = frozenset({401, 403, 404})


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    retry_after_s: float | None = None


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or HTTP date) or Mautic's
    ``X-RateLimit-Reset`` (a Unix time)."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                return None
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


def classify_status(status: int, headers: Mapping[str, str], now: float) -> Classification:
    """Decision for an HTTP reply."""
    if 200 <= status < 300:
        return Classification(Verdict.DELIVERED)
    if status in RETRYABLE_STATUSES or status >= 500:
        return Classification(Verdict.RETRY, retry_after(headers, now))
    if status in FAULT_STATUSES:
        return Classification(Verdict.FAULT)
    return Classification(Verdict.FAILED)


def classify_exception(exc: BaseException) -> Classification:
    """Decision for a request that got no reply: network trouble is always worth a retry."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return Classification(Verdict.RETRY)
    return Classification(Verdict.FAILED)
