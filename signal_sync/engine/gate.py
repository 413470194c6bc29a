"""Per-integration admission: rate limit, concurrency cap, fault pause and circuit breaker.

A 401/403/404 means the integration itself is misconfigured (credentials revoked, list
deleted): failing events for it would only fill the dead-letter topic, so the integration
*pauses* — no new requests, no outcomes, no commits for its events, nothing dropped — and
probes with backoff until the destination answers again, then resumes by itself. A run
of failed deliveries (retries exhausted) opens the circuit the same way for a cool-down,
so an outage costs a few dead letters, not thousands. The rate limit is aiolimiter's
leaky bucket; the pause and breaker are one small state machine because they share the
"wait until open" point with the worker's health and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from signal_sync.destinations import Integration
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import DeliveryResult, Sender

log = logging.getLogger(__name__)


@dataclass
class GateState:
    """What health, readiness and metrics report about an integration."""

    paused: bool = False
    reason: str | None = None
    hint: str | None = None
    since: float | None = None


@dataclass
class IntegrationGate:
    """Decides when a request for one integration may start."""

    integration_id: str
    max_in_flight: int = 32
    rate_per_s: float | None = None
    failure_threshold: int = 20
    open_for_s: float = 30.0
    probe_initial_s: float = 1.0
    probe_max_s: float = 60.0
    state: GateState = field(default_factory=GateState)
    _slots: asyncio.Semaphore = field(init=False)
    _limiter: AsyncLimiter | None = field(init=False, default=None)
    _open: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _consecutive_failures: int = field(default=0, init=False)
    _probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)
        if self.rate_per_s:
            self._limiter = AsyncLimiter(self.rate_per_s, 1.0)
        self._open.set()

    @contextlib.asynccontextmanager
    async def admitted(self):  # type: ignore[no-untyped-def]
        """Hold one concurrency slot and one rate token, once the integration is open."""
        await self._open.wait()
        async with self._slots:
            if self._limiter is not None:
                await self._limiter.acquire()
            yield

    async def wait_open(self) -> None:
        """Block while the integration is paused or its circuit is open."""
        await self._open.wait()

    def pause(self, reason: str, hint: str | None) -> bool:
        """Stop admitting requests; True if this call paused it (so the caller logs once)."""
        if self.state.paused:
            return False
        self.state = GateState(True, reason, hint, time.time())
        self._open.clear()
        log.error(
            "integration paused: integration=%s reason=%s hint=%s",
            self.integration_id,
            reason,
            hint or "-",
            extra={"integration": self.integration_id, "reason": reason, "hint": hint},
        )
        return True

    def resume(self) -> None:
        if self.state.paused:
            log.warning(
                "integration resumed: integration=%s after %s",
                self.integration_id,
                self.state.reason,
                extra={"integration": self.integration_id, "reason": self.state.reason},
            )
        self.state = GateState()
        self._consecutive_failures = 0
        self._open.set()

    def record_delivered(self) -> None:
        self._consecutive_failures = 0

    def record_failed(self) -> None:
        """A delivery failed for good; enough in a row opens the circuit for a cool-down."""
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.failure_threshold and self.pause("circuit_open", None):
            asyncio.get_running_loop().call_later(self.open_for_s, self._half_open)

    def _half_open(self) -> None:
        if self.state.reason == "circuit_open":
            self._consecutive_failures = self.failure_threshold - 1  # one more failure re-opens it
            self.state = GateState()
            self._open.set()

    def probe_delays(self):  # type: ignore[no-untyped-def]
        """Backoff between probes of a paused integration: doubling up to ``probe_max_s``."""
        delay = self.probe_initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.probe_max_s)

    @property
    def probe_lock(self) -> asyncio.Lock:
        """Only one request probes a paused integration at a time; the others wait for the result."""
        return self._probe_lock


async def send_through_gate(
    sender: Sender, gate: IntegrationGate, integration: Integration, request: Request
) -> DeliveryResult:
    """Deliver once admitted; on an integration fault pause the integration and probe until it answers."""
    while True:
        async with gate.admitted():
            result = await sender.deliver(integration, request)
        if not result.fault:
            gate.resume()
            return result
        gate.pause(result.reason or "fault", result.hint)
        async with gate.probe_lock:  # one prober; the others wait for the gate to reopen
            if not gate.state.paused:
                continue
            for delay in gate.probe_delays():
                await asyncio.sleep(delay)
                result = await sender.deliver(integration, request)
                if not result.fault:
                    gate.resume()
                    return result
