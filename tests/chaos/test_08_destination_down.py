"""Scenario 8: Mautic is unreachable for 60 s mid-stream (connections refused), Mailgun is healthy.

The stream is produced live. Once Mautic deliveries flow, the Mautic emulator's listener is
taken down (in-flight requests are answered, then every connection is refused) and brought
back on the same port 60 s later with its state intact: a destination's maintenance window.
The Mautic integration must hold its events — its circuit opens, nothing is failed or
dead-lettered, no outcome is written, the paused gauge shows it — while Mailgun delivers
the whole stream; once Mautic listens again the integration resumes by itself and delivers
everything, in contact order.

The emulator listens on a port below the kernel's ephemeral range, so no outgoing connection
of this machine can take the port while the listener is down.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest
import yaml

from signal_sync.sandbox import mautic, start_in_thread
from tests.chaos.checks import StreamProducer, get_json, worker_metric
from tests.chaos.workload import MAILGUN, MAUTIC, build_workload

pytestmark = pytest.mark.chaos

OUTAGE_S = 60.0
GATED = {"delivered", "failed"}  # outcomes that need the destination (drops are decided before)


def port_outside_ephemeral_range() -> int:
    """A free loopback port the kernel never hands to an outgoing connection (Linux), else any."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = random.sample(range(max(1024, low - 8000), low), 200) if low > 2048 else [0]
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise AssertionError("no free port below the ephemeral range")


def test_mautic_unreachable_for_a_minute_holds_its_events_and_loses_nothing(chaos):
    chaos.scenario = "8 Mautic down 60 s"
    chaos.work = work = build_workload(seed=808, people=300, events_per_person=10)
    crm = start_in_thread(
        mautic.create_app(username="signal", password="sandbox-password"), port=port_outside_ephemeral_range()
    )
    chaos.mautic = crm  # the verdict and the dump read this emulator
    try:
        config = chaos.config(delivery={"pause_probe_initial_s": 0.5, "pause_probe_max_s": 2.0})
        port = yaml.safe_load(config.read_text())["worker"]["web_port"]
        worker = chaos.start_worker(config)
        log = chaos.outcome_log(work)
        dead = chaos.dead_letters()
        stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=100)
        stream.start()

        def check() -> None:
            worker.assert_alive()
            stream.check()

        def gated(integration: str, statuses: set[str] = GATED) -> int:
            return sum(1 for r in log.records if r["integration"] == integration and r["status"] in statuses)

        log.wait("Mautic deliveries flowing", lambda: gated(MAUTIC) >= 200, 90, check)
        crm.take_down()
        down_at = time.monotonic()
        # Requests answered just before the listener closed may still write their outcome; then nothing.
        log.wait("in-flight Mautic requests to settle", lambda: time.monotonic() - down_at > 3.0, 10, check)
        frozen = gated(MAUTIC)
        mailgun_at_outage = gated(MAILGUN)
        log.wait("every Mailgun outcome while Mautic is down", lambda: log.done(MAILGUN), OUTAGE_S - 5, check)
        paused = worker_metric(port, "signal_sync_integration_paused", integration=MAUTIC)
        during = gated(MAUTIC)
        failed_during = gated(MAUTIC, {"failed"})
        log.wait("the rest of the outage", lambda: time.monotonic() - down_at >= OUTAGE_S, OUTAGE_S, check)
        crm.bring_up()
        back_at = time.monotonic()

        verdict = chaos.finish(log, check=check, timeout=180)
        caught_up_s = time.monotonic() - back_at
        dead.pump(1.0)
        stats = get_json(f"{crm.url}/_sandbox/faults")["stats"]
        chaos.notes.append(
            f"down {OUTAGE_S:.0f}s: Mailgun +{gated(MAILGUN) - mailgun_at_outage} outcomes, "
            f"Mautic +{during - frozen}; caught up {caught_up_s:.0f}s after it was back "
            f"({stats.get('requests', 0)} Mautic requests answered in all)"
        )

        assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
        assert gated(MAILGUN) - mailgun_at_outage > 0, "Mailgun flows during the Mautic outage"
        assert during == frozen, f"Mautic wrote {during - frozen} outcomes while unreachable"
        assert failed_during == 0 and not [r for r in log.records if r["status"] == "failed"], (
            "an unreachable destination holds its events; it fails none"
        )
        assert not dead.records, f"nothing is dead-lettered: {dead.records[:2]}"
        assert paused == 1, f"the paused gauge shows the held integration (got {paused})"
        assert not verdict.history, "\n".join(verdict.history)
    finally:
        crm.stop()
