"""Scenario 5: the Kafka broker stops for 20 s mid-stream and comes back; the worker recovers alone.

Needs the session's local JVM broker (``local_kafka``): it is stopped with ``stop()`` and
started again on the same ports and data. The input keeps being produced during the
outage (the test's producer buffers it). The worker is not restarted: it must stay alive
through the outage and then deliver everything, nothing lost.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

from tests.chaos.checks import StreamProducer, set_faults
from tests.chaos.workload import build_workload

pytestmark = pytest.mark.chaos

OUTAGE_S = 20.0


def test_worker_recovers_from_a_20s_broker_outage_without_restart(chaos, local_kafka):
    if local_kafka is None:
        reason = "scenario 5 stops the broker: it needs the local JVM broker, not an external or Docker one"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    chaos.scenario = "5 broker down 20s"
    chaos.work = work = build_workload(seed=505, people=300, events_per_person=10)
    for n, server in enumerate((chaos.mautic, chaos.mailgun)):
        set_faults(server.url, {"seed": n, "latency_ms": 5, "jitter_ms": 20})
    worker = chaos.start_worker(chaos.config())
    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=100)
    stream.start()

    def check() -> None:
        worker.assert_alive()
        stream.check()

    def written_after(moment: float) -> bool:
        return any(
            datetime.fromisoformat(r["completed_at"].replace("Z", "+00:00")).timestamp() >= moment
            for r in log.records[-200:]
        )

    log.wait("deliveries flowing", lambda: len(log.records) >= 1000, 90, check)
    before = len(log.records)
    chaos.boundary()
    stopping = time.monotonic()
    local_kafka.stop()
    stopped = time.monotonic()
    try:
        while time.monotonic() - stopped < OUTAGE_S:  # the deliberate outage; the worker must survive it
            worker.assert_alive()
            time.sleep(0.5)
    finally:
        starting = time.monotonic()
        local_kafka.start()
    restarted, back_at = time.monotonic(), time.time()
    outage = (
        f"broker stop took {stopped - stopping:.1f}s at {before} outcomes, down {starting - stopped:.0f}s, "
        f"start took {restarted - starting:.1f}s"
    )
    try:
        recovered = log.wait(
            "the first outcome written after the outage", lambda: written_after(back_at), 120, check
        )
    except AssertionError as exc:
        chaos.notes.append(f"{outage}; no outcome after it was back")
        raise AssertionError(f"{exc}\n{chaos.logs(80)}") from None
    chaos.notes.append(f"{outage}; outcomes again {recovered:.1f}s later")

    verdict = chaos.finish(log, check=check, timeout=240)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs(80)
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)
