"""Scenario 7: SIGTERM under load: the worker exits inside worker.shutdown_grace_s, and the restart
redelivers at most what was in flight.

The emulators answer in 100-200 ms so many deliveries are in flight when the signal
comes. The time from SIGTERM to process exit is measured against the grace period
(10 s here). After a restart with the same config, the duplicates (outcomes written a
second time for the same delivery_id) must stay within delivery.max_in_flight x
integrations: the most a worker can have started and not committed per integration.
"""

from __future__ import annotations

import signal
import time

import pytest
import yaml

from tests.chaos.checks import StreamProducer, get_json, set_faults, worker_metric
from tests.chaos.workload import INTEGRATIONS, build_workload

pytestmark = pytest.mark.chaos

GRACE_S = 10.0
MAX_IN_FLIGHT = 32


def test_sigterm_exits_within_grace_and_restart_redelivers_at_most_in_flight(chaos):
    chaos.scenario = "7 SIGTERM under load"
    chaos.work = work = build_workload(seed=707, people=300, events_per_person=10)
    for n, server in enumerate((chaos.mautic, chaos.mailgun)):
        set_faults(server.url, {"seed": n, "latency_ms": 100, "jitter_ms": 100})
    config = chaos.config(worker={"shutdown_grace_s": GRACE_S}, delivery={"max_in_flight": MAX_IN_FLIGHT})
    port = yaml.safe_load(config.read_text())["worker"]["web_port"]
    worker = chaos.start_worker(config)
    log = chaos.outcome_log(work)
    stream = StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records, rate=200)
    stream.start()

    def alive() -> None:
        worker.assert_alive()
        stream.check()

    log.wait("deliveries under load", lambda: len(log.records) >= 1500, 120, alive)
    in_flight = worker_metric(port, "signal_sync_http_requests_in_flight")
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    chaos.boundary()
    while worker.proc.poll() is None and time.monotonic() - signalled < GRACE_S + 20:
        time.sleep(0.05)
    took = time.monotonic() - signalled
    code = worker.proc.poll()
    log.pump(1.0)
    at_exit = len(log.records)
    chaos.notes.append(
        f"SIGTERM at {at_exit} outcomes with {in_flight:.0f} HTTP requests in flight: "
        f"exit {code} after {took:.1f}s (grace {GRACE_S:.0f}s)"
    )
    assert code is not None, f"still running {took:.0f}s after SIGTERM\n{worker.log_tail(80)}"

    restarted = chaos.start_worker(config)

    def check() -> None:
        restarted.assert_alive()
        stream.check()

    verdict = chaos.finish(log, check=check, timeout=240)
    bound = MAX_IN_FLIGHT * len(INTEGRATIONS)
    chaos.notes.append(f"redelivered {verdict.duplicates} (bound {bound})")

    assert took <= GRACE_S, f"exit took {took:.1f}s, grace is {GRACE_S}s\n{worker.log_tail(80)}"
    assert code == 0, f"exit code {code} (70 = grace ran out)\n{worker.log_tail(80)}"
    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert verdict.duplicates <= bound, f"{verdict.duplicates} duplicates > {bound}"
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)


def test_sigterm_with_a_hung_destination_still_exits_within_grace(chaos, monkeypatch):
    """The abandon path: Mautic holds every request for 60 s, so in-flight work cannot finish;
    the worker must still exit within the grace period, and the restart delivers the rest.

    An exit forced by the grace deadline skips the consumer group's LeaveGroup, so the
    restarted worker gets the partitions only once the old member's session expires:
    ``BROKER_SESSION_TIMEOUT`` = 10 s here instead of Faust's 60 s.

    The second half of the input is produced only once Mautic hangs: produced at once, a fast
    worker had delivered all of it before the fault was set, and no request was left to hang.
    """
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", "10")
    monkeypatch.setenv("BROKER_HEARTBEAT_INTERVAL", "1")
    chaos.scenario = "7b SIGTERM, Mautic hung"
    chaos.work = work = build_workload(seed=708, people=100, events_per_person=6)
    config = chaos.config(worker={"shutdown_grace_s": GRACE_S}, delivery={"max_in_flight": MAX_IN_FLIGHT})
    worker = chaos.start_worker(config)
    log = chaos.outcome_log(work)
    half = len(work.records) // 2
    streams = [StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records[:half], rate=1000)]
    streams[0].start()

    def alive() -> None:
        worker.assert_alive()
        for stream in streams:
            stream.check()

    log.wait("the first Mautic deliveries", lambda: log.count(INTEGRATIONS[0]) >= 100, 120, alive)
    set_faults(chaos.mautic.url, {"hang_rate": 1.0, "hang_seconds": 60})
    log.wait("the first half acknowledged", lambda: streams[0].done, 60, alive)  # keeps each key's order
    streams.append(StreamProducer(chaos.bootstrap, chaos.topics["source"], work.records[half:], rate=1000))
    streams[1].start()
    log.wait(
        "Mautic requests hanging",
        lambda: get_json(f"{chaos.mautic.url}/_sandbox/faults")["stats"].get("hang", 0) > 0,
        30,
        alive,
    )
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    chaos.boundary()
    while worker.proc.poll() is None and time.monotonic() - signalled < GRACE_S + 20:
        time.sleep(0.05)
    took = time.monotonic() - signalled
    code = worker.proc.poll()
    chaos.notes.append(f"exit {code} after {took:.1f}s (grace {GRACE_S:.0f}s)")
    assert code is not None, f"still running {took:.0f}s after SIGTERM\n{worker.log_tail(80)}"
    set_faults(chaos.mautic.url, {})  # releases the held requests too

    restarted = chaos.start_worker(config)

    def check() -> None:
        restarted.assert_alive()
        for stream in streams:
            stream.check()

    verdict = chaos.finish(log, check=check, timeout=240)
    bound = MAX_IN_FLIGHT * len(INTEGRATIONS)
    chaos.notes.append(f"redelivered {verdict.duplicates} (bound {bound})")

    assert took <= GRACE_S + 1.0, f"exit took {took:.1f}s, grace is {GRACE_S}s\n{worker.log_tail(80)}"
    assert code in (0, 70), f"exit code {code}\n{worker.log_tail(80)}"
    assert not verdict.problems, verdict.summary() + "\n" + chaos.logs()
    assert verdict.duplicates <= bound, f"{verdict.duplicates} duplicates > {bound}"
    assert verdict.out_of_order == 0
    assert not verdict.history, "\n".join(verdict.history)
