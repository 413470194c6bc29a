"""Consent withdrawal and re-grant end to end: the real worker on the real broker, both emulators.

One person is upserted, withdraws, and grants consent again, with a worker restart between the
steps; the destinations hold the expected state after each step and every call lands in order.
Beside her: a person whose Mautic contact bounced and who unsubscribed from the sending domain
themselves (signal-sync neither claims nor removes those), and a person neither destination
knows (nothing is created for them). Outcomes carry a keyed contact_id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from harness import WorkerProcess, consume_until, produce

from signal_sync.destinations.mautic_privacy import DNC_COMMENT
from signal_sync.sandbox.server import RunningServer

pytestmark = pytest.mark.integration

LIST = "newsletter@mg.example.com"
DOMAIN = "mg.example.com"
KEY = "outcomes-key-" + "k" * 32
JANE, SAM, UNA = "jane@example.com", "sam@example.org", "una@example.net"
TAG = "signal-marketing-consent"
TIMEOUT_S = 120


def record(message_id: str, email: str, granted: bool, **fields: Any) -> tuple[bytes, bytes]:
    anonymous_id = "anon-" + email.split("@")[0]
    body = {
        "type": "page",
        "messageId": message_id,
        "anonymousId": anonymous_id,
        "timestamp": "2026-06-06T10:00:00Z",
        "traits": {"email": email},
        "context": {"ip": "203.0.113.7", "consent": {"canonical": {"marketing": granted}}},
        **fields,
    }
    return anonymous_id.encode(), orjson.dumps(body)


def call(server: RunningServer, method: str, path: str, auth: str, form: dict[str, str] | None = None) -> Any:
    data = None
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    if form is not None:
        data = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in form.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def get(server: RunningServer, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def mautic_contact(crm: RunningServer, email: str) -> dict[str, Any] | None:
    found = [c for c in get(crm, "/_sandbox/contacts")["contacts"] if c["fields"]["all"]["email"] == email]
    assert len(found) <= 1
    return found[0] if found else None


def member(mg: RunningServer, email: str) -> dict[str, Any] | None:
    found = [m for m in get(mg, "/_sandbox/members")["members"][LIST] if m["address"] == email]
    return found[0] if found else None


def unsubscribed(mg: RunningServer) -> set[str]:
    return {u["address"] for u in get(mg, "/_sandbox/unsubscribes")["unsubscribes"][DOMAIN]}


def actions(server: RunningServer, email: str) -> list[str]:
    return [entry["action"] for entry in get(server, f"/_sandbox/log/{email}")["applied"]]


def by_message(outcomes: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    return {
        (o["message_id"], o["integration"]): (o["status"], o["reason"], o.get("operation")) for o in outcomes
    }


@pytest.fixture
def config(write_worker_config: Callable[..., Path]) -> Path:
    path = write_worker_config(outcomes={"contact_id_key": KEY})
    config = yaml.safe_load(path.read_text())
    config["integrations"][1]["unsubscribe_domain"] = DOMAIN
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_upsert_withdraw_regrant_land_in_order_across_restarts(
    tmp_path: Path, kafka_bootstrap: str, pipeline_topics: dict[str, str], sandboxes, config: Path
) -> None:
    crm, mg = sandboxes
    source, deliveries = pipeline_topics["source"], pipeline_topics["deliveries"]
    worker = WorkerProcess(config, tmp_path / "worker-1.log").start()
    try:
        # 1. Jane and Sam consent: upserted. Then Sam's address bounces in Mautic and Sam
        #    unsubscribes from every message of the sending domain, outside signal-sync.
        produce(kafka_bootstrap, source, [record("up-jane", JANE, True), record("up-sam", SAM, True)])
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 4, TIMEOUT_S, worker.assert_alive
        )
        assert {v for v in by_message(outcomes).values()} == {("delivered", None, "upsert")}
        sam_id = mautic_contact(crm, SAM)["id"]  # type: ignore[index]
        bounce = call(
            crm,
            "POST",
            f"/api/contacts/{sam_id}/dnc/email/add",
            "signal:sandbox-password",
            {"reason": "2", "comments": "550 mailbox unknown"},
        )
        bounce_entry = bounce["contact"]["doNotContact"][0]
        call(mg, "POST", f"/v3/{DOMAIN}/unsubscribes", "api:key-sandbox", {"address": SAM, "tag": "*"})
        assert [t["tag"] for t in mautic_contact(crm, JANE)["tags"]] == [TAG]  # type: ignore[index]
        assert worker.stop() == 0

        # 2. All three withdraw (Jane twice). A restart before: the withdrawal needs Jane's contact
        #    id from the destination-state changelog.
        worker = WorkerProcess(config, tmp_path / "worker-2.log").start()
        requests_before = len(get(crm, "/_sandbox/requests")["requests"])
        produce(
            kafka_bootstrap,
            source,
            [
                record("out-jane", JANE, False),
                record("out-jane-again", JANE, False, type="track", event="Button Clicked"),
                record("out-sam", SAM, False),
                record("out-una", UNA, False),
            ],
        )
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 12, TIMEOUT_S, worker.assert_alive
        )
        seen = by_message(outcomes)
        for integration in ("mautic-main", "mailgun-news"):
            assert seen[("out-jane", integration)] == ("delivered", None, "withdraw_consent")
            assert seen[("out-jane-again", integration)] == ("dropped", "consent_denied", "withdraw_consent")
            assert seen[("out-sam", integration)] == ("delivered", None, "withdraw_consent")
            assert seen[("out-una", integration)] == ("dropped", "consent_denied", "withdraw_consent")
        jane = mautic_contact(crm, JANE)
        assert jane is not None and jane["tags"] == []
        (ours,) = jane["doNotContact"]
        assert (ours["reason"], ours["comments"], ours["channel"]) == (1, DNC_COMMENT, "email")
        sam = mautic_contact(crm, SAM)
        assert sam is not None and sam["doNotContact"] == [bounce_entry], (
            "the bounce is neither rewritten nor claimed"
        )
        assert mautic_contact(crm, UNA) is None and member(mg, UNA) is None, "a withdrawal creates nothing"
        assert member(mg, JANE)["subscribed"] is False and member(mg, SAM)["subscribed"] is False  # type: ignore[index]
        assert unsubscribed(mg) == {JANE, SAM}
        sent = get(crm, "/_sandbox/requests")["requests"][requests_before:]
        assert {r["method"] for r in sent} <= {"GET", "PATCH", "POST"} and not any(
            r["path"] == "/api/contacts/new" for r in sent
        ), "no PUT, no upsert: a withdrawal only edits contacts Mautic has"
        assert all(set(r["body"] or {}) <= {"tags", "reason", "comments"} for r in sent), (
            "nothing personal sent"
        )
        assert worker.stop() == 0

        # 3. Jane and Sam grant consent again, after a restart.
        worker = WorkerProcess(config, tmp_path / "worker-3.log").start()
        produce(kafka_bootstrap, source, [record("back-jane", JANE, True), record("back-sam", SAM, True)])
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 16, TIMEOUT_S, worker.assert_alive
        )
        seen = by_message(outcomes)
        for integration in ("mautic-main", "mailgun-news"):
            for who in ("back-jane", "back-sam"):
                assert seen[(who, integration)] == ("delivered", None, "restore_consent")
        jane = mautic_contact(crm, JANE)
        assert jane is not None and [t["tag"] for t in jane["tags"]] == [TAG] and jane["doNotContact"] == []
        sam = mautic_contact(crm, SAM)
        assert sam is not None and sam["doNotContact"] == [bounce_entry], "a foreign entry stays"
        assert member(mg, JANE)["subscribed"] is True and member(mg, SAM)["subscribed"] is True  # type: ignore[index]
        assert unsubscribed(mg) == {SAM}, "only the unsubscribe signal-sync added is taken off"
    finally:
        worker.stop()

    # In contact order, at both destinations.
    assert actions(crm, JANE) == ["created", "updated", "dnc_added", "updated", "dnc_removed"]
    assert actions(mg, JANE) == ["created", "updated", "unsubscribed", "updated", "unsubscribe_removed"]
    assert actions(crm, SAM) == ["created", "dnc_added", "updated", "updated"]
    # Outcomes name the person by a keyed id only.
    expected = hmac.new(KEY.encode(), JANE.encode(), hashlib.sha256).hexdigest()
    assert {o["contact_id"] for o in outcomes if o["message_id"].endswith("-jane")} == {expected}
    assert not any(JANE in json.dumps(o, default=repr) for o in outcomes)
