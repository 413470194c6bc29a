"""``signal-sync replay-dlq`` on the real broker: streamed, resumable per integration, filtered by
integration and time, both dead-letter formats, the original record plus the replay header."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from signal_sync.cli.main import app
from signal_sync.dead_letters import ErrorContext, dead_letter
from signal_sync.outcomes import OutcomeBuilder, SourceRecord
from signal_sync.streams.routing import REPLAY_HEADER
from tests.support.dead_letters import produce_records
from tests.unit.factories import mailgun, mautic

pytestmark = pytest.mark.integration

LIMIT = 1_000_000
MARCH = 1_772_323_200.0  # 2026-03-01T00:00:00Z
JANUARY = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RECENT_MS = time.time() * 1000 - 60_000
"""The source records' timestamp, which their dead letters keep: recent, or the topic's time-based
retention could delete them before the test reads them."""


def letter(
    n: int, integration: Any, *, at: float = MARCH, value: bytes | None = None, limit: int = LIMIT
) -> Any:
    """A dead letter of integration ``integration`` for source record ``n`` (key and headers set)."""
    body = (
        value
        if value is not None
        else orjson.dumps({"type": "page", "messageId": f"m-{n}", "anonymousId": f"a-{n}"})
    )
    source = SourceRecord(
        "signal.events",
        0,
        n,
        RECENT_MS + n,
        body,
        f"a-{n}".encode(),
        (("h", str(n).encode()), ("n", None)),
    )
    outcome = OutcomeBuilder().build(
        message_id=f"m-{n}",
        integration=integration,
        event_name="page",
        email=None,
        status="failed",
        reason="http_400",
        source=source,
        now=at,
        http_status=400,
        attempts=1,
        error="refused",
    )
    return dead_letter(outcome, source, limit, ErrorContext(started_at=at - 1))


def legacy(n: int, integration: str, body: bytes | None = None) -> dict[str, Any]:
    """A dead letter as earlier versions wrote it (a JSON envelope, keyed by contact)."""
    if body is None:
        body = orjson.dumps({"type": "page", "messageId": f"old-{n}", "anonymousId": f"old-anon-{n}"})
    value = {
        "schema": "signal.dead-letter/v1",
        "delivery_id": f"d-{n}",
        "message_id": f"old-{n}",
        "integration": integration,
        "status": "failed",
        "reason": "http_400",
        "attempts": 1,
        "error": "bad",
        "source_topic": "signal.events",
        "source_partition": 0,
        "source_offset": n,
        "original": body.decode(),
        "original_encoding": "utf-8",
        "original_bytes": len(body),
        "original_sha256": hashlib.sha256(body).hexdigest(),
        "original_truncated": False,
    }
    return {"key": b"contact-id", "value": orjson.dumps(value)}


def replay(config: Path, *args: str) -> str:
    """Run ``signal-sync replay-dlq`` as a user does; its one-line summary."""
    run = subprocess.run(
        [sys.executable, "-m", "signal_sync.cli.main", "replay-dlq", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


class SourceTail:
    """The source topic, read from its start, as (key, value, headers) of each new record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])

    def new(self, expected: int, settle_s: float = 1.0) -> list[tuple[Any, ...]]:
        """The records that arrived since the last call, once ``expected`` did and ``settle_s`` passed
        without more."""
        got: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + 30
        quiet_until = None
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.2)
            if message is not None and not message.error():
                got.append((message.key(), message.value(), tuple(message.headers() or ())))
                quiet_until = None
                continue
            if len(got) >= expected:
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    return got
        return got

    def close(self) -> None:
        self.consumer.close()


