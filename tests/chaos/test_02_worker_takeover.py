"""Scenario 2: two workers in one consumer group; SIGKILL one mid-stream; the other takes over.

Both workers (same app id, own web ports and state dirs) share the partitions before the
stream starts. One of them, chosen by the seed, is killed after a seeded random amount of
progress; the survivor gets its partitions once the dead member's session expires
(``BROKER_SESSION_TIMEOUT`` = 10 s), redelivers what the victim had not committed, and
finishes the stream alone.
"""

from __future__ import annotations

import random
import uuid

import pytest
import yaml

from tests.chaos.checks import StreamProducer, assigned, kill_mid_stream, set_faults, wait_until
from tests.chaos.workload import build_workload

pytestmark = pytest.mark.chaos

SEED = 202


def test_survivor_takes_over_the_killed_workers_partitions(chaos, monkeypatch):
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", "10")
    monkeypatch.setenv("BROKER_HEARTBEAT_INTERVAL", "1")
    chaos.scenario = "2 two workers, one SIGKILLed"
    chaos.work = work = build_workload(seed=SEED, people=300, events_per_person=10)
    for n, server in enumerate((chaos.mautic, chaos.mailgun)):
        set_faults(server.url, {"seed": n, "latency_ms": 5, "jitter_ms": 20})
    app_id = f"chaos-{uuid.uuid4().hex[:8]}"
    configs = [chaos.config(f"{name}.yaml", app_id=app_id) for name in ("a", "b")]
    ports = [yaml.safe_load(c.read_text())["worker"]["web_port"] for c in configs]
    workers = [chaos.start_worker(c, label) for c, label in zip(configs, ("a", "b"), strict=True)]

    def both_alive() -> None:
        for w in workers:
            w.assert_alive()

    wait_until("both workers to hold partitions", lambda: all(assigned(p) for p in ports), 90, both_alive)
    before = [assigned(p) for p in ports]

    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=100)
    stream.start()
    rng = random.Random(SEED)
    victim = rng.randrange(2)
    survivor = workers[1 - victim]

    def check() -> None:
        survivor.assert_alive()
        stream.check()

    need = rng.randint(600, 1500)
    log.wait(
        "progress before the kill",
        lambda: len(log.records) >= need,
        120,
        lambda: (both_alive(), stream.check()),
    )
    killed_at = kill_mid_stream(chaos, log, workers[victim], rng)

    took = wait_until(
        "the survivor to hold every partition",
        lambda: assigned(ports[1 - victim]) >= sum(before),
        90,
        check,
    )
    chaos.notes.append(
        f"partitions {before[0]}+{before[1]}; killed {'ab'[victim]} at {killed_at} outcomes; "
        f"survivor held all {took:.0f}s later"
    )

    verdict = chaos.finish(log, check=check, timeout=240)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)
