"""A restarted worker still knows identities and Mailgun vars (changelog-backed tables) and,
after a clean shutdown, does not deliver already committed events again."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import orjson
import pytest
from harness import WorkerProcess, consume_until, produce

pytestmark = pytest.mark.integration

CONSENT = {"consent": {"canonical": {"marketing": True}}}


def event(message_id: str, **fields: object) -> tuple[bytes, bytes]:
    body = {
        "messageId": message_id,
        "anonymousId": "anon-restart",
        "timestamp": "2026-06-06T10:00:00Z",
        "context": CONSENT,
        **fields,
    }
    return b"anon-restart", orjson.dumps(body)


@pytest.mark.parametrize(
    "worker_overrides",
    [{"worker": {"store": "memory://"}}, {"worker": {"store": "rocksdb://"}}],
    ids=["memory", "rocksdb"],
)
def test_state_survives_a_restart(
    tmp_path: Path, kafka_bootstrap, pipeline_topics, sandboxes, worker_config, worker
):
    crm, mg = sandboxes
    produce(
        kafka_bootstrap,
        pipeline_topics["source"],
        [
            event(
                "r-1",
                type="identify",
                userId="u-restart",
                traits={
                    "email": "Restart@Example.com",
                    "firstName": "Rita",
                    "lastName": "Start",
                    "plan": "pro",
                },
            ),
            event("r-2", type="page", context={**CONSENT, "page": {"url": "https://example.com/a"}}),
        ],
    )
    first = consume_until(
        kafka_bootstrap,
        pipeline_topics["deliveries"],
        lambda got: len(got) >= 4,
        120,
        check=worker.assert_alive,
    )
    assert {(o["message_id"], o["status"]) for o in first} == {("r-1", "delivered"), ("r-2", "delivered")}
    assert worker.stop() == 0

    second = WorkerProcess(worker_config, tmp_path / "worker-2.log").start()
    try:
        produce(
            kafka_bootstrap,
            pipeline_topics["source"],
            [
                event("r-3", type="track", event="Signed Up", properties={"method": "sso"}),
            ],
        )
        outcomes = consume_until(
            kafka_bootstrap,
            pipeline_topics["deliveries"],
            lambda got: len(got) >= 6,
            120,
            check=second.assert_alive,
        )
        late = consume_until(kafka_bootstrap, pipeline_topics["deliveries"], lambda got: len(got) > 6, 5)
    finally:
        second.stop()
    # A clean shutdown committed r-1 and r-2 (not delivered again) and a clean start delivers r-3 once.
    assert len(late) == 6, "\n".join(
        f"{o['message_id']} {o['integration']} {o['completed_at']}" for o in late
    )
    assert {
        (o["message_id"], o["integration"], o["status"]) for o in outcomes if o["message_id"] == "r-3"
    } == {("r-3", "mautic-main", "delivered"), ("r-3", "mailgun-news", "delivered")}

    with urllib.request.urlopen(f"{mg.url}/_sandbox/members", timeout=10) as reply:
        member = json.loads(reply.read())["members"]["newsletter@mg.example.com"][0]
    assert member["address"] == "restart@example.com"
    assert member["vars"] == {
        "first_name": "Rita",
        "last_name": "Start",
        "plan": "pro",
        "anonymous_id": "anon-restart",
        "last_page_url": "https://example.com/a",
        "signup_method": "sso",
    }
    # The identity table was restored: r-3 carries no traits, yet its upsert has the stitched email and name.
    with urllib.request.urlopen(f"{crm.url}/_sandbox/requests", timeout=10) as reply:
        bodies = [r["body"] for r in json.loads(reply.read())["requests"] if r["method"] == "POST"]
    assert bodies[-1]["signal_signup_method"] == "sso"
    assert (bodies[-1]["email"], bodies[-1]["firstname"], bodies[-1]["lastname"]) == (
        "restart@example.com",
        "Rita",
        "Start",
    )
