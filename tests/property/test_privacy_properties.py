"""Properties of consent withdrawal and re-grant over generated histories, against the real emulators.

A history is a sequence of what happens to one person: events of the worker (consent granted →
an upsert or a re-grant, consent withdrawn → a withdrawal) and what happens at the destinations
without signal-sync (Mautic records a bounce or the person's own unsubscribe; an admin removes
the contact's first do-not-contact entry; the person unsubscribes from the Mailgun sending
domain). Each event goes through the worker's own ``Jobs``
(planning with the remembered state, the gate, the HTTP client) to the in-process emulators.
After every step:

* a withdrawal never creates a contact or a member;
* once withdrawn, the person has no consent tag, is not contactable by email in Mautic and is
  not subscribed in Mailgun (when the destination knows them);
* a do-not-contact entry or an unsubscribe that signal-sync did not create is never removed
  or rewritten;
* after a re-grant, what signal-sync added is gone: with no foreign entry, the Mautic contact is
  contactable again and the address is off the domain's unsubscribe list.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from signal_sync.config import DeliverySettings, MailgunIntegration, MauticIntegration
from signal_sync.destinations.delivery import Sender
from signal_sync.destinations.mautic_privacy import DNC_COMMENT
from signal_sync.engine.batch_send import guarded_send
from signal_sync.engine.gate import IntegrationGate
from signal_sync.engine.jobs import ContactStates, Job, Jobs
from signal_sync.identity import ResolvedEvent
from signal_sync.sandbox import RunningServer, mailgun, mautic, start_in_thread
from tests.property.profiles import PROFILE
from tests.unit.factories import MAILGUN_KEY, MAUTIC_PASSWORD, consent, event
from tests.unit.factories import mailgun as mailgun_integration
from tests.unit.factories import mautic as mautic_integration

EMAIL = "jane@example.com"
LIST = "newsletter@mg.example.com"
DOMAIN = "mg.example.com"
TAG = "signal-marketing-consent"
STEPS = ("grant", "withdraw", "bounce", "own_unsubscribe", "admin_removes_dnc", "domain_unsubscribe")


@dataclass
class Destinations:
    crm: RunningServer
    mg: RunningServer
    integrations: list[MauticIntegration | MailgunIntegration]


@pytest.fixture(scope="module")
def destinations() -> Iterator[Destinations]:
    with (
        start_in_thread(mautic.create_app(username="signal", password=MAUTIC_PASSWORD)) as crm,
        start_in_thread(mailgun.create_app(api_key=MAILGUN_KEY)) as mg,
    ):
        yield Destinations(
            crm,
            mg,
            [
                mautic_integration(base_url=crm.url),
                mailgun_integration(base_url=mg.url, unsubscribe_domain=DOMAIN),
            ],
        )


def http(
    server: RunningServer, method: str, path: str, auth: str | None = None, form: dict | None = None
) -> Any:
    headers = {}
    data = None
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    if form is not None:
        data = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in form.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        return json.loads(reply.read())


@dataclass
class Truth:
    """What the test knows happened without signal-sync."""

    foreign_dnc: set[int] = field(default_factory=set)
    foreign_unsubscribe: bool = False
    withdrawn: bool = False
    removed_by_admin: bool = False
    """An entry was removed outside signal-sync: the person may be contactable while withdrawn."""


def contact(d: Destinations) -> dict[str, Any] | None:
    contacts = http(d.crm, "GET", "/_sandbox/contacts")["contacts"]
    assert len(contacts) <= 1
    return contacts[0] if contacts else None


def member(d: Destinations) -> dict[str, Any] | None:
    members = http(d.mg, "GET", "/_sandbox/members")["members"][LIST]
    return members[0] if members else None


def unsubscribed(d: Destinations) -> bool:
    return any(
        u["address"] == EMAIL for u in http(d.mg, "GET", "/_sandbox/unsubscribes")["unsubscribes"][DOMAIN]
    )


def job(granted: bool) -> Job:
    raw = event(type="identify", anonymousId="a1", context=consent(marketing=granted))
    return Job(
        ResolvedEvent(raw, {"email": EMAIL, "first_name": "Jane"}),
        "upsert" if granted else "withdraw_consent",
    )


def outside(d: Destinations, step: str, truth: Truth) -> None:
    """What happens at a destination without signal-sync."""
    found = contact(d)
    if step in ("bounce", "own_unsubscribe") and found is not None:
        reason, comments = ("2", "550 mailbox unknown") if step == "bounce" else ("1", "User unsubscribed.")
        before = {entry["id"] for entry in found["doNotContact"]}
        answer = http(
            d.crm,
            "POST",
            f"/api/contacts/{found['id']}/dnc/email/add",
            f"signal:{MAUTIC_PASSWORD}",
            {"reason": reason, "comments": comments},
        )
        truth.foreign_dnc |= {entry["id"] for entry in answer["contact"]["doNotContact"]} - before
    if step == "admin_removes_dnc" and found is not None:
        answer = http(
            d.crm, "POST", f"/api/contacts/{found['id']}/dnc/email/remove", f"signal:{MAUTIC_PASSWORD}"
        )
        truth.foreign_dnc &= {entry["id"] for entry in answer["contact"]["doNotContact"]}
        truth.removed_by_admin = truth.removed_by_admin or answer["recordFound"]
    if step == "domain_unsubscribe" and not unsubscribed(d):
        http(d.mg, "POST", f"/v3/{DOMAIN}/unsubscribes", f"api:{MAILGUN_KEY}", {"address": EMAIL, "tag": "*"})
        truth.foreign_unsubscribe = True


def check(d: Destinations, truth: Truth, created: bool) -> None:
    found, listed = contact(d), member(d)
    if not created:
        assert found is None and listed is None, "a withdrawal created something"
        return
    assert found is not None
    entries = found["doNotContact"]
    for entry in entries:
        if entry["id"] in truth.foreign_dnc:
            assert entry["comments"] != DNC_COMMENT, "a foreign entry was rewritten as ours"
    assert truth.foreign_dnc <= {entry["id"] for entry in entries}, "a foreign entry was removed"
    if truth.foreign_unsubscribe:
        assert unsubscribed(d), "a foreign unsubscribe was removed"
    if truth.withdrawn:
        assert TAG not in [tag["tag"] for tag in found["tags"]]
        if not truth.removed_by_admin:
            assert any(entry["reason"] != 0 for entry in entries), "withdrawn but contactable"
        assert listed is not None and listed["subscribed"] is False
    else:
        assert TAG in [tag["tag"] for tag in found["tags"]]
        assert listed is not None and listed["subscribed"] is True
        if not truth.foreign_dnc:
            assert entries == [], "our entry outlived the re-grant"
        if not truth.foreign_unsubscribe:
            assert not unsubscribed(d), "our unsubscribe outlived the re-grant"


async def run_history(d: Destinations, steps: list[str]) -> None:
    sender = Sender(DeliverySettings(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05))
    table: dict[str, Any] = {}
    runners = [
        Jobs(i, ContactStates(i, table), guarded_send(sender, IntegrationGate(i.id), i))
        for i in d.integrations
    ]
    truth, created = Truth(), False
    try:
        for step in steps:
            if step in ("grant", "withdraw"):
                granted = step == "grant"
                for runner in runners:
                    done = await runner.run(job(granted))
                    assert done.status in ("delivered", "dropped"), done
                    if not created and not granted:
                        assert (done.status, done.reason) == ("dropped", "consent_denied")
                created = created or granted
                if granted or not truth.withdrawn:
                    truth.removed_by_admin = False  # a new withdrawal (or a re-grant) sets it right
                truth.withdrawn = not granted
            else:
                await asyncio.to_thread(outside, d, step, truth)
            await asyncio.to_thread(check, d, truth, created)
    finally:
        await sender.close()


@PROFILE
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=8))
@example(["grant", "withdraw", "admin_removes_dnc", "bounce", "grant"])  # a foreign entry took our place
@example(["grant", "bounce", "withdraw", "grant"])  # a bounce before the withdrawal is not claimed
@example(["grant", "withdraw", "own_unsubscribe", "grant"])
@example(["grant", "domain_unsubscribe", "withdraw", "grant"])
@example(["withdraw", "grant", "withdraw", "withdraw", "grant"])
def test_withdrawals_and_regrants_keep_the_destinations_right_whatever_happens_around_them(
    destinations: Destinations, steps: list[str]
) -> None:
    http(destinations.crm, "POST", "/_sandbox/reset")
    http(destinations.mg, "POST", "/_sandbox/reset")
    asyncio.run(run_history(destinations, steps))
