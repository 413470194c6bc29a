"""Scenario 1: SIGKILL the worker three times at random points mid-stream, restart it each time.

The stream is produced live (60 events/s). Each kill comes after a seeded random amount of
progress since the last restart plus a seeded random delay, so it lands with requests in
flight and offsets uncommitted (the emulators add 5-25 ms per request). The restarted
worker joins the same consumer group; Faust reads ``BROKER_SESSION_TIMEOUT`` from the
environment, set to 10 s here so the dead member's partitions are reassigned after 10 s
instead of Faust's default 60 s. At-least-once: nothing may be lost; events whose offsets
were not committed are delivered again (duplicates, counted), each contact's replay
starting from its oldest uncommitted event and moving forward in order.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.chaos.checks import StreamProducer, set_faults
from tests.chaos.workload import build_workload

pytestmark = pytest.mark.chaos

SEED = 101


def test_three_sigkills_lose_nothing(chaos, monkeypatch):
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", "10")
    monkeypatch.setenv("BROKER_HEARTBEAT_INTERVAL", "1")
    chaos.scenario = "1 SIGKILL x3 + restarts"
    chaos.work = work = build_workload(seed=SEED, people=300, events_per_person=10)
    for n, server in enumerate((chaos.mautic, chaos.mailgun)):
        set_faults(server.url, {"seed": n, "latency_ms": 5, "jitter_ms": 20})
    config = chaos.config()
    current = [chaos.start_worker(config)]
    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=60)
    stream.start()

    def check() -> None:
        current[0].assert_alive()
        stream.check()

    rng = random.Random(SEED)
    kills = []
    for n in range(3):
        target = len(log.records) + rng.randint(200, 600)

        def progressed(target: int = target) -> bool:
            return len(log.records) >= target or log.done()

        log.wait(f"progress before kill {n + 1}", progressed, 120, check)
        time.sleep(rng.uniform(0.0, 0.5))  # deliberate: a random kill point
        log.pump(0.0)
        victim = current[0]
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(10)
        chaos.boundary()
        kills.append(f"{len(log.records)} outcomes/{stream.produced} produced")
        assert not log.done(), "the stream ended before the kill: not mid-stream any more"
        current[0] = chaos.start_worker(config)
    chaos.notes.append("killed at " + ", ".join(kills))

    verdict = chaos.finish(log, check=check, timeout=240)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)
