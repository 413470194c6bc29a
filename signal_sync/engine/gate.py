"""Per-integration admission: rate limit, concurrency cap, fault pause and circuit breaker.

Two things stop an integration, and both *hold* its events — no new requests, no outcomes,
no commits, no dead letters, nothing dropped — until the destination answers again:

* a **fault** (401/403/404): the integration itself is misconfigured (credentials revoked,
  list deleted); failing its events would only fill the dead-letter topic;
* an **open circuit**: the destination is down as a whole. The gate watches every HTTP
  attempt (it is the sender's ``AttemptWatch``): ``failure_threshold`` destination-level
  failures in a row (5xx, 408/420/425/429, timeouts, refused or reset connections; see
  ``classify``) open it, and only a 2xx resets the run, so a stream of bad events (400, 422)
  can neither open it nor keep it closed. A delivery whose retries ran out on such failures
  while no call to the destination succeeded since its own first failure opens it too: with
  few requests in flight the run may be short, but nothing answered. (Answers that came
  before that first failure, such as requests sent just before an outage, prove nothing
  about the destination now.)

While stopped, one held delivery probes with its own request, one attempt at a time with
backoff (the first after ``probe_initial_s`` for a fault, ``open_for_s`` for an open circuit,
then doubling up to ``probe_max_s``, never sooner than a Retry-After); the others wait. When
the destination answers the probe, the integration resumes by itself and every held
delivery starts over with a fresh retry budget. The rate limit is aiolimiter's leaky bucket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from signal_sync.destinations import Integration
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Classification, Verdict
from signal_sync.destinations.delivery import DeliveryResult, Sender

log = logging.getLogger(__name__)

CIRCUIT_OPEN = "circuit_open"
CIRCUIT_OPEN_HINT = (
    "The destination is not answering (5xx, timeouts or refused connections); its events are held "
    "and sent once it answers again."
)


@dataclass
class GateState:
    """What health, readiness and metrics report about an integration."""

    paused: bool = False
    reason: str | None = None
    hint: str | None = None
    since: float | None = None


@dataclass
class IntegrationGate:
    """Decides when a request for one integration may start, and watches how its attempts end."""

    integration_id: str
    max_in_flight: int = 32
    rate_per_s: float | None = None
    failure_threshold: int = 20
    open_for_s: float = 5.0
    probe_initial_s: float = 1.0
    probe_max_s: float = 60.0
    state: GateState = field(default_factory=GateState)
    _slots: asyncio.Semaphore = field(init=False)
    _limiter: AsyncLimiter | None = field(init=False, default=None)
    _open: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _consecutive_failures: int = field(default=0, init=False)
    _successes: int = field(default=0, init=False)
    _probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)
        if self.rate_per_s:
            self._limiter = AsyncLimiter(self.rate_per_s, 1.0)
        self._open.set()

    async def admit(self) -> None:
        """Take one concurrency slot and one rate token; ``leave`` gives the slot back (whether the
        integration is open is the caller's to check once admitted: a paused integration is
        probed, not waited for)."""
        await self._slots.acquire()
        if self._limiter is not None:
            try:
                await self._limiter.acquire()
            except BaseException:
                self._slots.release()
                raise

    def leave(self) -> None:
        """Give back the slot ``admit`` took."""
        self._slots.release()

    async def wait_open(self) -> None:
        """Block while the integration is paused or its circuit is open."""
        await self._open.wait()

    # -- the sender's AttemptWatch -------------------------------------------------------------

    def attempted(self, classification: Classification) -> None:
        """Count one HTTP attempt: a 2xx ends the run of failures, a destination-level failure
        extends it (enough in a row open the circuit), anything else leaves it as it is."""
        if classification.verdict is Verdict.DELIVERED:
            self._successes += 1
            self._consecutive_failures = 0
        elif classification.destination_down:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.failure_threshold:
                self.open_circuit()

    @property
    def halted(self) -> bool:
        """No retry may start while the integration is paused or its circuit open."""
        return self.state.paused

    @property
    def successes(self) -> int:
        """2xx answers seen so far: a delivery compares it between its first failure and its last
        to know whether the destination answered anyone meanwhile."""
        return self._successes

    # -- pausing ---------------------------------------------------------------------------------

    def pause(self, reason: str, hint: str | None) -> bool:
        """Stop admitting requests (or change why they are stopped); True if this call changed the
        state, so the caller's news is logged once."""
        if self.state.paused and self.state.reason == reason:
            return False
        since = self.state.since if self.state.paused else time.time()
        self.state = GateState(True, reason, hint, since)
        self._open.clear()
        log.error(
            "integration paused: integration=%s reason=%s hint=%s",
            self.integration_id,
            reason,
            hint or "-",
            extra={"integration": self.integration_id, "reason": reason, "hint": hint},
        )
        return True

    def open_circuit(self) -> bool:
        """The destination is down as a whole: pause until a probe gets an answer."""
        if self.state.paused:
            return False
        return self.pause(CIRCUIT_OPEN, CIRCUIT_OPEN_HINT)

    def resume(self) -> None:
        """The destination answered: admit requests again, with a fresh run of failures."""
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

    def probe_delays(self) -> Iterator[float]:
        """Waits before each probe of the current pause: from ``open_for_s`` (open circuit) or
        ``probe_initial_s`` (fault), doubling up to ``probe_max_s`` (or the first wait, if longer)."""
        delay = self.open_for_s if self.state.reason == CIRCUIT_OPEN else self.probe_initial_s
        longest = max(self.probe_max_s, delay)
        while True:
            yield delay
            delay = min(delay * 2, longest)

    @property
    def probe_lock(self) -> asyncio.Lock:
        """Only one request probes a paused integration at a time; the others wait for the result."""
        return self._probe_lock


