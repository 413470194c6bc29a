"""Scenario 3: both destinations misbehave at once; every delivery still ends `delivered`.

~10% 503s, ~5% requests held past the client timeout (delivery.timeout_s = 1 s, the
emulator holds them 4 s, then answers 504 without applying them), ~3% dropped
connections, a burst of 15 consecutive 429s with Retry-After (Mailgun) or
X-RateLimit-Reset (Mautic) plus 2% random 429s. No worker crash, so per-contact order
must be exact.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.checks import get_json, produce, set_faults
from tests.chaos.workload import build_workload

pytestmark = pytest.mark.chaos


def faults(seed: int, burst_after: int) -> dict:
    return {
        "seed": seed,
        "latency_ms": 2,
        "jitter_ms": 10,
        "error_rate": 0.10,
        "error_status": 503,
        "hang_rate": 0.05,
        "hang_seconds": 4,
        "reset_rate": 0.03,
        "rate_limit": {"burst": 15, "after": burst_after, "rate": 0.02, "retry_after_s": 1},
    }


def test_destination_faults_end_delivered_with_retries_recorded(chaos):
    chaos.scenario = "3 destination faults"
    chaos.work = work = build_workload(seed=303, people=300, events_per_person=10)
    set_faults(chaos.mautic.url, faults(31, burst_after=20))
    set_faults(chaos.mailgun.url, faults(32, burst_after=40))
    config = chaos.config(
        delivery={
            "timeout_s": 1,
            "max_attempts": 12,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.5,
        }
    )
    worker = chaos.start_worker(config)
    log = chaos.outcome_log(work)
    produce(chaos.bootstrap, chaos.topics["source"], work.records)

    verdict = chaos.finish(log, check=worker.assert_alive, timeout=240)

    stats = {
        name: get_json(f"{server.url}/_sandbox/faults")["stats"]
        for name, server in (("mautic", chaos.mautic), ("mailgun", chaos.mailgun))
    }
    attempts = Counter(r["attempts"] for r in log.records if r["status"] == "delivered")
    retried = sum(n for a, n in attempts.items() if a > 1)
    chaos.notes.append(f"{retried} deliveries needed >1 attempt (max {max(attempts, default=0)})")
    injected = {
        name: "/".join(f"{kind}={counts.get(kind, 0)}" for kind in ("error", "hang", "reset", "rate_limit"))
        for name, counts in stats.items()
    }
    chaos.notes.append("injected " + ", ".join(f"{name} {text}" for name, text in injected.items()))
    dead = chaos.dead_letters()
    dead.pump(1.0)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert retried > 0, attempts
    for name, counts in stats.items():
        for fault in ("error", "hang", "reset", "rate_limit"):
            assert counts.get(fault, 0) > 0, f"{name} never injected {fault}: {counts}"
    assert not dead.records, f"nothing should be dead-lettered: {dead.records[:2]}"
    assert not verdict.history, "\n".join(verdict.history)
