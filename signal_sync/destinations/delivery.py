"""Sending requests: one pooled aiohttp session per integration, retries with backoff.

Mapping modules build ``Request`` values; this module is the only one that does HTTP.
Retries use tenacity: exponential backoff with full jitter, but a server's own
``Retry-After`` wins (capped at ``delivery.retry_after_max_s``); a delivery stops after
``delivery.max_attempts`` attempts or before a wait would take it past
``delivery.max_elapsed_s``. Every attempt's reply, and any exception raised while making
it, goes through ``classify`` and nowhere else; an ``AttemptWatch`` (the integration's gate)
sees every attempt and can halt the retries of a destination that is down as a whole.

An OAuth2 integration's requests are built without credentials: an attempt takes the
integration's current access token (``oauth2.TokenCache``, fetched over the same session when
there is none) and adds ``Authorization: Bearer`` to the headers it sends. A token Mautic refuses
(401 ``invalid_grant``) is replaced once and the request sent again within the same attempt;
whatever that answers is classified as usual. A token request that fails is the attempt's result:
an outage (RETRY) or a fault of the integration with its hint, never a failure of the event.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

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
from signal_sync.destinations.classify import (
    Classification,
    Verdict,
    bearer_refused,
    classify_exception,
    classify_status,
)
from signal_sync.destinations.mautic_auth import api_hint, error_type
from signal_sync.destinations.oauth2 import TokenCache, TokenFailure

_EMAIL_IN_TEXT = re.compile(r"(?<![^\s'\"<>@])[^\s'\"<>@]+@[^\s'\"<>@]+\.(?:xn--[A-Za-z0-9-]+|[^\W\d_]{2,})")
"""An address in free text, matched only from the start of a word (the lookbehind keeps the scan
linear: without it a long run without ``@`` is rescanned from every position); the top-level domain
may be internationalized (letters of any script, or its ``xn--`` form)."""
ERROR_TEXT_LIMIT = 300
REDACTION_WINDOW = 64 * 1024
"""Characters of a text redacted before it is cut to ``ERROR_TEXT_LIMIT``: even if every address in
the window shrinks to ``<email>``, more than the limit remains, so an address the window's end cuts
in half is never in what is kept."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP attempt gave: a status and body, or an exception."""

    classification: Classification
    status: int | None = None
    body: bytes = b""
    error: str | None = None
    hint: str | None = None
    """What to do, when the attempt knows better than the status's own hint (an auth error's type)."""
    token_request: bool = False
    """The attempt ended at the OAuth2 token request: ``status`` and ``body`` are its answer's."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The end of a delivery: what goes into the outcome."""

    status: Literal["delivered", "absent", "failed"]
    """``absent``: the item a call named does not exist (a 404 its request's ``absent`` reader
    recognised); only the steps of an operation make such calls, and they decide the outcome."""
    http_status: int | None
    created: bool | None
    attempts: int
    reason: str | None
    error: str | None
    hint: str | None
    fault: bool = False
    reply: bytes = field(default=b"", repr=False, compare=False)
    destination_down: bool = False
    """The last attempt failed at the destination as a whole (5xx, 408/420/425/429, timeout,
    refused or reset connection): retries ran out or were halted, not a verdict on the event."""
    retry_after_s: float | None = field(default=None, compare=False)
    """How long the destination asked to wait after the last attempt (capped), if it said."""
    item: Any = field(default=None, repr=False, compare=False)
    """For one item of a bulk call: the item's own part of the answer (a Mautic contact), if any."""


class AttemptWatch(Protocol):
    """Sees every attempt of a delivery and may halt its retries (the integration's gate)."""

    def attempted(self, classification: Classification) -> None:
        """One HTTP attempt ended with this classification."""

    @property
    def halted(self) -> bool:
        """True while no further attempt may be made (the integration is paused)."""


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
        """A delivery or a probe of a paused integration ended: delivered, failed for the event, or
        ``destination_down`` (the gate then holds the event and sends it again later)."""


def redact_emails(value: str) -> str:
    """Destinations echo addresses in errors; keep them out of outcomes and logs."""
    return _EMAIL_IN_TEXT.sub("<email>", value)


def short_text(value: str) -> str:
    """At most ``ERROR_TEXT_LIMIT`` characters of ``value``, its emails redacted before the cut (so
    no address is kept half)."""
    return redact_emails(value[:REDACTION_WINDOW])[:ERROR_TEXT_LIMIT]


def exception_text(exc: BaseException) -> str:
    """What an outcome or a dead letter says about an exception: its type and message, short, no emails."""
    return short_text(f"{type(exc).__name__}: {exc}")


