"""Chaos workload: a deterministic event stream and, computed independently, what it must produce.

Like ``tests.support.scenario`` but built for checking order after faults: every event of
a person carries the person's ``userId`` (so later events are stitched to the email the
first ``identify`` gave) and its own ``anonymousId``. Mailgun receives the event's
anonymous id in the ``anonymous_id`` var and Mautic its timestamp in ``lastActive``
(unique per event), so each applied upsert in an emulator's per-contact log names the
exact event that caused it. Records are keyed by the person, so each person's events
stay in one source partition, in order.

Nothing here imports signal-sync: the expected outcome of every (event, integration),
the expected per-contact request sequence and the expected final state come from the
generator's own knowledge of the mapping contract.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAUTIC = "mautic-main"
MAILGUN = "mailgun-news"
INTEGRATIONS = (MAUTIC, MAILGUN)
MAPPED = {
    MAUTIC: frozenset({"page", "Identified", "Signed Up", "Lead Captured"}),
    MAILGUN: frozenset({"page", "Identified", "Signed Up", "Order Completed"}),
}
CONSENT_TAG = "signal-marketing-consent"
START = datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC)


@dataclass
class Person:
    key: str
    consent: bool | None
    email: str | None = None
    user_id: str | None = None
    first: str = ""
    last: str = ""
    company: str = ""
    plan: str = "free"
    # What each destination must have received, in order: one marker per delivered event.
    mautic_markers: list[str] = field(default_factory=list)  # lastActive, ISO 8601 UTC
    mailgun_markers: list[str] = field(default_factory=list)  # the event's anonymous id
    delivered_ids: dict[str, list[str]] = field(default_factory=dict)  # integration → message ids in order
    # Final state each destination must hold.
    mautic_fields: dict[str, Any] = field(default_factory=dict)
    mautic_ips: set[str] = field(default_factory=set)
    mailgun_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.email is not None and self.consent is True

    @property
    def address(self) -> str:
        assert self.email is not None
        return self.email.lower()


@dataclass
class Workload:
    seed: int
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    expected: dict[tuple[str, str], str] = field(default_factory=dict)  # (message_id, integration) → status
    people: list[Person] = field(default_factory=list)
    poison: list[tuple[str, bytes | None]] = field(default_factory=list)  # (message_id, value)

    @property
    def events(self) -> int:
        """Input records, poison included."""
        return len(self.records)

    @property
    def delivered_people(self) -> list[Person]:
        return [p for p in self.people if p.delivered and (p.mautic_markers or p.mailgun_markers)]


def fallback_message_id(raw: bytes | None) -> str:
    """The documented id of a record without a readable messageId: sha256 prefix of the value."""
    return "sha256:" + hashlib.sha256(raw or b"").hexdigest()[:32]


def mautic_last_active(when: datetime) -> str:
    """How the Mautic emulator renders ``lastActive`` (ISO 8601, UTC offset)."""
    return when.replace(microsecond=0).isoformat()


def build_workload(seed: int, people: int, events_per_person: int) -> Workload:
    """``people × events_per_person`` events, people interleaved, each person's own events in order."""
    rng = random.Random(seed)
    work = Workload(seed=seed)
    for index in range(people):
        consent = rng.choices([True, False, None], weights=[8, 1, 1])[0]
        person = Person(key=f"k{seed}-{index}", consent=consent)
        if index % 10 != 9:  # one in ten never identifies: no email, every event dropped
            person.email = f"chaos.{seed}.{index}@example.com"
            person.user_id = f"u{seed}-{index}"
            person.first, person.last = f"First{index}", f"Last{index}"
            person.company = f"Company {index % 7}"
        work.people.append(person)

    timeline = [person for person in work.people for _ in range(events_per_person)]
    rng.shuffle(timeline)
    steps: dict[str, int] = {}
    clock = START
    for person in timeline:
        step = steps.get(person.key, 0)
        steps[person.key] = step + 1
        clock += timedelta(seconds=1)
        message_id = f"c{seed}-{len(work.records)}"
        event = _event(rng, person, step, clock, message_id)
        _expect(work, person, event, clock)
        work.records.append((person.key.encode(), json.dumps(event).encode()))
    return work


