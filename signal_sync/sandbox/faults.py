"""Fault injection for the sandbox emulators: the failures a real destination produces.

The worker's retry, back-off and timeout logic is only trustworthy if it has been run
against slow answers, 5xx bursts, rate limits, hung requests, dropped connections and
revoked credentials. ``Faults`` describes those failures (settable at creation and at
runtime through ``POST /_sandbox/faults``); ``FaultInjector`` decides, per request and
from a seeded RNG so a chaos run can be replayed, which one to apply; ``fault_middleware``
applies it in front of the API routes only, never in front of ``/_sandbox/``, so tests
can always inspect and repair the emulator.

A faulted request never reaches the handler, so it is never applied to state; it is
journaled with its fault name (see ``journal.py``).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signal_sync.sandbox.journal import SANDBOX_PREFIX, Handler, is_control_path, json_response, mark_fault


class RateLimit(BaseModel):
    """429 answers, in three shapes that can be combined.

    ``burst`` is deterministic (the next N requests after ``after`` ones), ``rate`` is random,
    and ``limit``/``window_s`` is a real fixed-window limiter: a client that ignores
    Retry-After keeps getting 429 until the window rolls over.
    """

    model_config = ConfigDict(extra="forbid")

    burst: int = Field(0, ge=0, description="Answer this many consecutive API requests with 429, once.")
    after: int = Field(0, ge=0, description="API requests let through before the burst starts.")
    rate: float = Field(0.0, ge=0, le=1, description="Fraction of API requests answered 429 at random.")
    limit: int | None = Field(None, ge=0, description="At most this many API requests per window, then 429.")
    window_s: float = Field(1.0, gt=0, description="Window of the `limit` limiter, in seconds.")
    retry_after_s: int = Field(1, ge=0, description="Seconds announced to the client in burst/rate mode.")


class Faults(BaseModel):
    """What goes wrong, and how often. The defaults mean: nothing goes wrong."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(None, description="RNG seed; the same seed gives the same fault sequence.")
    latency_ms: float = Field(0.0, ge=0, description="Fixed delay added before every API answer.")
    jitter_ms: float = Field(0.0, ge=0, description="Extra random delay, uniform in [0, jitter_ms].")
    error_rate: float = Field(0.0, ge=0, le=1, description="Fraction of API requests answered error_status.")
    error_status: int = Field(503, ge=500, le=599, description="Status used for error_rate answers.")
    rate_limit: RateLimit | None = Field(None, description="429 answers; see RateLimit.")
    hang_rate: float = Field(0.0, ge=0, le=1, description="Fraction of requests held for hang_seconds.")
    hang_seconds: float = Field(30.0, ge=0, description="How long a hung request is held before a 504.")
    reset_rate: float = Field(0.0, ge=0, le=1, description="Fraction of connections dropped, no response.")
    force_status: int | None = Field(
        None, ge=400, le=599, description="Answer every API request with this status until cleared."
    )
    each_fault_within: int = Field(
        8,
        ge=0,
        description=(
            "Inject each fault kind with a non-zero rate once within the first this-many API requests "
            "(positions drawn from the seed; outside a rate-limit burst), then at its rate; 0 leaves every "
            "fault to chance. Fewer than the number of such kinds counts as that number."
        ),
    )


RANDOM_KINDS = ("reset", "hang", "rate_limit", "error")
"""The fault kinds given as a rate, in the order they win when several hit one request."""


def rated_kinds(faults: Faults) -> list[str]:
    """The kinds ``faults`` gives a non-zero rate, in ``RANDOM_KINDS`` order."""
    rl = faults.rate_limit
    rates = {
        "reset": faults.reset_rate,
        "hang": faults.hang_rate,
        "rate_limit": rl.rate if rl is not None else 0.0,
        "error": faults.error_rate,
    }
    return [kind for kind in RANDOM_KINDS if rates[kind] > 0]


def first_faults(faults: Faults) -> dict[int, str]:
    """Request index -> the fault kind injected there for certain.

    Each kind with a non-zero rate gets one of the first ``each_fault_within`` request indices
    (at least as many as there are such kinds), drawn from an RNG seeded by ``faults.seed``: the
    same configuration gives the same positions. A rate-limit burst's indices are left out, so the
    burst keeps its consecutive 429s and no scheduled kind is hidden behind it. The RNG is a
    separate one, so the per-request draws are the same with and without this schedule.
    """
    kinds = rated_kinds(faults)
    if not kinds or faults.each_fault_within == 0:
        return {}
    window = max(faults.each_fault_within, len(kinds))
    rl = faults.rate_limit
    # Candidate n is request index n, or n + burst when it would fall at or after the burst's start.
    burst_start, burst = (rl.after, rl.burst) if rl is not None and rl.burst > 0 else (window, 0)
    seed = None if faults.seed is None else f"first-faults:{faults.seed}"
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos, not crypto
    picks = rng.sample(range(window), len(kinds))
    return {n if n < burst_start else n + burst: kind for n, kind in zip(picks, kinds, strict=True)}


class Dialect(Protocol):
    """How a destination words its failure answers (Mautic's errors JSON, Mailgun's messages)."""

    def error(self, status: int, message: str | None = None) -> web.Response: ...

    def rate_limited(self, retry_after_s: int, reset_at: float) -> web.Response: ...


@dataclass(frozen=True)
class Decision:
    """The injector's verdict for one request: a delay, at most one fault, and the config
    it was taken under (so a runtime change during the delay cannot garble the answer)."""

    delay_s: float
    config: Faults
    fault: str | None = None
    retry_after_s: int = 0


