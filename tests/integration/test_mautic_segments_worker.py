"""Mautic segments end to end (issue #21): the real worker on the real broker, the sandbox Mautic.

The integration adds every upserted contact to ``Newsletter`` (``*``) and the contacts of
``Signed Up`` to ``Trial users``, which an administrator deleted in Mautic before the worker
started. The contacts end up in ``Newsletter`` after their upserts (the sandbox's own segment
state), one bulk call per segment for a batch; each ``Signed Up`` fails with ``segment_not_found``,
the hint naming the segment and the ``segments`` config, and a dead letter, while the other events
of the same batches are delivered and the integration is never paused.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from harness import WorkerProcess, consume_until, produce

from signal_sync.sandbox import mailgun, mautic, start_in_thread
from signal_sync.sandbox.server import RunningServer

pytestmark = pytest.mark.integration

NEWSLETTER, TRIAL = 1, 2
PEOPLE = 6
SIGNED_UP = (0, 1)
TIMEOUT_S = 120


@pytest.fixture
def sandboxes() -> Iterator[tuple[RunningServer, RunningServer]]:
    app = mautic.create_app(
        username="signal", password="sandbox-password", segments=["Newsletter", "Trial users"]
    )
    with start_in_thread(app) as crm, start_in_thread(mailgun.create_app(api_key="key-sandbox")) as mg:
        yield crm, mg


@pytest.fixture
def config(write_worker_config: Callable[..., Path]) -> tuple[Path, str]:
    path = write_worker_config()
    config = yaml.safe_load(path.read_text())
    config["integrations"][0]["segments"] = {"*": NEWSLETTER, "Signed Up": TRIAL}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, f"http://127.0.0.1:{config['worker']['web_port']}"


def get(url: str) -> tuple[int, Any]:
    """Status and JSON body; status 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # loopback worker or emulator
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def delete(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as reply:
        assert reply.status == 200


def record(n: int, message_id: str, **fields: Any) -> tuple[bytes, bytes]:
    body = {
        "messageId": message_id,
        "anonymousId": f"anon-{n}",
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"consent": {"canonical": {"marketing": True}}},
        **fields,
    }
    return f"anon-{n}".encode(), orjson.dumps(body)


def events() -> list[tuple[bytes, bytes]]:
    """Per person an identify; two of them also sign up."""
    out = [
        record(n, f"identify-{n}", type="identify", traits={"email": f"person{n}@example.com"})
        for n in range(PEOPLE)
    ]
    out += [record(n, f"signup-{n}", type="track", event="Signed Up") for n in SIGNED_UP]
    return out


def test_contacts_join_their_segments_and_a_deleted_segment_fails_only_its_events(
    tmp_path: Path, kafka_bootstrap: str, pipeline_topics: dict[str, str], sandboxes, config
) -> None:
    crm, _mg = sandboxes
    path, web = config
    delete(f"{crm.url}/_sandbox/segments/{TRIAL}")  # deleted in Mautic; the config still names it
    source, deliveries, dlq = pipeline_topics["source"], pipeline_topics["deliveries"], pipeline_topics["dlq"]
    total = len(events()) * 2
    worker = WorkerProcess(path, tmp_path / "worker.log").start()
    try:
        produce(kafka_bootstrap, source, events())
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= total, TIMEOUT_S, worker.assert_alive
        )
        letters = consume_until(kafka_bootstrap, dlq, lambda got: len(got) >= len(SIGNED_UP), 30)
        status, health = get(web + "/health")
    finally:
        code = worker.stop()
        log = worker.log_tail(60)
        print(f"worker exit code {code}; log tail:\n{log}")

    assert len(outcomes) == total
    mautic_outcomes = {o["message_id"]: o for o in outcomes if o["integration"] == "mautic-main"}
    for n in range(PEOPLE):
        identify = mautic_outcomes[f"identify-{n}"]
        assert (identify["status"], identify["segments_added"]) == ("delivered", [NEWSLETTER])
    for n in SIGNED_UP:
        signup = mautic_outcomes[f"signup-{n}"]
        assert (signup["status"], signup["reason"], signup["http_status"]) == (
            "failed",
            "segment_not_found",
            404,
        )
        assert signup["segments_added"] == [NEWSLETTER], "the other segment still adds"
        assert f"segment {TRIAL}" in signup["hint"] and "segments config" in signup["hint"]
    assert all(o["status"] == "delivered" for o in outcomes if o["integration"] == "mailgun-news")

    assert sorted(letter["messageId"] for letter in letters) == [f"signup-{n}" for n in SIGNED_UP]
    assert status == 200 and health["integrations"]["mautic-main"] == {"status": "ok", "paused": False}

    contacts = get(crm.url + "/_sandbox/contacts")[1]["contacts"]
    ids = {c["fields"]["all"]["email"]: c["id"] for c in contacts}
    assert len(ids) == PEOPLE
    segments = {s["id"]: s["members"] for s in get(crm.url + "/_sandbox/segments")[1]["segments"]}
    assert segments == {NEWSLETTER: sorted(ids.values())}

    requests = get(crm.url + "/_sandbox/requests")[1]["requests"]
    checks = [c["path"] for c in requests if c["method"] == "GET" and c["path"].startswith("/api/segments/")]
    assert sorted(checks) == [f"/api/segments/{NEWSLETTER}", f"/api/segments/{TRIAL}"], "the start-up check"
    calls = [c for c in requests if c["method"] == "POST" and c["path"].startswith("/api/")]
    assert calls[0]["path"].startswith("/api/contacts/"), "a contact is upserted before it is added"
    bulk = [c for c in calls if c["path"] == f"/api/segments/{NEWSLETTER}/contacts/add"]
    assert bulk, "several contacts of one batch go to a segment in one bulk call"
    assert "segment not usable: integration=mautic-main segments.Signed Up" in (
        tmp_path / "worker.log"
    ).read_text(encoding="utf-8", errors="replace"), "the start-up check warned about the deleted segment"