def _event(rng: random.Random, person: Person, step: int, when: datetime, message_id: str) -> dict[str, Any]:
    context: dict[str, Any] = {"ip": f"198.51.100.{step % 250 + 1}"}
    if person.consent is not None:
        context["consent"] = {"canonical": {"marketing": person.consent}}
    base: dict[str, Any] = {
        "messageId": message_id,
        "anonymousId": f"{person.key}-e{step}",
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "context": context,
    }
    if person.user_id:
        base["userId"] = person.user_id
    if step == 0 and person.email:
        traits = {
            "email": person.email,
            "first_name": person.first,
            "last_name": person.last,
            "company": person.company,
            "plan": person.plan,
        }
        return {**base, "type": "identify", "traits": traits}
    choice = rng.choice(["page", "page", "Signed Up", "Order Completed", "Lead Captured", "Clicked", "plan"])
    if choice == "plan" and person.email:
        person.plan = f"plan-{step}"
        return {**base, "type": "identify", "traits": {"plan": person.plan}}
    if choice in ("page", "plan"):
        page = {"url": f"https://www.example.com/{person.key}/{step}"}
        return {**base, "type": "page", "context": {**context, "page": page}}
    properties: dict[str, Any] = {
        "Signed Up": {"method": rng.choice(["email", "google", "sso"])},
        "Order Completed": {"order_id": f"o-{person.key}-{step}", "revenue": step * 10.5, "currency": "EUR"},
        "Lead Captured": {"source": rng.choice(["webinar", "ebook", "demo"])},
        "Clicked": {"label": "x"},
    }[choice]
    return {**base, "type": "track", "event": choice, "properties": properties}


def _expect(work: Workload, person: Person, event: dict[str, Any], when: datetime) -> None:
    name = {"identify": "Identified", "page": "page"}.get(event["type"]) or event["event"]
    for integration in INTEGRATIONS:
        if name not in MAPPED[integration]:
            status = "dropped"  # event_not_mapped
        elif not person.email:
            status = "dropped"  # no_email
        elif person.consent is not True:
            status = "dropped"  # consent_denied
        else:
            status = "delivered"
            person.delivered_ids.setdefault(integration, []).append(event["messageId"])
            _apply(person, integration, name, event, when)
        work.expected[(event["messageId"], integration)] = status


def _apply(person: Person, integration: str, name: str, event: dict[str, Any], when: datetime) -> None:
    """The destination state after this event, per the mapping contract (docs/design.md)."""
    props = event.get("properties", {})
    if integration == MAUTIC:
        stamp = mautic_last_active(when)
        person.mautic_markers.append(stamp)
        person.mautic_ips.add(event["context"]["ip"])
        fields = person.mautic_fields
        fields.update(firstname=person.first, lastname=person.last, company=person.company, lastActive=stamp)
        if name == "Signed Up":
            fields["signal_signup_method"] = props["method"]
        if name == "Lead Captured":
            fields["signal_lead_source"] = props["source"]
        return
    found: dict[str, Any] = {}
    if name == "Identified":
        found = {"first_name": person.first, "last_name": person.last, "plan": person.plan}
        found["company"] = person.company
    elif name == "page":
        found = {"last_page_url": event["context"]["page"]["url"]}
    elif name == "Signed Up":
        found = {"signup_method": props["method"]}
    elif name == "Order Completed":
        found = {
            "last_order_id": props["order_id"],
            "last_order_revenue": props["revenue"],
            "last_order_currency": props["currency"],
        }
    person.mailgun_vars.update(found)
    person.mailgun_vars["anonymous_id"] = event["anonymousId"]
    person.mailgun_markers.append(event["anonymousId"])


def expected_message_id(raw: bytes | None) -> str:
    """A poison record's message id: its own ``messageId`` when it is readable JSON, else the fallback.

    "Readable" as the worker reads JSON, with orjson (at most 1,024 levels deep): Python's own ``json``
    gives up at its recursion limit on 3.11 but reads the 5,000-deep poison record on 3.13."""
    if raw:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            value = data.get("message_id", data.get("messageId"))
            if isinstance(value, str) and value:
                return value
    return fallback_message_id(raw)


