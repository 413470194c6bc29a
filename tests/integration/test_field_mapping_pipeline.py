"""A custom field and event mapping end to end: the real worker on the real broker, both emulators.

Mautic stores only the contact fields the instance has (unknown aliases are ignored), so the
sandbox Mautic is created with the custom field ``company_size`` as a Mautic admin would create
it under Settings > Custom Fields. The Mautic integration maps it from ``traits.company_size``;
the Mailgun integration takes an extra event (``Plan Changed``) and maps ``vars.plan_tier`` from
``properties.plan``. Both values are read back from the emulators' state.
"""

from __future__ import annotations

import json
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

LIST = "newsletter@mg.example.com"
JANE = "jane@example.com"
TIMEOUT_S = 120


@pytest.fixture
def sandboxes() -> Iterator[tuple[RunningServer, RunningServer]]:
    """The emulators, Mautic with the custom field ``company_size`` besides the seed's own."""
    custom_fields = (*mautic.DEFAULT_CUSTOM_FIELDS, "company_size")
    with (
        start_in_thread(
            mautic.create_app(username="signal", password="sandbox-password", custom_fields=custom_fields)
        ) as crm,
        start_in_thread(mailgun.create_app(api_key="key-sandbox")) as mg,
    ):
        yield crm, mg


@pytest.fixture
def config(write_worker_config: Callable[..., Path]) -> Path:
    path = write_worker_config()
    config = yaml.safe_load(path.read_text())
    config["integrations"][0]["mapping"] = {"company_size": "traits.company_size", "phone": None}
    config["integrations"][1]["mapping"] = {"vars.plan_tier": "properties.plan"}
    config["integrations"][1]["events"] = {"Plan Changed": {}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def get(server: RunningServer, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def record(message_id: str, **fields: Any) -> tuple[bytes, bytes]:
    body = {
        "messageId": message_id,
        "anonymousId": "anon-jane",
        "timestamp": "2026-06-06T10:00:00Z",
        "context": {"ip": "203.0.113.7", "consent": {"canonical": {"marketing": True}}},
        **fields,
    }
    return b"anon-jane", orjson.dumps(body)


def test_a_mapped_custom_field_and_var_reach_the_destinations(
    tmp_path: Path, kafka_bootstrap: str, pipeline_topics: dict[str, str], sandboxes, config: Path
) -> None:
    crm, mg = sandboxes
    source, deliveries = pipeline_topics["source"], pipeline_topics["deliveries"]
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        produce(
            kafka_bootstrap,
            source,
            [
                record(
                    "identify",
                    type="identify",
                    traits={
                        "email": JANE,
                        "first_name": "Jane",
                        "phone": "+44 7700 900123",
                        "company_size": 250,
                    },
                ),
                record("plan", type="track", event="Plan Changed", properties={"plan": "gold"}),
            ],
        )
        outcomes = consume_until(
            kafka_bootstrap, deliveries, lambda got: len(got) >= 4, TIMEOUT_S, worker.assert_alive
        )
    finally:
        code = worker.stop()
        print(f"worker exit code {code}; log tail:\n{worker.log_tail(40)}")

    statuses = {(o["message_id"], o["integration"]): (o["status"], o["reason"]) for o in outcomes}
    assert statuses == {
        ("identify", "mautic-main"): ("delivered", None),
        ("identify", "mailgun-news"): ("delivered", None),
        ("plan", "mautic-main"): ("dropped", "event_not_mapped"),
        ("plan", "mailgun-news"): ("delivered", None),
    }
    contacts = [c for c in get(crm, "/_sandbox/contacts")["contacts"] if c["fields"]["all"]["email"] == JANE]
    assert len(contacts) == 1
    fields = contacts[0]["fields"]["all"]
    assert (fields["company_size"], fields["firstname"], fields["phone"]) == ("250", "Jane", None)
    members = [m for m in get(mg, "/_sandbox/members")["members"][LIST] if m["address"] == JANE]
    assert len(members) == 1
    assert members[0]["vars"] == {
        "first_name": "Jane",
        "anonymous_id": "anon-jane",
        "plan_tier": "gold",
    }
