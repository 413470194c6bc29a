"""Scenario 4: Mautic answers 401 for a while (credentials revoked) while Mailgun is healthy.

The stream is produced live. Once deliveries flow, Mautic is switched to ``force_status:
401``: the Mautic integration pauses (no outcome, no commit, nothing dropped) and probes,
while Mailgun keeps delivering; the test proves it by waiting, during the outage, for
every Mailgun outcome of the whole stream. Then Mautic accepts again and must catch up
with nothing lost, in order.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.checks import StreamProducer, get_json, set_faults, worker_json
from tests.chaos.workload import MAILGUN, MAUTIC, build_workload

pytestmark = pytest.mark.chaos

GATED = {"delivered", "failed"}  # outcomes that need the destination (drops are decided before)


def test_mautic_outage_pauses_mautic_only_and_it_catches_up(chaos):
    chaos.scenario = "4 Mautic 401 outage"
    chaos.work = work = build_workload(seed=404, people=300, events_per_person=10)
    config = chaos.config(delivery={"pause_probe_initial_s": 0.5, "pause_probe_max_s": 2.0})
    port = int(config.read_text().split("web_port: ")[1].split()[0])
    worker = chaos.start_worker(config)
    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=150)
    stream.start()

    def check() -> None:
        worker.assert_alive()
        stream.check()

    def gated(integration: str) -> int:
        return sum(1 for r in log.records if r["integration"] == integration and r["status"] in GATED)

    log.wait("Mautic deliveries flowing", lambda: gated(MAUTIC) >= 200, 90, check)
    set_faults(chaos.mautic.url, {"force_status": 401})
    outage_started = time.monotonic()
    # Requests answered just before the switch may still write their outcome; then nothing more.
    log.wait("the pause to settle", lambda: time.monotonic() - outage_started > 2.0, 10, check)
    frozen = gated(MAUTIC)
    mailgun_at_switch = gated(MAILGUN)
    log.wait("every Mailgun outcome during the Mautic outage", lambda: log.done(MAILGUN), 120, check)
    status, ready = worker_json(port, "/ready")
    _, health = worker_json(port, "/health")
    during = gated(MAUTIC)
    probes = get_json(f"{chaos.mautic.url}/_sandbox/faults")["stats"].get("force_status", 0)
    outage_s = time.monotonic() - outage_started
    set_faults(chaos.mautic.url, {})
    chaos.notes.append(
        f"outage {outage_s:.0f}s: Mailgun +{gated(MAILGUN) - mailgun_at_switch} outcomes, "
        f"Mautic +{during - frozen}, {probes} requests answered 401"
    )

    verdict = chaos.finish(log, check=check, timeout=180)

    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert during == frozen, f"Mautic wrote {during - frozen} outcomes while it answered 401"
    assert gated(MAILGUN) - mailgun_at_switch > 0
    # A destination fault never makes the worker unready; /health names it.
    assert status == 200, ready
    assert health["integrations"][MAUTIC]["status"] == "fault", health
    assert not [r for r in log.records if r["integration"] == MAUTIC and r["status"] == "failed"], (
        "a paused integration must not fail events"
    )
    assert not verdict.history, "\n".join(verdict.history)