HUGE_BYTES = 5 * 1024 * 1024


def poison_values() -> list[tuple[str, bytes | None]]:
    """(label, value) of every kind of bad input the issue lists; all values distinct."""
    deep_object = (
        b'{"type":"track","event":"Signed Up","messageId":"poison-deep","properties":'
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5001
    )
    head = b'{"type":"page","messageId":"poison-huge","anonymousId":"h","pad":"'
    huge = head + b"x" * (HUGE_BYTES - len(head) - 2) + b'"}'
    assert len(huge) == HUGE_BYTES
    wrong_types: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "poison-types-user", "userId": 12345, "traits": {"plan": "x"}},
        {"type": 5, "messageId": "poison-types-type"},
        {"type": "track", "messageId": "poison-types-event", "event": ["Signed Up"]},
        {
            "type": "page",
            "messageId": "poison-types-consent",
            "anonymousId": "p",
            "context": {"consent": {"canonical": {"marketing": "yes"}}},
        },
        {"type": "identify", "messageId": "poison-types-time", "anonymousId": "p", "timestamp": "yesterday"},
        {"type": "identify", "messageId": "poison-types-traits", "anonymousId": "p", "traits": "a string"},
        {"type": "page", "messageId": 42, "anonymousId": "p"},
        {"type": "track", "messageId": "poison-types-noname", "anonymousId": "p"},
    ]
    values: list[tuple[str, bytes | None]] = [
        ("not JSON", b"this is not json"),
        ("truncated JSON", b'{"type": "track", "event": "Signed Up", "messageId": "poison-cut"'),
        ("blank", b"   "),
        ("invalid UTF-8", b'{"type":"page","messageId":"poison-\xff\xfe","anonymousId":"x"}'),
        ("latin-1 bytes", b"\xe9t\xe9 \xff\xfe\xfd"),
        ("5 MB value", huge),
        ("5,000-deep object", deep_object),
        ("5,000-deep array", b"[" * 5000 + b"]" * 5000),
        ("JSON array", b"[1,2,3]"),
        ("JSON string", b'"hello"'),
        ("JSON null", b"null"),
        ("tombstone (null key, null value)", None),
    ]
    values += [(f"wrong types: {json.dumps(v)[:60]}", json.dumps(v).encode()) for v in wrong_types]
    assert len({v for _, v in values}) == len(values), "poison values must be distinct"
    return values


def mix_poison(work: Workload, rng: random.Random) -> list[tuple[str, str]]:
    """Insert every poison value at a random place (null key for half of them); returns (label, id)."""
    placed = []
    for n, (label, value) in enumerate(poison_values()):
        key = None if value is None or n % 2 == 0 else f"poison-{n}".encode()
        message_id = expected_message_id(value)
        for integration in INTEGRATIONS:
            work.expected[(message_id, integration)] = "invalid"
        work.poison.append((message_id, value))
        work.records.insert(rng.randrange(len(work.records) + 1), (key, value))
        placed.append((label, message_id))
    return placed


def add_null_key_person(work: Workload, when: datetime) -> Person:
    """A valid identify with a null record key: not poison, it is delivered like any other event."""
    person = Person(key="null-key", consent=True, email=f"nullkey.{work.seed}@example.com")
    person.user_id, person.first, person.last, person.company = f"u-null-{work.seed}", "Nora", "Key", "NK"
    event = {
        "type": "identify",
        "messageId": f"c{work.seed}-null-key",
        "anonymousId": f"null-key-{work.seed}",
        "userId": person.user_id,
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "traits": {
            "email": person.email,
            "first_name": "Nora",
            "last_name": "Key",
            "company": "NK",
            "plan": "free",
        },
        "context": {"ip": "203.0.113.9", "consent": {"canonical": {"marketing": True}}},
    }
    work.people.append(person)
    _expect(work, person, event, when)
    work.records.insert(len(work.records) // 2, (None, json.dumps(event).encode()))
    return person