def error_text(body: bytes) -> str | None:
    """A short human message from a Mautic ``errors`` or Mailgun ``message`` body."""
    if not body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return short_text(body[:REDACTION_WINDOW].decode("utf-8", "replace").strip()) or None
    message = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message")
        message = message or data.get("message")
    return short_text(str(message or body[:REDACTION_WINDOW].decode("utf-8", "replace")))


def result_of(attempt: Attempt, attempts: int, destination: Destination) -> DeliveryResult:
    """Turn the last attempt into a result for the outcome."""
    status, classification = attempt.status, attempt.classification
    if classification.verdict is Verdict.DELIVERED:
        assert status is not None
        return DeliveryResult(
            "delivered", status, classification.created, attempts, None, None, None, reply=attempt.body
        )
    if classification.verdict is Verdict.ABSENT:
        return DeliveryResult(
            "absent", status, None, attempts, classification.reason, None, None, reply=attempt.body
        )
    error = attempt.error if status is None else error_text(attempt.body)
    hint = attempt.hint or (destination.hints.get(status) if status is not None else None)
    return DeliveryResult(
        "failed",
        status,
        None,
        attempts,
        classification.reason,
        error,
        hint,
        fault=classification.verdict is Verdict.FAULT,
        destination_down=classification.destination_down,
        retry_after_s=classification.retry_after_s,
    )


