"""When outcomes cannot be written at all, the worker stops loudly instead of going on without them.

The deliveries topic here accepts records of at most 300 bytes, smaller than any outcome: the
ingest stage cannot write a record's outcome, nor the ``internal_error`` outcome after it. The
worker must then neither acknowledge the record nor carry on with a commit point that can never
move past it: it exits non-zero by itself, naming the record. Once the topic accepts outcomes
again, a restarted worker gives every record its outcomes (nothing was committed past them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from harness import WorkerProcess, consume_until, produce

pytestmark = pytest.mark.integration

EVENTS = 5


@pytest.fixture
def pipeline_topics(kafka_topics) -> dict[str, str]:
    return {
        "source": kafka_topics("it.events", partitions=4),
        "deliveries": kafka_topics("it.deliveries", partitions=4, config={"max.message.bytes": "300"}),
        "dlq": kafka_topics("it.dlq", partitions=1),
    }


def no_email(n: int) -> tuple[bytes, bytes]:
    """An event both integrations drop (no_email): its outcomes are written by the ingest stage."""
    body = {"type": "page", "messageId": f"unwritable-{n}", "anonymousId": f"anon-unwritable-{n}"}
    return f"anon-unwritable-{n}".encode(), json.dumps(body).encode()


def test_a_worker_that_cannot_write_outcomes_stops_and_a_restart_writes_them(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, worker_config
):
    worker = WorkerProcess(worker_config, tmp_path / "worker.log").start()
    try:
        produce(kafka_bootstrap, pipeline_topics["source"], [no_email(n) for n in range(EVENTS)])
        deadline = time.monotonic() + 120
        while worker.proc is not None and worker.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.25)
        code = worker.proc.poll() if worker.proc is not None else None
    finally:
        worker.stop()
    print(f"the worker stopped by itself with exit code {code}")
    assert code not in (None, 0), f"the worker went on (exit {code}):\n{worker.log_tail()}"
    entries = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(e["level"] == "CRITICAL" and "has no outcome" in e["message"] for e in entries), (
        worker.log_tail()
    )

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    limit = ConfigEntry("max.message.bytes", "1048588", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, pipeline_topics["deliveries"], incremental_configs=[limit])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)

    second = WorkerProcess(worker_config, tmp_path / "worker-2.log").start()
    try:
        outcomes = consume_until(
            kafka_bootstrap,
            pipeline_topics["deliveries"],
            lambda got: len({(o["message_id"], o["integration"]) for o in got}) >= 2 * EVENTS,
            timeout=120,
            check=second.assert_alive,
        )
    finally:
        assert second.stop() == 0, second.log_tail()
    assert {(o["message_id"], o["status"], o["reason"]) for o in outcomes} == {
        (f"unwritable-{n}", "dropped", "no_email") for n in range(EVENTS)
    }
