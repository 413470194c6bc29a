"""Delivery engine on the real broker: a revoked-credentials pause that loses nothing while the
other integration keeps flowing, and a dead-letter replay addressed to one integration."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter

import orjson
import pytest
from harness import consume_until, produce

from tests.support.dead_letters import consume_letters
from tests.support.sandbox import set_faults

pytestmark = pytest.mark.integration


def events(prefix: str, contacts: int, per_contact: int) -> list[tuple[bytes, bytes]]:
    records = []
    for step in range(per_contact):
        for n in range(contacts):
            body = {
                "type": "identify",
                "messageId": f"{prefix}-{n}-{step}",
                "anonymousId": f"{prefix}-anon-{n}",
                "timestamp": f"2026-06-06T10:00:{step:02d}Z",
                "traits": {"email": f"{prefix}.{n}@example.com", "plan": f"plan-{step}"},
                "context": {"consent": {"canonical": {"marketing": True}}},
            }
            records.append((f"{prefix}-anon-{n}".encode(), orjson.dumps(body)))
    return records


def by_integration(outcomes: list[dict]) -> Counter:
    return Counter((o["integration"], o["status"]) for o in outcomes)


def test_revoked_credentials_pause_mautic_while_mailgun_flows_then_mautic_catches_up(
    kafka_bootstrap, pipeline_topics, sandboxes, worker
):
    crm, mg = sandboxes
    set_faults(crm.url, {"force_status": 401})
    records = events("pause", contacts=12, per_contact=3)
    produce(kafka_bootstrap, pipeline_topics["source"], records)

    during = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: by_integration(got)[("mailgun-news", "delivered")] >= len(records),
        120,
        check=worker.assert_alive,
    )
    counts = by_integration(during)
    assert counts[("mailgun-news", "delivered")] == len(records), counts
    assert not [o for o in during if o["integration"] == "mautic-main"], (
        "a paused integration writes no outcome"
    )

    set_faults(crm.url, {})
    after = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 2 * len(records),
        120,
        check=worker.assert_alive,
    )
    counts = by_integration(after)
    assert counts == {("mailgun-news", "delivered"): len(records), ("mautic-main", "delivered"): len(records)}
    with urllib.request.urlopen(f"{crm.url}/_sandbox/contacts", timeout=10) as reply:
        contacts = json.loads(reply.read())["contacts"]
    assert {c["fields"]["all"]["email"] for c in contacts} == {f"pause.{n}@example.com" for n in range(12)}
    assert all(c["fields"]["all"].get("plan") is None for c in contacts)  # plan is not a Mautic field
    with urllib.request.urlopen(f"{crm.url}/_sandbox/log/pause.0@example.com", timeout=10) as reply:
        applied = json.loads(reply.read())["applied"]
    stamps = [entry["changes"]["lastActive"] for entry in applied if "lastActive" in entry["changes"]]
    # Caught up in order with nothing lost: the last applied state is the contact's last event (a contact's
    # queued events may be coalesced into one upsert, so there can be fewer requests than events).
    assert stamps == sorted(stamps) and stamps[-1].startswith("2026-06-06T10:00:02"), stamps


def test_failed_deliveries_are_dead_lettered_and_replayed_to_their_integration_only(
    kafka_bootstrap, pipeline_topics, sandboxes, worker, worker_config
):
    crm, mg = sandboxes
    set_faults(mg.url, {"force_status": 400})
    records = events("dlq", contacts=5, per_contact=1)
    produce(kafka_bootstrap, pipeline_topics["source"], records)
    first = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 10,
        120,
        check=worker.assert_alive,
    )
    assert by_integration(first) == {("mautic-main", "delivered"): 5, ("mailgun-news", "failed"): 5}
    failed = [o for o in first if o["status"] == "failed"]
    assert {o["reason"] for o in failed} == {"http_400"} and all(o["hint"] for o in failed)
    letters = consume_letters(kafka_bootstrap, pipeline_topics["dlq"], lambda got: len(got) >= 5, 30)
    assert {stored.letter.integration for stored in letters} == {"mailgun-news"}
    assert {stored.key for stored in letters} == {key for key, _ in records}, "keyed like the source"

    set_faults(mg.url, {})
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "signal_sync.cli.main",
            "replay-dlq",
            "-c",
            str(worker_config),
            "--integration",
            "mailgun-news",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed 5 record(s)" in replay.stdout
    final = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 15,
        120,
        check=worker.assert_alive,
    )
    settled = consume_until(kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) > 15, 3)
    assert len(settled) == 15, "the replay must reach only the dead letter's integration"
    assert by_integration(final) == {
        ("mautic-main", "delivered"): 5,
        ("mailgun-news", "failed"): 5,
        ("mailgun-news", "delivered"): 5,
    }
    replayed = [o for o in final if o["integration"] == "mailgun-news" and o["status"] == "delivered"]
    assert {o["delivery_id"] for o in replayed} == {o["delivery_id"] for o in failed}, "same delivery ids"