def test_replay_resumes_per_integration_and_reproduces_the_originals(
    kafka_bootstrap, pipeline_topics, worker_config
):
    app_id = yaml.safe_load(worker_config.read_text())["kafka"]["app_id"]
    mg, crm = mailgun(), mautic()
    first = [letter(n, mg) for n in range(3)] + [letter(10, crm), letter(11, crm)]
    huge = letter(20, mg, value=b"x" * 50_000, limit=20_000)  # cut to fit: not replayable
    produce_records(
        kafka_bootstrap,
        pipeline_topics["dlq"],
        [*first, legacy(30, "mailgun-news"), huge, {"key": None, "value": b"not a dead letter"}],
    )
    source = SourceTail(kafka_bootstrap, pipeline_topics["source"])
    try:
        summary = replay(worker_config, "--integration", "mailgun-news")
        assert summary.startswith("replayed 4 record(s)"), summary
        assert "1 truncated" in summary and "1 unreadable" in summary
        records = source.new(4)
        assert sorted(records) == sorted(
            [
                (
                    f"a-{n}".encode(),
                    first[n].value,
                    (("h", str(n).encode()), ("n", None), (REPLAY_HEADER, b"mailgun-news")),
                )
                for n in range(3)
            ]
            + [
                (
                    b"old-anon-30",
                    orjson.loads(legacy(30, "")["value"])["original"].encode(),
                    ((REPLAY_HEADER, b"mailgun-news"),),
                )
            ]
        ), "each original key, value and headers, plus the header that addresses the integration"

        assert replay(worker_config, "--integration", "mailgun-news").startswith("replayed 0 record(s)")
        assert source.new(0) == [], "a second run replays nothing again"

        produce_records(kafka_bootstrap, pipeline_topics["dlq"], [letter(3, mg)])
        assert replay(worker_config, "--integration", "mailgun-news").startswith("replayed 1 record(s)")
        assert [key for key, *_ in source.new(1)] == [b"a-3"]

        summary = replay(worker_config)  # every integration: only Mautic's are left
        assert summary.startswith("replayed 2 record(s)"), summary
        assert sorted((key, headers[-1]) for key, _, headers in source.new(2)) == [
            (b"a-10", (REPLAY_HEADER, b"mautic-main")),
            (b"a-11", (REPLAY_HEADER, b"mautic-main")),
        ]
        assert replay(worker_config).startswith("replayed 0 record(s)")

        again = replay(worker_config, "--integration", "mailgun-news", "--from-beginning", "--dry-run")
        assert again.startswith("would replay 5 record(s)"), again
        assert replay(worker_config, "--reset", "--integration", "mautic-main").startswith(
            "replayed 2 record(s)"
        )
        assert len(source.new(2)) == 2
    finally:
        source.close()
    groups = {f"{app_id}-replay-dlq-mailgun-news", f"{app_id}-replay-dlq-mautic-main"}
    for group in groups:
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        try:
            [committed] = consumer.committed([TopicPartition(pipeline_topics["dlq"], 0)], timeout=15)
        finally:
            consumer.close()
        assert committed.offset == 9, f"{group} holds the progress (all nine records of the topic)"


def test_since_passes_over_older_letters_for_good(kafka_bootstrap, pipeline_topics, worker_config):
    mg = mailgun()
    produce_records(
        kafka_bootstrap,
        pipeline_topics["dlq"],
        [letter(1, mg, at=JANUARY), letter(2, mg, at=MARCH + 60), letter(3, mg, at=JANUARY + 60)],
    )
    source = SourceTail(kafka_bootstrap, pipeline_topics["source"])
    try:
        summary = replay(worker_config, "--since", "2026-03-01T00:00:00Z")
        assert summary.startswith("replayed 1 record(s)") and "2 older than --since" in summary, summary
        assert [key for key, *_ in source.new(1)] == [b"a-2"]
        assert replay(worker_config, "--since", "2026-02-01").startswith("replayed 0 record(s)")
        # naive means UTC; from the beginning, the January letters come back
        summary = replay(worker_config, "--since", "2026-01-01T00:00:30", "--from-beginning")
        assert summary.startswith("replayed 2 record(s)") and "1 older" in summary, summary
        assert sorted(key for key, *_ in source.new(2)) == [b"a-2", b"a-3"]
    finally:
        source.close()


@pytest.mark.parametrize("written_by", ["this version", "earlier versions"])
def test_replay_streams_the_topic_instead_of_holding_it(
    kafka_bootstrap, pipeline_topics, worker_config, written_by
):
    """Forty letters of 600 KB (24 MB): the replay's Python memory stays at a few letters."""
    count, size = 40, 600_000
    values = [f"{n:02d}".encode() + b"x" * size for n in range(count)]
    if written_by == "this version":
        letters = [letter(n, mailgun(), value=value) for n, value in enumerate(values)]
    else:
        letters = [legacy(n, "mailgun-news", value) for n, value in enumerate(values)]
    for n in range(0, count, 10):
        produce_records(kafka_bootstrap, pipeline_topics["dlq"], letters[n : n + 10])

    tracemalloc.start()
    try:
        result = CliRunner().invoke(app, ["replay-dlq", "-c", str(worker_config)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"replayed {count} record(s)"), result.output
    assert peak < 8 * size, (
        f"peak {peak / 1e6:.1f} MB of Python memory for {count * size / 1e6:.0f} MB of letters"
    )
    source = SourceTail(kafka_bootstrap, pipeline_topics["source"])
    try:
        replayed = source.new(count, settle_s=0.5)
    finally:
        source.close()
    assert sorted(value for _, value, _ in replayed) == values


def test_user_mistakes_name_the_option_or_setting(tmp_path, worker_config):
    config = yaml.safe_load(worker_config.read_text())
    config["kafka"]["dead_letter_topic"] = f"missing-{uuid.uuid4().hex[:8]}"
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump(config))
    for path, args, expected in [
        (missing, [], "kafka.dead_letter_topic: topic 'missing-"),
        (worker_config, ["--since", "last week"], "--since: 'last week' is not an ISO 8601"),
        (worker_config, ["--integration", "nope"], "--integration: no integration 'nope'"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "signal_sync.cli.main", "replay-dlq", "-c", str(path), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode != 0 and expected in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