class Sender:
    """Sends requests with retries; owns one keep-alive connection pool per integration."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.hooks: list[DeliveryHooks] = []
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._tokens: dict[str, TokenCache] = {}
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

    def tokens_of(self, integration: Integration) -> TokenCache | None:
        """The access-token cache of an OAuth2 integration (one per integration id), None for
        Basic auth."""
        oauth2 = integration.oauth2 if integration.type == "mautic" else None
        if oauth2 is None:
            return None
        tokens = self._tokens.get(integration.id)
        if tokens is None:
            tokens = TokenCache(
                integration.base_url, oauth2, retry_after_max_s=self.settings.retry_after_max_s
            )
            self._tokens[integration.id] = tokens
        return tokens

    def _notify(self, hook: str, *args: object) -> None:
        for hooks in self.hooks:
            try:
                getattr(hooks, hook)(*args)
            except Exception:  # observability must never fail a delivery
                log.exception("delivery hook %s failed", hook)

    async def attempt(
        self,
        integration_id: str,
        request: Request,
        *,
        reports_created: bool = False,
        tokens: TokenCache | None = None,
    ) -> Attempt:
        """One HTTP round trip, classified. Never raises (except on cancellation): an exception
        while encoding or sending this request is this request's failed attempt. With ``tokens``
        (an OAuth2 integration) the request goes with the current bearer token, and once more with
        a new one when Mautic refuses it (401 ``invalid_grant``)."""
        session = self._session(integration_id)
        if tokens is None:
            return await self._exchange(integration_id, session, request, request.headers, reports_created)
        token = await tokens.token(session)
        if isinstance(token, TokenFailure):
            return _token_attempt(token)
        attempt = await self._exchange(
            integration_id, session, request, _bearer(request, token), reports_created
        )
        if bearer_refused(attempt.status, attempt.body, error_type):
            tokens.discard(token)
            token = await tokens.token(session)
            if isinstance(token, TokenFailure):
                return _token_attempt(token)
            attempt = await self._exchange(
                integration_id, session, request, _bearer(request, token), reports_created
            )
        if attempt.classification.verdict is Verdict.FAULT:
            attempt = replace(attempt, hint=api_hint(attempt.status, error_type(attempt.body), "oauth2"))
        return attempt

    async def _exchange(
        self,
        integration_id: str,
        session: aiohttp.ClientSession,
        request: Request,
        headers: Mapping[str, str],
        reports_created: bool,
    ) -> Attempt:
        """Send ``request`` with ``headers`` once and classify what comes back."""
        self._notify("request_started", integration_id, request.contacts)
        started = time.perf_counter()
        status: int | None = None
        try:
            data = (
                request.form
                if request.form is not None
                else (orjson.dumps(request.json) if request.json is not None else None)
            )
            async with session.request(request.method, request.url, headers=headers, data=data) as reply:
                status = reply.status
                body = await reply.read()
                classification = classify_status(
                    reply.status,
                    reply.headers,
                    time.time(),
                    reports_created=reports_created,
                    retry_after_max_s=self.settings.retry_after_max_s,
                    absent=request.absent is not None and request.absent(body),
                    refused=request.refused(body) if request.refused is not None else None,
                )
                return Attempt(classification, reply.status, body)
        except Exception as exc:
            status = None
            classification = classify_exception(exc)
            if classification.verdict is not Verdict.RETRY:
                log.warning(
                    "request could not be sent: integration=%s error_type=%s",
                    integration_id,
                    type(exc).__name__,
                    extra={"integration": integration_id, "error_type": type(exc).__name__},
                )
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return Attempt(classification, error=short_text(f"{kind}: {exc}"))
        finally:
            self._notify("request_finished", integration_id, status, time.perf_counter() - started)

    def _wait(self, state: RetryCallState) -> float:
        attempt: Attempt | None = state.outcome.result() if state.outcome else None
        asked = attempt.classification.retry_after_s if attempt else None
        return asked if asked is not None else self._jitter(state)

    async def deliver(
        self, integration: Integration, request: Request, watch: AttemptWatch | None = None
    ) -> DeliveryResult:
        """Send until delivered, a final answer, or the retry budget runs out: ``max_attempts``
        attempts, or a wait that would end past ``max_elapsed_s`` (Retry-After included). A
        ``watch`` sees every attempt; while it is halted no further attempt is made.

        The first attempt goes out before any retry machinery is built: most deliveries end with
        it, and an attempt that is not to be retried is the delivery's end whatever the budget
        says. Only an attempt to retry builds the retry loop (``_retrying``), which takes that
        attempt as its first and measures the time budget from before it."""
        destination = destination_of(integration)
        tokens = self.tokens_of(integration)
        started = time.monotonic()
        attempts = 0
        last: Attempt | None = None

        async def counted() -> Attempt:
            nonlocal attempts, last
            if last is not None and watch is not None and watch.halted:
                return last  # paused during the back-off: not sent; the stop check ends the delivery
            attempts += 1
            if attempts > 1:
                self._notify("retry_started", integration.id)
            last = await self.attempt(
                integration.id, request, reports_created=destination.reports_created, tokens=tokens
            )
            if watch is not None:
                watch.attempted(last.classification)
            return last

        final = await counted()
        if final.classification.verdict is Verdict.RETRY:
            first: list[Attempt] = [final]

            async def after_first() -> Attempt:
                """The retry loop's attempts: the one already made, then new ones."""
                return first.pop() if first else await counted()

            final = await self._retrying(watch, started)(after_first)
        result = result_of(final, attempts, destination)
        self._notify("delivery_finished", integration.id, result)
        return result

    def _retrying(self, watch: AttemptWatch | None, started: float) -> AsyncRetrying:
        """The retry loop of one delivery whose first attempt began at ``started``
        (``time.monotonic``): it stops after ``max_attempts`` attempts, before a wait that would end
        past ``max_elapsed_s`` from ``started`` (tenacity's ``stop_before_delay``, counted from the
        first attempt rather than from the loop's own start), or while ``watch`` is halted."""
        max_elapsed_s = self.settings.max_elapsed_s

        def out_of_time(state: RetryCallState) -> bool:
            ended = state.outcome_timestamp if state.outcome_timestamp is not None else time.monotonic()
            return ended - started + state.upcoming_sleep >= max_elapsed_s

        def halted(_state: RetryCallState) -> bool:
            return watch is not None and watch.halted

        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts) | out_of_time | halted,
            wait=self._wait,
            retry=retry_if_result(lambda a: a.classification.verdict is Verdict.RETRY),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )

    async def probe(
        self, integration: Integration, request: Request, watch: AttemptWatch | None = None
    ) -> DeliveryResult:
        """One attempt and no retry: how a paused integration asks whether its destination answers."""
        destination = destination_of(integration)
        attempt = await self.attempt(
            integration.id,
            request,
            reports_created=destination.reports_created,
            tokens=self.tokens_of(integration),
        )
        if watch is not None:
            watch.attempted(attempt.classification)
        result = result_of(attempt, 1, destination)
        self._notify("delivery_finished", integration.id, result)
        return result

    async def close(self) -> None:
        """Close every pool; safe to call twice."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def _bearer(request: Request, token: str) -> dict[str, str]:
    """The request's headers with the bearer token (its own hold no credentials)."""
    return {**request.headers, "Authorization": f"Bearer {token}"}


def _token_attempt(failure: TokenFailure) -> Attempt:
    """A token request that gave no token, as the attempt it ends."""
    return Attempt(
        failure.classification, failure.status, failure.body, failure.error, failure.hint, token_request=True
    )
