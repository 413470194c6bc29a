"""Standby replicas on the real broker: a worker that takes over the partitions of one that left
knows their tables from its warm copy, without reading their changelogs.

Two workers (``worker.standby_replicas: 1``) learn 24 people's emails, and withdraw half of them.
Once the first worker's state folder holds every key of both changelogs (its own partitions' and,
through its standby copies, the other worker's), the changelogs' records are deleted and the other
worker stops: the first takes its partitions over and can only know their people from its copies.
Every person's next event (no traits) is then stitched to their email, and each withdrawn person's
is dropped as already withdrawn, with no call. Without standbys the people of the other worker's
partitions would have no email.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import rocksdict
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import WorkerProcess, consume_until, produce

from tests.support.changelogs import changelog_ends, delete_records
from tests.support.workers import member_config, settled, web_port

pytestmark = pytest.mark.integration

TIMEOUT_S = 90
PARTITIONS = 12  # the source topic's 4 and each integration's internal topic's 4
PEOPLE = 24
OFFSET_PREFIX = b"__faust\0offset__"  # Faust's persisted offsets (and the held times after them)
TABLES = ("identities", "destination-state")


def event(phase: str, n: int, marketing: bool, **fields: Any) -> tuple[bytes, bytes]:
    body = {
        "type": "track",
        "event": "Signed Up",
        "messageId": f"{phase}-{n}",
        "anonymousId": f"anon-{n}",
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"consent": {"canonical": {"marketing": marketing}}},
        **fields,
    }
    return f"anon-{n}".encode(), orjson.dumps(body)


def changelog_keys(bootstrap: str, topic: str) -> set[bytes]:
    """The keys a compacted read of the changelog ends with (a tombstone removes its key)."""
    ends = changelog_ends(AdminClient({"bootstrap.servers": bootstrap}), bootstrap, topic)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "standby-probe", "enable.auto.commit": False}
    )
    keys: set[bytes] = set()
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        left = dict(ends)
        deadline = time.monotonic() + TIMEOUT_S
        while left and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            if message.value() is None:
                keys.discard(message.key())
            else:
                keys.add(message.key())
            if message.offset() >= left.get(message.partition(), -1):
                left.pop(message.partition(), None)
        assert not left, f"{topic}: could not read to the end"
        return keys
    finally:
        consumer.close()


def folder_keys(state_dir: Path, table: str) -> set[bytes]:
    """The table keys in a running worker's database, read from a read-only view of it."""
    (path,) = state_dir.rglob(f"{table}.db")
    db = rocksdict.Rdict(
        str(path), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
    )
    try:
        return {key for key in db.keys() if not key.startswith(OFFSET_PREFIX)}
    finally:
        db.close()


def test_a_standby_copy_carries_a_takeover_without_the_changelogs(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes
):
    crm, _ = sandboxes
    app_id = f"it-standby-{time.monotonic_ns() % 10**8}"
    configs = [
        member_config(
            tmp_path / name,
            kafka_bootstrap,
            pipeline_topics,
            sandboxes,
            kafka={"app_id": app_id},
            worker={"standby_replicas": 1},  # a copy of each table partition, on the other worker
        )
        for name in "ab"
    ]
    ports = [web_port(config) for config in configs]
    a = WorkerProcess(configs[0], tmp_path / "a.log").start()
    b = WorkerProcess(configs[1], tmp_path / "b.log").start()
    try:
        settled(ports, [a, b], PARTITIONS)
        source = pipeline_topics["source"]
        traits = [
            event("learn", n, True, type="identify", userId=f"u-{n}", traits={"email": f"p{n}@example.com"})
            for n in range(PEOPLE)
        ]
        produce(kafka_bootstrap, source, traits)
        consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 2 * PEOPLE, TIMEOUT_S
        )
        produce(kafka_bootstrap, source, [event("withdraw", n, False) for n in range(0, PEOPLE, 2)])
        consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 3 * PEOPLE, TIMEOUT_S
        )

        state_a = tmp_path / "a" / "state"
        wanted = {table: changelog_keys(kafka_bootstrap, f"{app_id}-{table}-changelog") for table in TABLES}
        deadline = time.monotonic() + TIMEOUT_S
        while any(not wanted[t] <= folder_keys(state_a, t) for t in TABLES):
            assert time.monotonic() < deadline, {
                t: (len(wanted[t]), len(wanted[t] - folder_keys(state_a, t))) for t in TABLES
            }
            a.assert_alive()
            time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for table in TABLES:
            topic = f"{app_id}-{table}-changelog"
            delete_records(admin, topic, changelog_ends(admin, kafka_bootstrap, topic))
        assert b.stop() == 0
        settled(ports[:1], [a], PARTITIONS)
        calls_before = len(mautic_requests(crm.url))

        produce(kafka_bootstrap, source, [event("late", n, n % 2 == 1) for n in range(PEOPLE)])
        outcomes = consume_until(
            kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) >= 5 * PEOPLE, TIMEOUT_S
        )
    finally:
        for worker in (a, b):
            code = worker.stop()
            print(f"worker exit code {code}; log tail:\n{worker.log_tail(30)}")
    late = {
        (o["message_id"], o["integration"]): (o["status"], o["reason"])
        for o in outcomes
        if o["message_id"].startswith("late-")
    }
    assert late == {
        (f"late-{n}", integration): ("delivered", None) if n % 2 else ("dropped", "consent_denied")
        for n in range(PEOPLE)
        for integration in ("mautic-main", "mailgun-news")
    }
    # the withdrawn people's state came from the copies too: no call for them
    bodies = [r["body"] for r in mautic_requests(crm.url)[calls_before:]]
    contacts = [c for body in bodies for c in (body if isinstance(body, list) else [body])]  # batch or one
    assert sorted(c["email"] for c in contacts) == sorted(f"p{n}@example.com" for n in range(1, PEOPLE, 2))


def mautic_requests(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())["requests"]
