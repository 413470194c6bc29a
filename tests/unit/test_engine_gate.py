"""Integration gate: concurrency cap, pause/resume, probe delays, and what one delivery's watch
counts as the destination answering others. The circuit breaker's counting is tested through
``send_through_gate`` over real HTTP (tests/integration/test_delivery_resilience.py)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from signal_sync.destinations.classify import Classification, Verdict
from signal_sync.engine.gate import DeliveryWatch, IntegrationGate

# Who saw which answer: this delivery's own attempts go through its watch, others' to the gate.
ATTEMPTS = st.lists(st.tuples(st.booleans(), st.sampled_from(list(Verdict))), max_size=30)


async def test_concurrency_cap_is_enforced() -> None:
    gate = IntegrationGate("m", max_in_flight=3)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        await gate.admit()
        try:
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1
        finally:
            gate.leave()

    await asyncio.gather(*(work() for _ in range(12)))
    assert peak == 3


async def test_pause_blocks_admission_until_resume() -> None:
    gate = IntegrationGate("m")
    assert gate.pause("http_401", "hint") is True
    assert gate.pause("http_401", "hint") is False, "pausing twice reports once"
    assert gate.state.paused and gate.state.hint == "hint"
    waiter = asyncio.create_task(gate.wait_open())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    gate.resume()
    await asyncio.wait_for(waiter, 1)
    assert not gate.state.paused


def test_probe_delays_double_up_to_the_maximum() -> None:
    gate = IntegrationGate("m", probe_initial_s=1, probe_max_s=5)
    gate.pause("http_401", None)
    delays = gate.probe_delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


def test_an_open_circuit_waits_open_for_s_before_its_first_probe() -> None:
    gate = IntegrationGate("m", open_for_s=3, probe_initial_s=1, probe_max_s=10)
    assert gate.open_circuit() is True
    assert gate.open_circuit() is False, "opening twice reports once"
    assert gate.state.reason == "circuit_open" and gate.halted
    delays = gate.probe_delays()
    assert [next(delays) for _ in range(4)] == [3, 6, 10, 10]
    longer = IntegrationGate("m", open_for_s=60, probe_max_s=10)
    longer.open_circuit()
    delays = longer.probe_delays()
    assert [next(delays) for _ in range(2)] == [60, 60]


def test_a_fault_during_an_open_circuit_becomes_the_reason() -> None:
    gate = IntegrationGate("m")
    gate.open_circuit()
    since = gate.state.since
    assert gate.pause("http_401", "check the key") is True
    assert (gate.state.reason, gate.state.hint, gate.state.since) == ("http_401", "check the key", since)
    assert gate.open_circuit() is False, "a paused integration stays paused for its fault"


async def test_rate_limit_spaces_requests() -> None:
    gate = IntegrationGate("m", rate_per_s=50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(60):
        await gate.admit()
        gate.leave()
    assert loop.time() - start >= 0.1, "60 requests at 50/s need more than the first second's bucket"


def test_pause_and_resume_log_structured_fields(caplog) -> None:
    gate = IntegrationGate("mautic-main")
    with caplog.at_level("WARNING", logger="signal_sync.engine.gate"):
        gate.pause("http_401", "check the API user's credentials")
        gate.resume()
    paused, resumed = caplog.records
    assert (paused.integration, paused.reason, paused.hint) == (
        "mautic-main",
        "http_401",
        "check the API user's credentials",
    )
    assert (resumed.integration, resumed.reason) == ("mautic-main", "http_401")


@given(attempts=ATTEMPTS)
def test_a_delivery_counts_only_answers_to_others_after_its_own_first_outage_failure(
    attempts: list[tuple[bool, Verdict]],
) -> None:
    gate = IntegrationGate("m", failure_threshold=1_000)
    watch = DeliveryWatch(gate)
    failed_once = answered_since = False
    for own, verdict in attempts:
        classification = Classification(verdict)
        (watch if own else gate).attempted(classification)
        answered_since |= failed_once and verdict is Verdict.DELIVERED
        failed_once |= own and classification.destination_down
    assert watch.others_answered == answered_since
    assert watch.halted == gate.halted
