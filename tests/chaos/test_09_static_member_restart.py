"""Scenario 9: the chart's way of running: two static group members, each with a standby copy of
the other's tables; SIGKILL one mid-stream and start it again at once over its state folder.

The killed worker rejoins under its name within the session timeout (Faust's 60 s), so the group
does not rebalance: the survivor keeps exactly its partitions, the restarted one gets its own
back, reads only the changelog records its folder lacks and redelivers what it had not committed.
"""

from __future__ import annotations

import random
import uuid

import pytest

from tests.chaos.checks import (
    StreamProducer,
    assigned,
    kill_mid_stream,
    set_faults,
    wait_until,
    worker_metric,
)
from tests.chaos.conftest import PARTITIONS  # the source topic and both delivery topics have them
from tests.chaos.workload import build_workload
from tests.support.workers import forgot_kept_state, settled, web_port

pytestmark = pytest.mark.chaos

SEED = 909
REBALANCES = "signal_sync_rebalances_total"


def test_a_static_member_killed_and_back_loses_nothing_and_moves_no_partition(chaos):
    chaos.scenario = "9 static member killed, back"
    chaos.work = work = build_workload(seed=SEED, people=300, events_per_person=10)
    for n, server in enumerate((chaos.mautic, chaos.mailgun)):
        set_faults(server.url, {"seed": n, "latency_ms": 5, "jitter_ms": 20})
    app_id = f"chaos-{uuid.uuid4().hex[:8]}"
    configs = [
        chaos.config(
            f"{name}.yaml",
            app_id=app_id,
            kafka={"group_instance_id": f"{app_id}-{name}"},
            worker={"standby_replicas": 1},
        )
        for name in ("a", "b")
    ]
    ports = [web_port(c) for c in configs]
    workers = [chaos.start_worker(c, label) for c, label in zip(configs, ("a", "b"), strict=True)]

    def alive() -> None:
        for w in workers:
            w.assert_alive()

    before = settled(ports, workers, 3 * PARTITIONS)
    rng = random.Random(SEED)
    victim = rng.randrange(2)
    survivor = ports[1 - victim]
    survivor_rebalances = worker_metric(survivor, REBALANCES)

    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=100)
    stream.start()
    need = rng.randint(600, 1500)
    log.wait(
        "progress before the kill", lambda: len(log.records) >= need, 120, lambda: (alive(), stream.check())
    )
    killed_at = kill_mid_stream(chaos, log, workers[victim], rng)
    workers[victim] = chaos.start_worker(configs[victim], f"{'ab'[victim]}-again")

    took = wait_until(
        "the restarted worker to hold its partitions", lambda: assigned(ports[victim]) > 0, 90, alive
    )
    chaos.notes.append(
        f"partitions {before[0]}+{before[1]}; killed {'ab'[victim]} at {killed_at} outcomes; back with "
        f"{assigned(ports[victim])} partitions {took:.0f}s later; survivor rebalances "
        f"+{worker_metric(survivor, REBALANCES) - survivor_rebalances:.0f}"
    )

    verdict = chaos.finish(log, check=lambda: (alive(), stream.check()), timeout=240)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)
    assert [assigned(p) for p in ports] == before, "the partitions moved"
    assert worker_metric(survivor, REBALANCES) == survivor_rebalances, "the survivor took part in a rebalance"
    assert not forgot_kept_state(workers[victim]), "the restarted worker read its partitions anew"
