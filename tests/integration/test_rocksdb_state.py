"""The rocksdb:// store on the real broker: a restarted worker takes its tables from the state
folder it kept, not from the changelogs.

The first worker learns an identity and carries out a consent withdrawal, then stops. Each table's
database then holds, for each partition, the offset of its changelog's last record (Faust's
persisted offset, which recovery starts from), and the changelogs' records are deleted: the second worker,
started over the same ``state_dir``, can only know what the first one learned from its RocksDB
files. It stitches a trait-less event with the email learned before, and drops the withdrawn
person's next event as already withdrawn, with no call to either destination.

What the folder holds is trusted only while the changelog still holds every deletion since (half of
its ``delete.retention.ms`` after the first worker stopped): a second worker that starts later
knows nothing of what the first one learned (the records it would need were deleted, as compaction
deletes an erasure's tombstone).
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
import yaml
from confluent_kafka.admin import AdminClient
from harness import WorkerProcess, consume_until, produce

from signal_sync.streams.internal import DESTINATION_STATE_TABLE, IDENTITIES_TABLE
from tests.support.changelogs import changelog_ends, delete_records

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
OFFSET_KEY = b"__faust\0offset__"


def record(message_id: str, anonymous_id: str, granted: bool, **fields: Any) -> tuple[bytes, bytes]:
    body = {
        "type": "page",
        "messageId": message_id,
        "anonymousId": anonymous_id,
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"consent": {"canonical": {"marketing": granted}}},
        **fields,
    }
    return anonymous_id.encode(), orjson.dumps(body)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def persisted_offsets(state_dir: Path, table: str) -> dict[int, int]:
    """Partition → the changelog offset the table's database holds the partition's data up to
    (RocksDB read directly, the worker being stopped)."""
    (path,) = state_dir.rglob(f"{table}.db")
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    try:
        return {
            int(key.removeprefix(OFFSET_KEY)): int(raw)
            for key, raw in db.items(from_key=OFFSET_KEY)
            if key.startswith(OFFSET_KEY) and key.removeprefix(OFFSET_KEY).isdigit()  # not held or stored
        }
    finally:
        db.close()


def first_worker_learns_and_stops(kafka_bootstrap: str, pipeline_topics: dict[str, str], worker: Any) -> None:
    """The first worker learns Rita's identity and Sam's withdrawal, then stops cleanly."""
    source = pipeline_topics["source"]
    traits = {"email": "Rita@Example.com", "firstName": "Rita", "lastName": "Start"}
    produce(
        kafka_bootstrap,
        source,
        [
            record("k-1", "anon-rita", True, type="identify", userId="u-rita", traits=traits),
            record("k-2", "anon-sam", True, type="identify", traits={"email": "sam@example.org"}),
        ],
    )
    consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 4,
        TIMEOUT_S,
        check=worker.assert_alive,
    )
    produce(kafka_bootstrap, source, [record("k-3", "anon-sam", False)])
    first = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 6,
        TIMEOUT_S,
        check=worker.assert_alive,
    )
    assert {(o["message_id"], o["status"], o["operation"]) for o in first if o["message_id"] == "k-3"} == {
        ("k-3", "delivered", "withdraw_consent")
    }
    assert worker.stop() == 0


def delete_changelogs(kafka_bootstrap: str, config: dict[str, Any], **configs: str) -> None:
    """Check that each table's database holds its changelog up to its end, then delete the records."""
    app_id = config["kafka"]["app_id"]
    state_dir = Path(config["worker"]["state_dir"])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for table in (IDENTITIES_TABLE, DESTINATION_STATE_TABLE):
        topic = f"{app_id}-{table}-changelog"
        ends = changelog_ends(admin, kafka_bootstrap, topic)
        assert ends, f"{topic} has records"
        # Recovery starts after these offsets: nothing of the changelog is read again.
        assert persisted_offsets(state_dir, table) == ends
        delete_records(admin, topic, ends, **configs)


