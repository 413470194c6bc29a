"""Erasure end to end: the real worker on the real broker, both emulators, ``signal-sync erase``.

Jane is upserted, withdraws and grants consent again, then an erasure request naming only her
``anonymous_id`` (resolved through the identities table) deletes her at both destinations, in her
order; the changelogs carry tombstones for her identity keys (her ``user_id``'s too, found by her
email) and destination state, and a
restarted worker knows nothing of her: an id-only event of hers drops with ``no_email``. Beside
her: Sam, who stays; a request for nobody known (``unknown_person``) and an unreadable one
(``invalid_request``), each with one outcome per integration.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from harness import WorkerProcess, consume_until

from signal_sync.identity import contact_id
from signal_sync.sandbox.server import RunningServer

pytestmark = pytest.mark.integration

LIST = "newsletter@mg.example.com"
JANE, SAM = "jane@example.com", "sam@example.org"
TAG = "signal-marketing-consent"
TIMEOUT_S = 120


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Keyed records with the Java client's partitioner, as ``signal-sync produce`` and ``erase`` use."""
    errors: list[str] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "partitioner": "murmur2_random"}
    )
    for key, value in records:
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, _m: errors.append(str(err)) if err else None
        )
    assert producer.flush(30) == 0 and not errors, errors[:3]


def event(message_id: str, who: str, granted: bool | None, email: str | None = None) -> tuple[bytes, bytes]:
    body: dict[str, Any] = {
        "type": "identify" if email else "page",
        "messageId": message_id,
        "anonymousId": f"anon-{who}",
        "userId": f"user-{who}",
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"consent": {"canonical": {} if granted is None else {"marketing": granted}}},
    }
    if email:
        body["traits"] = {"email": email, "first_name": who.title()}
    return f"anon-{who}".encode(), orjson.dumps(body)


def get(server: RunningServer, path: str) -> Any:
    with urlopen(server.url + path) as reply:
        return json.loads(reply.read())


def urlopen(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)  # loopback emulator


def mautic_contact(crm: RunningServer, email: str) -> dict[str, Any] | None:
    found = [c for c in get(crm, "/_sandbox/contacts")["contacts"] if c["fields"]["all"]["email"] == email]
    return found[0] if found else None


def member(mg: RunningServer, email: str) -> dict[str, Any] | None:
    found = [m for m in get(mg, "/_sandbox/members")["members"].get(LIST, []) if m["address"] == email]
    return found[0] if found else None


def actions(server: RunningServer, email: str) -> list[str]:
    return [entry["action"] for entry in get(server, f"/_sandbox/log/{email}")["applied"]]