class FaultInjector:
    """Holds the active ``Faults`` and the RNG/counters they need; one per app."""

    def __init__(self, faults: Faults | Mapping[str, Any] | None = None) -> None:
        self.initial = coerce_faults(faults)
        self.stats: Counter[str] = Counter()
        self._release: asyncio.Event | None = None
        self.set(self.initial)

    def set(self, faults: Faults) -> None:
        """Replace the configuration, reseed, restart counters and release hung requests."""
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - reproducible chaos, not crypto
        self._seen = 0
        self._window_start = time.monotonic()
        self._window_count = 0
        self._first_faults = first_faults(faults)
        self.stats.clear()
        self.release_hung()

    def restore(self) -> None:
        """Go back to the creation-time configuration (used by ``/_sandbox/reset``)."""
        self.set(self.initial)

    def release_hung(self) -> None:
        """Let every held request finish now (on reconfiguration and on server shutdown)."""
        if self._release is not None:
            self._release.set()
        self._release = None

    async def hold(self, seconds: float) -> None:
        """Hold a request until ``seconds`` pass or the hang is released."""
        if self._release is None:
            self._release = asyncio.Event()
        release = self._release
        try:
            await asyncio.wait_for(release.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def decide(self) -> Decision:
        """Pick this request's fate. Draws a fixed number of random values so runs replay; a
        request that ``first_faults`` scheduled a kind for gets that kind."""
        f = self.faults
        rng = self._rng
        jitter, r_reset, r_hang, r_limit, r_error = (rng.random() for _ in range(5))
        index = self._seen
        self._seen += 1
        self.stats["requests"] += 1
        delay_s = (f.latency_ms + jitter * f.jitter_ms) / 1000.0
        fault, retry_after = self._pick(f, index, r_reset, r_hang, r_limit, r_error)
        if fault is not None:
            self.stats[fault] += 1
        return Decision(delay_s=delay_s, config=f, fault=fault, retry_after_s=retry_after)

    def _pick(
        self, f: Faults, index: int, r_reset: float, r_hang: float, r_limit: float, r_error: float
    ) -> tuple[str | None, int]:
        if f.force_status is not None:
            return "force_status", 0
        scheduled = self._first_faults.get(index)
        if scheduled == "rate_limit" and f.rate_limit is not None:
            return scheduled, f.rate_limit.retry_after_s
        if scheduled is not None:
            return scheduled, 0
        if r_reset < f.reset_rate:
            return "reset", 0
        if r_hang < f.hang_rate:
            return "hang", 0
        limited = self._rate_limited(f.rate_limit, index, r_limit)
        if limited is not None:
            return "rate_limit", limited
        if r_error < f.error_rate:
            return "error", 0
        return None, 0

    def _rate_limited(self, rl: RateLimit | None, index: int, draw: float) -> int | None:
        """Retry-After seconds if this request is over a limit, else None."""
        if rl is None:
            return None
        if rl.limit is not None:
            now = time.monotonic()
            if now - self._window_start >= rl.window_s:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            if self._window_count > rl.limit:
                return max(1, math.ceil(self._window_start + rl.window_s - now))
        if rl.after <= index < rl.after + rl.burst or draw < rl.rate:
            return rl.retry_after_s
        return None

    def snapshot(self) -> dict[str, Any]:
        """Config plus counters, for ``GET /_sandbox/faults``."""
        return {"faults": self.faults.model_dump(), "stats": dict(self.stats)}


def coerce_faults(value: Faults | Mapping[str, Any] | None) -> Faults:
    """Accept a model, a plain dict (tests, CLI) or None (no faults)."""
    if value is None:
        return Faults()
    if isinstance(value, Faults):
        return value
    return Faults.model_validate(dict(value))


def fault_middleware(injector: FaultInjector, dialect: Dialect) -> Any:
    """Build the middleware that delays or replaces API answers as ``injector`` decides."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_control_path(request.path):
            return await handler(request)
        decision = injector.decide()
        if decision.delay_s > 0:
            await asyncio.sleep(decision.delay_s)
        if decision.fault is None:
            return await handler(request)
        mark_fault(request, decision.fault)
        return await _answer_fault(request, injector, dialect, decision)

    return middleware


async def _answer_fault(
    request: web.Request, injector: FaultInjector, dialect: Dialect, decision: Decision
) -> web.StreamResponse:
    f = decision.config
    if decision.fault == "force_status" and f.force_status is not None:
        return dialect.error(f.force_status)
    if decision.fault == "reset":
        # Close the socket without writing a status line: the client sees a disconnect.
        # aiohttp then finds the transport closed and silently drops the response below.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
    if decision.fault == "hang":
        await injector.hold(f.hang_seconds)
        return dialect.error(504)
    if decision.fault == "rate_limit":
        return dialect.rate_limited(decision.retry_after_s, time.time() + decision.retry_after_s)
    return dialect.error(f.error_status)


FAULTS_KEY = web.AppKey("sandbox_faults", FaultInjector)


def add_fault_routes(app: web.Application, injector: FaultInjector) -> None:
    """``GET/POST /_sandbox/faults``: read or replace the fault configuration at runtime.

    POST replaces the whole configuration (``{}`` clears every fault), reseeds the RNG and
    releases requests currently held by a hang.
    """
    app[FAULTS_KEY] = injector

    async def get_faults(request: web.Request) -> web.Response:
        return json_response(injector.snapshot())

    async def post_faults(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            faults = Faults.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            return json_response({"error": "invalid faults", "details": errors}, status=400)
        injector.set(faults)
        return json_response(injector.snapshot())

    async def release_hangs(app: web.Application) -> None:
        injector.release_hung()

    app.router.add_get(SANDBOX_PREFIX + "faults", get_faults)
    app.router.add_post(SANDBOX_PREFIX + "faults", post_faults)
    app.on_shutdown.append(release_hangs)
