"""OAuth2 client-credentials tokens for one Mautic integration.

``POST {base_url}/oauth/v2/token`` with ``grant_type=client_credentials``, ``client_id`` and
``client_secret`` in the form body: never as HTTP Basic (a Mautic with Basic auth disabled, where
OAuth2 is used, answers any Basic header 403) and never with a ``scope`` (Mautic supports none:
400 ``invalid_scope``). Mautic answers ``{"access_token", "expires_in", "token_type": "bearer"}``
and no refresh token; every call issues a new token.

A token is kept until ``expiry_leeway(expires_in)`` before it expires (its lifetime is counted from
before the request was sent, so the cached expiry is never later than Mautic's). One token request
runs at a time per integration: callers that find no valid token wait on one ``asyncio.Lock``, and
those that waited while a request ran take its token, or its failure, instead of asking again. A
token Mautic refuses (401 ``invalid_grant``) is ``discard``-ed by the sender, which then asks once
for a new one; callers that hold the same refused token cause one request between them.

Neither the request (it carries the client secret) nor the token answer is logged, kept in a
``Request``, shown by the debugger or written to an outcome: only a refusal's error body (Mautic's
error message, no secret) travels on, in the ``TokenFailure``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from signal_sync.config import MauticOAuth2Auth
from signal_sync.destinations.classify import (
    DEFAULT_RETRY_AFTER_MAX_S,
    Classification,
    Verdict,
    classify_token_answer,
    classify_token_exception,
)
from signal_sync.destinations.mautic_auth import GRANT_TYPE, TOKEN_PATH, error_type, token_hint

log = logging.getLogger(__name__)

EXPIRY_LEEWAY_S = 60.0
"""Longest margin before a token's expiry at which it is no longer used."""
EXPIRY_LEEWAY_FRACTION = 0.1
"""Share of a short lifetime kept as the margin (a 10 s token is used for 9 s)."""


def expiry_leeway(expires_in: float) -> float:
    """How long before its expiry a token is replaced: ``EXPIRY_LEEWAY_S``, or a tenth of a short
    lifetime, so a request never goes out with a token that expires on its way."""
    return min(EXPIRY_LEEWAY_S, expires_in * EXPIRY_LEEWAY_FRACTION)


def read_token(body: bytes) -> tuple[str, float] | None:
    """The access token and its lifetime in seconds from a token answer, None when the answer has
    no bearer token with a positive ``expires_in`` (a number, or a numeric string)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    token, kind, expires_in = data.get("access_token"), data.get("token_type"), data.get("expires_in")
    if not isinstance(token, str) or not token or any(c.isspace() for c in token) or not token.isascii():
        return None
    if not isinstance(kind, str) or kind.lower() != "bearer":
        return None
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    if not math.isfinite(expires_in) or expires_in <= 0:
        return None
    return token, float(expires_in)


@dataclass(frozen=True, slots=True)
class TokenFailure:
    """A token request that gave no token: its classification (RETRY for an outage, else FAULT),
    the endpoint's status and error body (None / empty without a reply), and what to do."""

    classification: Classification
    status: int | None
    body: bytes = field(default=b"", repr=False)
    error: str | None = None
    hint: str | None = None


class TokenCache:
    """The current access token of one OAuth2 integration, fetched when there is none."""

    def __init__(
        self,
        base_url: str,
        auth: MauticOAuth2Auth,
        *,
        retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url
        self.url = base_url + TOKEN_PATH
        self._auth = auth
        self._retry_after_max_s = retry_after_max_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._valid_until = 0.0
        self._last_failure: TokenFailure | None = None
        self._ended = 0
        """Token requests ended (with a token or without): a caller that saw fewer before it
        waited for the lock knows a request ran meanwhile."""
        self.requests = 0
        """Token requests sent so far."""

    def _current(self) -> str | None:
        if self._token is not None and self._clock() < self._valid_until:
            return self._token
        return None

    async def token(self, session: aiohttp.ClientSession) -> str | TokenFailure:
        """A token valid for a while yet, fetched if needed (one request at a time); or why none."""
        token = self._current()
        if token is not None:
            return token
        seen = self._ended
        async with self._lock:
            token = self._current()
            if token is not None:
                return token
            if self._ended != seen and self._last_failure is not None:
                return self._last_failure  # a request ran while this caller waited: its answer holds
            try:
                return await self._fetch(session)
            finally:
                self._ended += 1

    def discard(self, token: str) -> None:
        """Mautic refused ``token``: stop using it (a token fetched since stays)."""
        if self._token == token:
            self._token = None

    async def _fetch(self, session: aiohttp.ClientSession) -> str | TokenFailure:
        """One token request (the caller holds the lock)."""
        self.requests += 1
        self._token = None
        started = self._clock()
        form = {
            "grant_type": GRANT_TYPE,
            "client_id": self._auth.client_id,
            "client_secret": self._secret(),
        }
        try:
            async with session.post(self.url, data=form, headers={"Accept": "application/json"}) as reply:
                status, headers = reply.status, reply.headers
                body = await reply.read()
        except Exception as exc:
            classification = classify_token_exception(exc)
            if classification.verdict is not Verdict.RETRY:
                log.warning("token request could not be sent: error_type=%s", type(exc).__name__)
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return self._failed(TokenFailure(classification, None, error=f"token request: {kind}"))
        answer = read_token(body) if 200 <= status < 300 else None
        classification = classify_token_answer(
            status,
            headers,
            time.time(),
            readable=answer is not None,
            retry_after_max_s=self._retry_after_max_s,
        )
        if classification.verdict is Verdict.DELIVERED and answer is not None:
            token, expires_in = answer
            self._token = token
            self._valid_until = started + expires_in - expiry_leeway(expires_in)
            self._last_failure = None
            return token
        if 200 <= status < 300:
            body = b""  # an unreadable success answer may still hold a token: it goes nowhere
        hint = token_hint(status, error_type(body), self.base_url)
        return self._failed(TokenFailure(classification, status, body, hint=hint))

    def _failed(self, failure: TokenFailure) -> TokenFailure:
        self._last_failure = failure
        return failure

    def _secret(self) -> str:
        assert self._auth.client_secret is not None
        return self._auth.client_secret.get_secret_value()
