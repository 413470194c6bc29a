"""Which fault the sandbox injects into which request (``sandbox.faults``), without HTTP.

A chaos scenario asserts that every fault kind it configured was injected; with batching the
worker makes few requests, so each kind given a rate must be certain to come early, and the
whole sequence must still replay from the seed.
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signal_sync.sandbox.faults import FaultInjector, Faults, RateLimit, first_faults, rated_kinds

rates = st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1.0))
rate_limits = st.one_of(
    st.none(),
    st.builds(
        RateLimit,
        burst=st.integers(0, 40),
        after=st.integers(0, 40),
        rate=rates,
        retry_after_s=st.integers(0, 5),
    ),
)
unhurried = settings(deadline=None)  # a loaded CI machine must not turn slowness into a failure
fault_configs = st.builds(
    Faults,
    seed=st.one_of(st.none(), st.integers()),
    error_rate=rates,
    hang_rate=rates,
    reset_rate=rates,
    rate_limit=rate_limits,
    each_fault_within=st.integers(0, 30),
)


def injected(faults: Faults, requests: int) -> list[str | None]:
    """The fault (or None) of each of the first ``requests`` requests."""
    injector = FaultInjector(faults)
    return [injector.decide().fault for _ in range(requests)]


def horizon(faults: Faults) -> int:
    """How many requests may pass before every rated kind has been injected."""
    burst = faults.rate_limit.burst if faults.rate_limit is not None else 0
    return max(faults.each_fault_within, len(rated_kinds(faults))) + burst


@unhurried
@given(fault_configs)
def test_every_kind_with_a_rate_is_injected_within_the_first_requests(faults: Faults) -> None:
    assume(faults.each_fault_within > 0)
    seen = set(injected(faults, horizon(faults)))
    assert set(rated_kinds(faults)) <= seen


@unhurried
@given(fault_configs.filter(lambda f: f.seed is not None))
def test_the_same_seed_replays_the_same_faults(faults: Faults) -> None:
    assert injected(faults, 60) == injected(faults, 60)


@unhurried
@given(fault_configs)
def test_a_burst_keeps_its_consecutive_429s(faults: Faults) -> None:
    rl = faults.rate_limit
    assume(rl is not None and rl.burst > 0)
    assert rl is not None
    no_transport_faults = faults.model_copy(update={"reset_rate": 0.0, "hang_rate": 0.0})  # they beat a 429
    seen = injected(no_transport_faults, rl.after + rl.burst)
    assert seen[rl.after :] == ["rate_limit"] * rl.burst
    assert all(index not in range(rl.after, rl.after + rl.burst) for index in first_faults(faults))


def test_chaos_scenario_3_config_injects_every_kind_within_8_requests() -> None:
    """The configuration of tests/chaos/test_03 whose Mautic made 18 requests and never saw a reset."""
    faults = Faults(
        seed=31,
        latency_ms=2,
        jitter_ms=10,
        error_rate=0.10,
        hang_rate=0.05,
        hang_seconds=4,
        reset_rate=0.03,
        rate_limit=RateLimit(burst=15, after=20, rate=0.02, retry_after_s=1),
    )
    assert {"reset", "hang", "rate_limit", "error"} <= set(injected(faults, 8))


def test_a_scheduled_rate_limit_announces_the_configured_wait() -> None:
    injector = FaultInjector(Faults(seed=1, rate_limit=RateLimit(rate=1e-9, retry_after_s=7)))
    decisions = [injector.decide() for _ in range(8)]
    assert [(d.fault, d.retry_after_s) for d in decisions if d.fault] == [("rate_limit", 7)]


def test_zero_leaves_every_fault_to_chance() -> None:
    assert first_faults(Faults(seed=1, error_rate=1e-9, each_fault_within=0)) == {}
    assert injected(Faults(seed=1, error_rate=1e-9, each_fault_within=0), 50) == [None] * 50


def test_no_rate_means_no_fault() -> None:
    assert injected(Faults(seed=5), 30) == [None] * 30