def seen(outcomes: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    return {
        (o["message_id"], o["integration"]): (o["status"], o["reason"], o.get("operation")) for o in outcomes
    }


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, from the start to its end now (key, value), partition by partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        records: list[tuple[bytes | None, bytes | None]] = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            deadline, last = time.monotonic() + 30, low - 1
            while last < high - 1 and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                records.append((message.key(), message.value()))
                last = message.offset()
            assert last >= high - 1, f"{topic}[{partition}] not read to its end"
        return records
    finally:
        consumer.close()


def latest(records: list[tuple[bytes | None, bytes | None]], key: bytes) -> list[bytes | None]:
    return [value for k, value in records if k == key]


def erase(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signal_sync.cli.main", "erase", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def erasures_topic(kafka_topics: Callable[..., str]) -> str:
    return kafka_topics("it.erasures", partitions=4)  # as many as the source topic: co-partitioned


@pytest.fixture
def config(write_worker_config: Callable[..., Path], erasures_topic: str) -> Path:
    return write_worker_config(kafka={"erasures_topic": erasures_topic})


def test_upsert_withdraw_regrant_then_erase_forgets_the_person_everywhere(
    tmp_path: Path,
    kafka_bootstrap: str,
    pipeline_topics: dict[str, str],
    sandboxes,
    config: Path,
    erasures_topic: str,
) -> None:
    crm, mg = sandboxes
    source, deliveries = pipeline_topics["source"], pipeline_topics["deliveries"]
    app_id = yaml.safe_load(config.read_text())["kafka"]["app_id"]
    jane_contact = contact_id(JANE)
    worker = WorkerProcess(config, tmp_path / "worker-1.log").start()
    try:
        # 1. Jane and Sam are upserted.
        produce(
            kafka_bootstrap, source, [event("up-jane", "jane", True, JANE), event("up-sam", "sam", True, SAM)]
        )
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 4, TIMEOUT_S, worker.assert_alive
        )
        assert set(seen(outcomes).values()) == {("delivered", None, "upsert")}
        assert [t["tag"] for t in mautic_contact(crm, JANE)["tags"]] == [TAG]  # type: ignore[index]

        # 2. Jane withdraws (a page view stitched to her email), 3. then grants consent again.
        produce(kafka_bootstrap, source, [event("out-jane", "jane", False)])
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 6, TIMEOUT_S, worker.assert_alive
        )
        assert seen(outcomes)[("out-jane", "mautic-main")] == ("delivered", None, "withdraw_consent")
        assert mautic_contact(crm, JANE)["tags"] == []  # type: ignore[index]
        assert member(mg, JANE)["subscribed"] is False  # type: ignore[index]
        produce(kafka_bootstrap, source, [event("back-jane", "jane", True)])
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 8, TIMEOUT_S, worker.assert_alive
        )
        assert seen(outcomes)[("back-jane", "mailgun-news")] == ("delivered", None, "restore_consent")
        assert member(mg, JANE)["subscribed"] is True  # type: ignore[index]
        assert mautic_contact(crm, JANE)["doNotContact"] == []  # type: ignore[index]

        # 4. The erasure, by anonymous_id only; --dry-run first produces nothing.
        dry = erase(config, "--anonymous-id", "anon-jane", "--request-id", "er-jane", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout) == {
            "topic": erasures_topic,
            "key": "anon-jane",
            "value": {"request_id": "er-jane", "anonymous_id": "anon-jane"},
        }
        assert read_all(kafka_bootstrap, erasures_topic) == []
        done = erase(config, "--anonymous-id", "anon-jane", "--request-id", "er-jane")
        assert done.returncode == 0, done.stderr
        produce(
            kafka_bootstrap,
            erasures_topic,
            [
                (b"user-nobody", b'{"request_id": "er-nobody", "user_id": "user-nobody"}'),
                (b"x", b"{not json"),
            ],
        )
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 14, TIMEOUT_S, worker.assert_alive
        )
        got = seen(outcomes)
        for integration in ("mautic-main", "mailgun-news"):
            assert got[("er-jane", integration)] == ("delivered", None, "erase")
            assert got[("er-nobody", integration)] == ("dropped", "unknown_person", "erase")
            invalid = [
                o for o in outcomes if o["integration"] == integration and o["reason"] == "invalid_request"
            ]
            assert [(o["status"], o.get("operation")) for o in invalid] == [("invalid", "erase")]
        assert mautic_contact(crm, JANE) is None and member(mg, JANE) is None
        assert mautic_contact(crm, SAM) is not None and member(mg, SAM) is not None, "Sam stays"
        assert not any(JANE in json.dumps(o, default=repr) for o in outcomes), "no plaintext email"
    finally:
        assert worker.stop() == 0

    # In Jane's order at both destinations, the deletion last.
    assert actions(crm, JANE) == ["created", "updated", "dnc_added", "updated", "dnc_removed", "deleted"]
    assert actions(mg, JANE) == ["created", "updated", "updated", "deleted"]

    # The tables forget her: the last record of each of her keys is a tombstone.
    identities = read_all(kafka_bootstrap, f"{app_id}-identities-changelog")
    for key in (b'"u:user-jane"', b'"a:anon-jane"'):
        assert latest(identities, key) and latest(identities, key)[-1] is None, key
    assert latest(identities, b'"a:anon-sam"')[-1] is not None
    states = read_all(kafka_bootstrap, f"{app_id}-destination-state-changelog")
    for integration in ("mautic-main", "mailgun-news"):
        key = f'"{integration}:{jane_contact}"'.encode()
        assert latest(states, key) and latest(states, key)[-1] is None, key

    # A restarted worker recovers the tables without her: her id-only page view has no email.
    worker = WorkerProcess(config, tmp_path / "worker-2.log").start()
    try:
        produce(kafka_bootstrap, source, [event("after-jane", "jane", True), event("after-sam", "sam", True)])
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 18, TIMEOUT_S, worker.assert_alive
        )
        got = seen(outcomes)
        for integration in ("mautic-main", "mailgun-news"):
            assert got[("after-jane", integration)][:2] == ("dropped", "no_email")
            assert got[("after-sam", integration)][0] == "delivered", "Sam is still known"
        assert mautic_contact(crm, JANE) is None and member(mg, JANE) is None
    finally:
        assert worker.stop() == 0
