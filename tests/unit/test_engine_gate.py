"""Integration gate: concurrency cap, pause/resume on faults, circuit breaker."""

from __future__ import annotations

import asyncio

from signal_sync.engine.gate import IntegrationGate


async def test_concurrency_cap_is_enforced() -> None:
    gate = IntegrationGate("m", max_in_flight=3)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with gate.admitted():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1

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


async def test_a_run_of_failures_opens_the_circuit_then_half_opens() -> None:
    gate = IntegrationGate("m", failure_threshold=3, open_for_s=0.05)
    gate.record_failed()
    gate.record_delivered()
    gate.record_failed()
    gate.record_failed()
    assert not gate.state.paused, "a success in between resets the run"
    gate.record_failed()
    assert gate.state.paused and gate.state.reason == "circuit_open"
    await asyncio.wait_for(gate.wait_open(), 1)
    gate.record_failed()
    assert gate.state.paused, "half-open: one more failure re-opens"


def test_probe_delays_double_up_to_the_maximum() -> None:
    gate = IntegrationGate("m", probe_initial_s=1, probe_max_s=5)
    delays = gate.probe_delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


async def test_rate_limit_spaces_requests() -> None:
    gate = IntegrationGate("m", rate_per_s=50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(60):
        async with gate.admitted():
            pass
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