def later_events(kafka_bootstrap: str, pipeline_topics: dict[str, str], second: WorkerProcess) -> dict:
    """Rita's event with only her user id, Sam's next one: their outcomes by (message, integration)."""
    try:
        produce(
            kafka_bootstrap,
            pipeline_topics["source"],
            [
                record("k-4", "anon-other-device", True, userId="u-rita", type="track", event="Signed Up"),
                record("k-5", "anon-sam", False),
            ],
        )
        outcomes = consume_until(
            kafka_bootstrap,
            pipeline_topics["deliveries"],
            lambda got: len(got) >= 10,
            TIMEOUT_S,
            check=second.assert_alive,
        )
    finally:
        assert second.stop() == 0
    return {(o["message_id"], o["integration"]): o for o in outcomes if o["message_id"] in ("k-4", "k-5")}


def test_tables_come_back_from_the_state_folder(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes, worker_config, worker
):
    crm, mg = sandboxes
    config = yaml.safe_load(worker_config.read_text())
    assert config["worker"].get("store") is None, "the default store is under test"
    first_worker_learns_and_stops(kafka_bootstrap, pipeline_topics, worker)
    delete_changelogs(kafka_bootstrap, config)
    calls_before = len(get(f"{crm.url}/_sandbox/requests")["requests"])

    late = later_events(
        kafka_bootstrap, pipeline_topics, WorkerProcess(worker_config, tmp_path / "w2.log").start()
    )
    # Rita's email came from the kept identities table (k-4 carries only her user id).
    assert {key: o["status"] for key, o in late.items() if key[0] == "k-4"} == {
        ("k-4", "mautic-main"): "delivered",
        ("k-4", "mailgun-news"): "delivered",
    }
    new_calls = get(f"{crm.url}/_sandbox/requests")["requests"][calls_before:]
    assert [(r["method"], r["path"], (r["body"] or {}).get("email")) for r in new_calls] == [
        ("POST", "/api/contacts/new", "rita@example.com")
    ]
    # Sam's withdrawal came from the kept destination-state table: nothing is sent again.
    assert {key: (o["status"], o["reason"]) for key, o in late.items() if key[0] == "k-5"} == {
        ("k-5", "mautic-main"): ("dropped", "consent_denied"),
        ("k-5", "mailgun-news"): ("dropped", "consent_denied"),
    }
    assert [
        m
        for m in get(f"{mg.url}/_sandbox/members")["members"]["newsletter@mg.example.com"]
        if m["address"] == "sam@example.org"
    ][0]["subscribed"] is False


def test_a_folder_kept_longer_than_the_changelog_keeps_deletions_is_not_trusted(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes, worker_config, worker
):
    crm, _ = sandboxes
    config = yaml.safe_load(worker_config.read_text())
    first_worker_learns_and_stops(kafka_bootstrap, pipeline_topics, worker)
    stopped = time.time()
    # Tombstones now stay 2 s after compaction: the folder is trusted for 1 s after the stop.
    delete_changelogs(kafka_bootstrap, config, delete_retention_ms="2000")
    while time.time() < stopped + 1.5:
        time.sleep(0.1)  # a wait for the clock, not for something to happen
    calls_before = len(get(f"{crm.url}/_sandbox/requests")["requests"])

    late = later_events(
        kafka_bootstrap, pipeline_topics, WorkerProcess(worker_config, tmp_path / "w2.log").start()
    )
    # Both tables were read anew from their (now empty) changelogs: neither Rita's email nor Sam's
    # withdrawal is known any more, so both events have no email.
    assert {key: (o["status"], o["reason"]) for key, o in late.items()} == {
        (message, integration): ("dropped", "no_email")
        for message in ("k-4", "k-5")
        for integration in ("mautic-main", "mailgun-news")
    }
    assert get(f"{crm.url}/_sandbox/requests")["requests"][calls_before:] == []
