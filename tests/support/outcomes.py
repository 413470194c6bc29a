"""Reading a worker's outcomes back from Kafka in integration tests."""

from __future__ import annotations

from typing import Any

from harness import WorkerProcess, consume_until

from signal_sync.streams.records import Outcome


def consume_outcomes(
    bootstrap: str, topic: str, count: int, worker: WorkerProcess, timeout: float
) -> list[dict[str, Any]]:
    """The outcomes on ``topic`` once there are ``count`` of them (or at the deadline, or when the
    worker dies); asserts there are exactly ``count``, each following the ``Outcome`` contract."""
    outcomes = consume_until(
        bootstrap, topic, lambda got: len(got) >= count, timeout=timeout, check=worker.assert_alive
    )
    assert len(outcomes) == count, f"{len(outcomes)} outcomes, not {count}\n{worker.log_tail()}"
    for outcome in outcomes:
        Outcome.model_validate({k: v for k, v in outcome.items() if k != "_key"})
    return outcomes
