"""Sending requests: one pooled aiohttp session per integration, retries with backoff.

Mapping modules build ``Request`` values; this module is the only one that does HTTP.
Retries use tenacity: exponential backoff with full jitter, but a server's own
``Retry-After`` wins. Every attempt's reply goes through ``classify`` and nowhere else.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from signal_sync.config import DeliverySettings
from signal_sync.destinations import Destination, Integration, destination_of
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Classification, Verdict, classify_exception, classify_status

_EMAIL_IN_TEXT = re.compile(r"[^\s'\"<>@]+@[^\s'\"<>@]+\.[A-Za-z]{2,}")
ERROR_TEXT_LIMIT = 300

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP attempt gave: a status and body, or an exception."""

    classification: Classification
    status: int | None = None
    body: bytes = b""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The end of a delivery: what goes into the outcome."""

    status: Literal["delivered", "failed"]
    http_status: int | None
    created: bool | None
    attempts: int
    reason: str | None
    error: str | None
    hint: str | None
    fault: bool = False
    reply: bytes = field(default=b"", repr=False, compare=False)


class DeliveryHooks:
    """What the sender tells observers (metrics, readiness) about its work; every method is a no-op
    here, so an observer overrides only what it needs. Hooks must be cheap and must not raise:
    an exception is logged and swallowed so observability can never fail a delivery."""

    def request_started(self, integration_id: str, batch_size: int) -> None:
        """An HTTP request carrying ``batch_size`` contacts is about to be sent."""

    def request_finished(self, integration_id: str, status: int | None, seconds: float) -> None:
        """A request ended: with an HTTP ``status``, or ``None`` when no reply came (timeout, reset)."""

    def retry_started(self, integration_id: str) -> None:
        """A retryable answer came back earlier: the same request is now sent again, after its back-off."""

    def delivery_finished(self, integration_id: str, result: DeliveryResult) -> None:
        """The delivery is over (delivered, or failed after its last attempt)."""


def redact_emails(value: str) -> str:
    """Destinations echo addresses in errors; keep them out of outcomes and logs."""
    return _EMAIL_IN_TEXT.sub("<email>", value)


def error_text(body: bytes) -> str | None:
    """A short human message from a Mautic ``errors`` or Mailgun ``message`` body."""
    if not body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return redact_emails(body.decode("utf-8", "replace").strip()[:ERROR_TEXT_LIMIT]) or None
    message = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message")
        message = message or data.get("message")
    return redact_emails(str(message or body[:ERROR_TEXT_LIMIT].decode("utf-8", "replace")))[
        :ERROR_TEXT_LIMIT
    ]


def result_of(attempt: Attempt, attempts: int, destination: Destination) -> DeliveryResult:
    """Turn the last attempt into a result for the outcome."""
    status = attempt.status
    if attempt.classification.verdict is Verdict.DELIVERED:
        assert status is not None
        return DeliveryResult(
            "delivered", status, destination.created(status), attempts, None, None, None, reply=attempt.body
        )
    if status is None:
        reason, error = "connection_error", attempt.error
    else:
        reason, error = f"http_{status}", error_text(attempt.body)
    return DeliveryResult(
        "failed",
        status,
        None,
        attempts,
        reason,
        error,
        destination.hints.get(status) if status is not None else None,
        fault=attempt.classification.verdict is Verdict.FAULT,
    )


class Sender:
    """Sends requests with retries; owns one keep-alive connection pool per integration."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.hooks: list[DeliveryHooks] = []
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._jitter = wait_random_exponential(
            multiplier=settings.backoff_initial_s, max=settings.backoff_max_s
        )

    def _session(self, integration_id: str) -> aiohttp.ClientSession:
        session = self._sessions.get(integration_id)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                raise_for_status=False,
            )
            self._sessions[integration_id] = session
        return session

    def _notify(self, hook: str, *args: object) -> None:
        for hooks in self.hooks:
            try:
                getattr(hooks, hook)(*args)
            except Exception:  # observability must never fail a delivery
                log.exception("delivery hook %s failed", hook)

    async def attempt(self, integration_id: str, request: Request) -> Attempt:
        """One HTTP round trip, classified."""
        session = self._session(integration_id)
        data = (
            request.form
            if request.form is not None
            else (orjson.dumps(request.json) if request.json is not None else None)
        )
        self._notify("request_started", integration_id, request.contacts)
        started = time.perf_counter()
        status: int | None = None
        try:
            async with session.request(
                request.method, request.url, headers=request.headers, data=data
            ) as reply:
                status = reply.status
                body = await reply.read()
                return Attempt(classify_status(reply.status, reply.headers, time.time()), reply.status, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = None
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return Attempt(classify_exception(exc), error=redact_emails(f"{kind}: {exc}"[:ERROR_TEXT_LIMIT]))
        finally:
            self._notify("request_finished", integration_id, status, time.perf_counter() - started)

    def _wait(self, state: RetryCallState) -> float:
        attempt: Attempt | None = state.outcome.result() if state.outcome else None
        asked = attempt.classification.retry_after_s if attempt else None
        return asked if asked is not None else self._jitter(state)

    async def deliver(self, integration: Integration, request: Request) -> DeliveryResult:
        """Send until delivered, a final answer, or the attempts run out."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=retry_if_result(lambda a: a.classification.verdict is Verdict.RETRY),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        attempts = 0

        async def counted() -> Attempt:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self._notify("retry_started", integration.id)
            return await self.attempt(integration.id, request)

        last: Attempt = await retrying(counted)
        result = result_of(last, attempts, destination_of(integration))
        self._notify("delivery_finished", integration.id, result)
        return result

    async def close(self) -> None:
        """Close every pool; safe to call twice."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
