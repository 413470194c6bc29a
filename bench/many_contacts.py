"""The many-contacts workload: every event is the ``identify`` of a person never seen before.

The default workload (``workload.py``) replays a Zipf mix over some 100k contacts; this one is
the other end of the scale: ``events`` records, ``events`` distinct contacts, so the worker's
tables end with one identity per anonymous id and user id and one destination state per
contact and integration (four table entries per contact), the most state per event the input
can make. Each identify carries an email, names, a plan and consent, so every event is
delivered to both integrations (the expected outcomes need no planner run, which would take
minutes for a million events). Records are keyed by anonymous id, as in ``workload.py``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from workload import FIRST_NAMES, INTEGRATION_IDS, LAST_NAMES, PLANS, Workload, WorkloadSpec, message_id

BASE_TIME = datetime(2026, 6, 6, 12, 0, 0, tzinfo=UTC)


def identify(index: int, contact: int) -> tuple[bytes, bytes]:
    """Input event ``index``: the first event of contact ``contact``."""
    anonymous_id = f"n-{contact:08d}"
    event = {
        "type": "identify",
        "messageId": message_id(index),
        "anonymousId": anonymous_id,
        "userId": f"nu-{contact:08d}",
        "timestamp": (BASE_TIME + timedelta(milliseconds=index)).isoformat().replace("+00:00", "Z"),
        "traits": {
            "email": f"person{contact}@example.net",
            "firstName": FIRST_NAMES[contact % len(FIRST_NAMES)],
            "lastName": LAST_NAMES[(contact // len(FIRST_NAMES)) % len(LAST_NAMES)],
            "plan": PLANS[contact % len(PLANS)],
        },
        "context": {
            "ip": f"198.18.{(contact // 250) % 256}.{contact % 250 + 1}",
            "consent": {"canonical": {"marketing": True}},
        },
    }
    return anonymous_id.encode(), orjson.dumps(event)


def generate(events: int, first_contact: int = 0) -> Workload:
    """``events`` identifies of as many new contacts, numbered from ``first_contact``."""
    records = [identify(index, first_contact + index) for index in range(events)]
    return Workload(
        spec=WorkloadSpec(
            events=events, contacts=events, zipf_s=0.0, anonymous_share=0.0, consent_denied_share=0.0
        ),
        records=records,
        kinds=Counter({"identify": events}),
        contacts_seen=events,
        hottest_contact_events=1 if events else 0,
    )


def probe(events: int, after: int) -> list[tuple[bytes, bytes]]:
    """New contacts' events for a restarted worker, with message ids after the ``after`` input
    events (the harness counts them apart from the input's outcomes)."""
    return [identify(after + index, after + index) for index in range(events)]


def expected_outcomes(workload: Workload) -> dict[str, Any]:
    """Every event delivered to both integrations; one request each; chains of one."""
    events = len(workload.records)
    return {
        "statuses": {integration: {"delivered": events} for integration in INTEGRATION_IDS},
        "requests": {integration: events for integration in INTEGRATION_IDS},
        "longest_contact_chain": {integration: 1 if events else 0 for integration in INTEGRATION_IDS},
    }
