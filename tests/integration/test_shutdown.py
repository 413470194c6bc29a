"""SIGTERM with hostile records in flight: the worker exits cleanly inside its grace period, and
nothing is lost.

Hostile records (events too large to forward, a burst of large events of one contact, records
that are not events, a tombstone, an overflowing timestamp, header injection, a very long
message id, deep nesting) are produced among good events while Mautic answers every call
only after a few seconds, so deliveries are in flight when the worker is stopped. The stop must
end with exit code 0 well inside ``worker.shutdown_grace_s`` (default 25 s); a restarted worker
then gives every record its outcome for both integrations.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import WorkerProcess, consume_until, produce

from signal_sync.codecs.events import peek_message_id

pytestmark = pytest.mark.integration

GRACE_S = 25.0
"""The default ``worker.shutdown_grace_s``: the test keeps it."""
MAUTIC_LATENCY_MS = 3_000
CONSENT = {"consent": {"canonical": {"marketing": True}}}
INTEGRATIONS = ("mautic-main", "mailgun-news")


def event(message_id: str, anonymous_id: str, **fields: Any) -> tuple[bytes, bytes]:
    body = {
        "type": "identify",
        "messageId": message_id,
        "anonymousId": anonymous_id,
        "timestamp": "2026-06-06T14:40:00Z",
        "context": {"ip": "203.0.113.9", **CONSENT},
        **fields,
    }
    return anonymous_id.encode(), json.dumps(body).encode()


def person(n: int, **traits: Any) -> dict[str, Any]:
    return {"traits": {"email": f"stop.person{n}@example.com", "first_name": f"Stop{n}", **traits}}


def hostile_records() -> list[tuple[bytes | None, bytes | None]]:
    deep = b'{"type":"identify","messageId":"deep","traits":' + b'{"a":' * 2_000 + b"1" + b"}" * 2_001
    return [
        *(event(f"huge-{n}", f"anon-huge-{n}", **person(100 + n, bio="x" * 900_000)) for n in range(3)),
        *(event(f"burst-{n}", "anon-burst", **person(200, notes="y" * 100_000, step=n)) for n in range(12)),
        (None, b"\xff\xfe not json"),
        (b"anon-tombstone", None),
        (None, b"[1, 2, 3]"),
        (None, deep),
        event("overflow", "anon-overflow", timestamp="9999-12-31T23:00:00-05:00", **person(300)),
        event(
            "inject",
            "anon-inject",
            **person(301),
            context={"ip": "1.2.3.4\r\nX-Injected: 1", **CONSENT},
        ),
        event("m" * 500_000, "anon-long-id", **person(302)),
    ]


def wait_until_serving(config: Path, worker: WorkerProcess, timeout: float = 60.0) -> None:
    """Until the worker's web server answers /health (it has started)."""
    port = yaml.safe_load(config.read_text())["worker"]["web_port"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:  # loopback
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"the worker did not start within {timeout:.0f}s:\n{worker.log_tail()}")


def requests_in_flight(crm: Any) -> int:
    """Mautic API calls the emulator has received and not answered yet."""
    with urllib.request.urlopen(f"{crm.url}/_sandbox/requests", timeout=10) as reply:  # loopback emulator
        journal = json.loads(reply.read())["requests"]
    return sum(1 for entry in journal if entry.get("status") is None)


def test_sigterm_with_hostile_records_in_flight_exits_cleanly_and_loses_nothing(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes, worker_config
):
    crm, _mg = sandboxes
    faults = json.dumps({"latency_ms": MAUTIC_LATENCY_MS}).encode()
    request = urllib.request.Request(
        f"{crm.url}/_sandbox/faults", data=faults, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        assert reply.status == 200

    good = [event(f"good-{n}", f"anon-good-{n}", **person(n)) for n in range(30)]
    hostile = hostile_records()
    records: list[tuple[bytes | None, bytes | None]] = []
    for n, record in enumerate(hostile):  # two good events ahead of each hostile one, the rest after
        records.extend([*good[2 * n : 2 * n + 2], record])
    records.extend(good[2 * len(hostile) :])
    expected_ids = {peek_message_id(value) for _, value in records}

    worker = WorkerProcess(worker_config, tmp_path / "worker.log").start()
    try:
        produce(kafka_bootstrap, pipeline_topics["source"], records)  # type: ignore[arg-type]
        # Stop once the stream is under way: Mailgun delivers, Mautic's slower calls are in flight.
        started = consume_until(
            kafka_bootstrap,
            pipeline_topics["deliveries"],
            lambda got: any(o["integration"] == "mailgun-news" and o["status"] == "delivered" for o in got),
            timeout=120,
            check=worker.assert_alive,
        )
        assert started, worker.log_tail()
        # Mautic answers each call after 3 s: between two of its batches none may be in flight for
        # a moment, so stop as soon as one is (a deadline, not a sleep).
        deadline = time.monotonic() + 60
        while (in_flight := requests_in_flight(crm)) == 0 and time.monotonic() < deadline:
            worker.assert_alive()
            time.sleep(0.05)
        stopping = time.monotonic()
        code = worker.stop(timeout=GRACE_S + 20)
        elapsed = time.monotonic() - stopping
    finally:
        worker.stop()
    print(f"stop took {elapsed:.1f}s with {in_flight} Mautic call(s) in flight; exit code {code}")
    assert in_flight > 0, "the stop came with Mautic calls in flight"
    assert code == 0, worker.log_tail()
    assert elapsed < GRACE_S, f"stop took {elapsed:.1f}s with a {GRACE_S:.0f}s grace period"
    log = worker.log_path.read_text(encoding="utf-8")
    assert "acked without an outcome" not in log and '"level":"CRITICAL"' not in log

    # Nothing was lost: after the restart every record has its outcome for both integrations.
    second = WorkerProcess(worker_config, tmp_path / "worker-2.log").start()
    try:

        def complete(got: list[dict[str, Any]]) -> bool:
            seen = defaultdict(set)
            for outcome in got:
                seen[outcome["message_id"]].add(outcome["integration"])
            return all(set(INTEGRATIONS) <= seen[message_id] for message_id in expected_ids)

        outcomes = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], complete, timeout=180, check=second.assert_alive
        )
        wait_until_serving(worker_config, second)  # a SIGTERM before its start would not be a clean stop
    finally:
        assert second.stop() == 0, second.log_tail()
    by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for outcome in outcomes:
        by_pair[(outcome["message_id"], outcome["integration"])].add(outcome["status"])
    missing = [(m[:40], i) for m in expected_ids for i in INTEGRATIONS if (m, i) not in by_pair]
    assert not missing, missing
    for n in range(30):
        for integration in INTEGRATIONS:
            assert by_pair[(f"good-{n}", integration)] == {"delivered"}, (n, integration)
