"""A deterministic mixed event stream plus the truth it should produce, computed independently.

People fall into groups: consenting (everything delivered), refusing (consent false),
silent (no consent given) and anonymous visitors (never identified). Every event of a
person carries their anonymous id, as a browser SDK's would, and records are keyed by
it. The expected outcome of every (event, integration) and the expected final state of
every contact in both emulators are derived here from the generator's own knowledge,
not from signal-sync's code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAUTIC_EVENTS = {"page", "Identified", "Signed Up", "Lead Captured"}
MAILGUN_EVENTS = {"page", "Signed Up", "Identified", "Order Completed"}
INTEGRATIONS = {"mautic-main": MAUTIC_EVENTS, "mailgun-news": MAILGUN_EVENTS}
START = datetime(2026, 6, 6, 12, 0, 0, tzinfo=UTC)


@dataclass
class Person:
    anonymous_id: str
    consent: bool | None
    email: str | None = None
    first: str = ""
    last: str = ""
    plan: str = "free"
    company: str = ""
    user_id: str | None = None
    mautic: dict[str, Any] = field(default_factory=dict)
    mailgun_vars: dict[str, Any] = field(default_factory=dict)
    mautic_last_active: str | None = None
    mautic_signup: str | None = None
    mautic_lead: str | None = None


@dataclass
class Scenario:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    expected: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    people: list[Person] = field(default_factory=list)
    invalid_count: int = 0

    @property
    def delivered_people(self) -> list[Person]:
        return [p for p in self.people if p.email and p.consent is True]


def build_scenario(seed: int = 7, people: int = 40, events_per_person: int = 8) -> Scenario:
    rng = random.Random(seed)
    scenario = Scenario()
    clock = START
    for index in range(people):
        consent = rng.choice([True, True, True, False, None])
        person = Person(anonymous_id=f"anon-{seed}-{index}", consent=consent)
        if index % 8 != 7:  # one in eight never identifies
            person.email = f"Person.{index}@Example.com " if index % 5 == 0 else f"person.{index}@example.com"
            person.first, person.last = f"First{index}", f"Last{index}"
            person.company = f"Company {index % 6}"
            person.user_id = f"user-{seed}-{index}"
        scenario.people.append(person)

    timeline: list[tuple[Person, int]] = []
    for person in scenario.people:
        timeline.extend((person, n) for n in range(events_per_person))
    rng.shuffle(timeline)  # interleave people; each person's own sequence stays ordered below
    counters: dict[str, int] = {}
    for person, _ in timeline:
        step = counters.get(person.anonymous_id, 0)
        counters[person.anonymous_id] = step + 1
        clock += timedelta(seconds=1)
        event = next_event(rng, person, step, clock)
        message_id = f"m-{seed}-{len(scenario.records)}"
        event["messageId"] = message_id
        record_expectations(scenario, person, event, message_id, clock)
        scenario.records.append((person.anonymous_id.encode(), orjson.dumps(event)))
    for n in range(6):  # poison mixed in
        bad = [b"not json", b"[1,2,3]", b'{"type":"wat"}', b'{"type":"track"}', b"\xff\xfe", b'{"type":5}'][n]
        scenario.records.insert(rng.randrange(len(scenario.records)), (None, bad))
        scenario.invalid_count += 1
    return scenario


def next_event(rng: random.Random, person: Person, step: int, when: datetime) -> dict[str, Any]:
    context: dict[str, Any] = {"ip": f"198.51.100.{step + 1}"}
    if person.consent is not None:
        context["consent"] = {"canonical": {"marketing": person.consent}}
    base = {"anonymousId": person.anonymous_id, "timestamp": when.isoformat(), "context": context}
    if step == 0 and person.email:
        return {
            **base,
            "type": "identify",
            "userId": person.user_id,
            "traits": {
                "email": person.email,
                "firstName": person.first,
                "last_name": person.last,
                "company": person.company,
                "plan": person.plan,
            },
        }
    choice = rng.choice(
        ["page", "page", "Signed Up", "Order Completed", "Lead Captured", "Button Clicked", "plan"]
    )
    if choice == "plan" and person.email:
        person.plan = rng.choice(["pro", "team", "enterprise"])
        return {**base, "type": "identify", "userId": person.user_id, "traits": {"plan": person.plan}}
    if choice in ("page", "plan"):
        url = f"https://www.example.com/p/{step}?utm_source=src{step}"
        return {**base, "type": "page", "context": {**context, "page": {"url": url}}}
    properties: dict[str, Any] = {
        "Signed Up": {"method": rng.choice(["email", "google"])},
        "Order Completed": {
            "order_id": f"o-{person.anonymous_id}-{step}",
            "revenue": step * 10.5,
            "currency": "EUR",
        },
        "Lead Captured": {"source": "webinar"},
        "Button Clicked": {"label": "x"},
    }[choice]
    return {**base, "type": "track", "event": choice, "properties": properties}


def record_expectations(
    scenario: Scenario, person: Person, event: dict[str, Any], message_id: str, when: datetime
) -> None:
    name = {"identify": "Identified", "page": "page"}.get(event["type"]) or event["event"]
    for integration, mapped in INTEGRATIONS.items():
        if person.consent is False and person.email:
            # consent explicitly false: a withdrawal, whatever the event, for a person neither
            # destination knows (they never consented), so nothing is sent
            result = ("dropped", "consent_denied")
        elif name not in mapped:
            result: tuple[str, str | None] = ("dropped", "event_not_mapped")
        elif not person.email:
            result = ("dropped", "no_email")
        elif person.consent is not True:
            result = ("dropped", "consent_denied")
        else:
            result = ("delivered", None)
            apply_truth(person, integration, name, event, when)
        scenario.expected[(message_id, integration)] = result


def apply_truth(person: Person, integration: str, name: str, event: dict[str, Any], when: datetime) -> None:
    props = event.get("properties", {})
    if integration == "mautic-main":
        person.mautic_last_active = when.strftime("%Y-%m-%d %H:%M:%S")
        if name == "Signed Up":
            person.mautic_signup = props["method"]
        if name == "Lead Captured":
            person.mautic_lead = props["source"]
        return
    found: dict[str, Any] = {}
    if name == "Identified":
        found = {
            "first_name": person.first,
            "last_name": person.last,
            "plan": person.plan,
            "company": person.company,
        }
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
    person.mailgun_vars["anonymous_id"] = person.anonymous_id
