"""End to end on the real broker: events in, HTTP to the emulators, one outcome per (event, integration).

The expectations come from ``tests.support.scenario``, which knows what each generated
event should do without using signal-sync's code.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Any

import pytest
from harness import produce

from signal_sync.identity import contact_id
from tests.support.dead_letters import consume_letters
from tests.support.outcomes import consume_outcomes
from tests.support.scenario import build_scenario

pytestmark = pytest.mark.integration


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


def test_every_event_gets_its_outcome_and_contacts_end_in_the_right_state(
    kafka_bootstrap, pipeline_topics, sandboxes, worker
):
    crm, mg = sandboxes
    scenario = build_scenario(seed=11, people=40, events_per_person=8)
    produce(kafka_bootstrap, pipeline_topics["source"], scenario.records)
    expected_total = len(scenario.expected) + 2 * scenario.invalid_count

    outcomes = consume_outcomes(
        kafka_bootstrap, pipeline_topics["deliveries"], expected_total, worker, timeout=240
    )
    pairs = Counter((o["message_id"], o["integration"]) for o in outcomes)
    assert max(pairs.values()) == 1, "a clean run must not duplicate outcomes"

    by_pair = {(o["message_id"], o["integration"]): o for o in outcomes}
    for pair, (status, reason) in scenario.expected.items():
        got = by_pair[pair]
        assert (got["status"], got["reason"]) == (status, reason), (pair, got)
        if status == "delivered":
            assert got["http_status"] in (200, 201) and got["attempts"] == 1
            assert got["_key"] == got["contact_id"].encode()
    invalid = [o for o in outcomes if o["status"] == "invalid"]
    assert len(invalid) == 2 * scenario.invalid_count
    assert {o["reason"] for o in invalid} == {"invalid_event"} and all(o["error"] for o in invalid)
    assert not any("@" in json.dumps({k: v for k, v in o.items() if k != "_key"}) for o in outcomes), (
        "no plaintext email in outcomes by default"
    )

    # Mautic: one contact per consenting person; 201 only on the first upsert of each.
    created = Counter(o["contact_id"] for o in outcomes if o["integration"] == "mautic-main" and o["created"])
    assert all(n == 1 for n in created.values())
    contacts = {c["fields"]["all"]["email"]: c for c in get_json(f"{crm.url}/_sandbox/contacts")["contacts"]}
    expected_people = scenario.delivered_people
    assert set(contacts) == {p.email.strip().lower() for p in expected_people}
    for person in expected_people:
        contact = contacts[person.email.strip().lower()]
        fields = contact["fields"]["all"]
        assert (fields["firstname"], fields["lastname"], fields["company"]) == (
            person.first,
            person.last,
            person.company,
        )
        assert fields.get("signal_signup_method") == person.mautic_signup
        assert fields.get("signal_lead_source") == person.mautic_lead
        # Mautic renders lastActive as ISO 8601 in UTC; we sent `Y-m-d H:i:s` in UTC.
        assert contact["lastActive"] == f"{person.mautic_last_active.replace(' ', 'T')}+00:00", "out of order"
        assert [t["tag"] for t in contact["tags"]] == ["signal-marketing-consent"]

    # Mailgun: merged vars survive partial updates; last writes win in event order.
    members = {
        m["address"]: m
        for m in get_json(f"{mg.url}/_sandbox/members")["members"]["newsletter@mg.example.com"]
    }
    assert set(members) == {p.email.strip().lower() for p in expected_people}
    for person in expected_people:
        member = members[person.email.strip().lower()]
        assert member["vars"] == person.mailgun_vars
        assert member["name"] == f"{person.first} {person.last}" and member["subscribed"] is True

    # Per-contact order: Mautic's applied lastActive values never go backwards.
    for person in expected_people:
        log = get_json(f"{crm.url}/_sandbox/log/{person.email.strip().lower()}")["applied"]
        stamps = [entry["changes"].get("lastActive") for entry in log if entry["changes"].get("lastActive")]
        assert stamps == sorted(stamps)

    letters = consume_letters(
        kafka_bootstrap,
        pipeline_topics["dlq"],
        lambda got: len(got) >= 2 * scenario.invalid_count,
        timeout=30,
    )
    assert len(letters) == 2 * scenario.invalid_count
    bad = {value for key, value in scenario.records if key is None}
    assert {(stored.key, stored.value) for stored in letters} == {(None, value) for value in bad}, (
        "each dead letter is its invalid record, byte for byte"
    )
    # Emails differing only by case and whitespace are one contact ("Person.0@Example.com ").
    assert contact_id("person.0@example.com") in {o["contact_id"] for o in outcomes}