class DeliveryWatch:
    """The gate's watch over one delivery's attempts: passes each on to the gate and notes how many
    2xx answers the integration had seen at this delivery's first destination-level failure."""

    __slots__ = ("gate", "_successes_at_first_failure")

    def __init__(self, gate: IntegrationGate) -> None:
        self.gate = gate
        self._successes_at_first_failure: int | None = None

    def attempted(self, classification: Classification) -> None:
        self.gate.attempted(classification)
        if classification.destination_down and self._successes_at_first_failure is None:
            self._successes_at_first_failure = self.gate.successes

    @property
    def halted(self) -> bool:
        return self.gate.halted

    @property
    def others_answered(self) -> bool:
        """True if the destination answered another call with a 2xx after this delivery's first
        destination-level failure: it works, and this delivery's own retries ran out."""
        first = self._successes_at_first_failure
        return first is not None and self.gate.successes > first


async def send_through_gate(
    sender: Sender, gate: IntegrationGate, integration: Integration, request: Request, *, hold: bool = True
) -> DeliveryResult:
    """Deliver once admitted. A fault pauses the integration; retries that ran out on
    destination-level failures while nothing answered after the first of them open its circuit.
    Either way the event is held (no result yet) until the destination answers a probe, then its
    delivery starts over. Only an answer about this event (2xx, 400/422/…), a client-side failure,
    or retries that ran out while the destination answered others after their first failure, is
    returned.

    ``hold=False`` (a bulk call, which has single requests to fall back on) returns whatever the
    delivery ended with; a fault still pauses the integration, and the fallback's requests hold.
    """
    while True:
        if gate.state.paused:
            probed = await _probe(sender, gate, integration, request)
            if probed is not None:
                return probed
            continue
        await gate.admit()
        try:
            if gate.state.paused:  # paused while this request waited for a slot
                continue
            watch = DeliveryWatch(gate)
            result = await sender.deliver(integration, request, watch=watch)
        finally:
            gate.leave()
        if result.fault:
            gate.pause(result.reason or "fault", result.hint)
        elif not result.destination_down:
            return result
        elif not gate.state.paused and watch.others_answered:
            return result  # the destination works for others: this event's own budget ran out
        elif hold:
            gate.open_circuit()
        if not hold:
            return result


async def _probe(
    sender: Sender, gate: IntegrationGate, integration: Integration, request: Request
) -> DeliveryResult | None:
    """The first held delivery probes with its own request until the destination answers and
    returns that answer; the others wait here, then get None (start over) once it reopened.
    A probe that ends other than in a fault or a destination-level failure resumes the gate, so
    there is always either a prober or an open gate."""
    async with gate.probe_lock:
        if not gate.state.paused:
            return None
        delays = gate.probe_delays()
        wait = next(delays)
        while True:
            await asyncio.sleep(wait)
            result = await sender.probe(integration, request, watch=gate)
            wait = next(delays)
            if result.fault:
                gate.pause(result.reason or "fault", result.hint)
            elif result.destination_down:
                wait = max(wait, result.retry_after_s or 0.0)
            else:  # an answer about this event (2xx, 400, …), or a request that cannot be sent at all
                gate.resume()
                return result
