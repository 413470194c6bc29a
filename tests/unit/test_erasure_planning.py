"""Erasure, planned: each case's calls at Mautic and Mailgun driven with scripted answers, which
answers end it as done and which are faults, and that the contact's destination state is deleted
(through ``Jobs``, as the delivery agent runs it)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Verdict, classify_status
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mailgun_privacy import list_request
from signal_sync.engine.jobs import ContactStates, Job, Jobs
from signal_sync.erasure import erased_person
from signal_sync.identity import contact_id
from signal_sync.planner import plan_delivery, state_key
from tests.unit.factories import mailgun, mautic
from tests.unit.test_privacy_planning import NOT_FOUND, absent, calls, contact, drive, ok

EMAIL = "jane@example.com"
MAUTIC = mautic()
MAILGUN = mailgun(unsubscribe_domain="mg.example.com")
PERSON = erased_person("req-1", EMAIL)
MEMBER_GONE = {"message": "Member jane@example.com of mailing list newsletter@mg.example.com not found"}


def lookup_answer(*contacts: dict[str, Any]) -> DeliveryResult:
    return ok({"total": len(contacts), "contacts": {str(c["id"]): c for c in contacts}})


def deleted(contact_id: int) -> DeliveryResult:
    return ok({"contact": {"id": None, "fields": {"all": {"email": EMAIL}}}})


def test_mautic_erasure_by_the_kept_id_deletes_it_then_every_other_exact_match() -> None:
    work = plan_delivery(PERSON, MAUTIC, "erase", {"id": 5})
    sent, finish = drive(work, [deleted(5), lookup_answer(contact(9)), deleted(9)])
    assert calls(sent) == [
        ("DELETE", "/api/contacts/5/delete"),
        ("GET", "/api/contacts"),
        ("DELETE", "/api/contacts/9/delete"),
    ]
    assert (finish.status, finish.forget) == ("delivered", True)
    assert all(request.json is None and request.form is None for request in sent), "a delete sends no body"


def test_mautic_erasure_without_an_id_looks_up_and_deletes_every_exact_match_only() -> None:
    work = plan_delivery(PERSON, MAUTIC, "erase", {})
    found = lookup_answer(contact(3), contact(4), contact(8, email="jane@example.com.au"), contact(6))
    sent, finish = drive(work, [found, deleted(3), deleted(4), deleted(6)])
    assert calls(sent) == [
        ("GET", "/api/contacts"),
        ("DELETE", "/api/contacts/3/delete"),
        ("DELETE", "/api/contacts/4/delete"),
        ("DELETE", "/api/contacts/6/delete"),
    ]
    assert finish.forget and finish.status == "delivered"


def test_mautic_erasure_of_a_contact_already_gone_is_done() -> None:
    """``Item was not found.`` for the kept id: gone already (a second delete, or an admin's)."""
    work = plan_delivery(PERSON, MAUTIC, "erase", {"id": 5, "withdrawn": True, "dnc": {"5": 7, "11": 8}})
    sent, finish = drive(work, [absent(NOT_FOUND), deleted(11), lookup_answer()])
    assert calls(sent) == [
        ("DELETE", "/api/contacts/5/delete"),
        ("DELETE", "/api/contacts/11/delete"),
        ("GET", "/api/contacts"),
    ]
    assert (finish.status, finish.forget) == ("delivered", True)
    assert sent[0].absent is not None and sent[0].absent(orjson.dumps(NOT_FOUND))
    assert classify_status(404, {}, 0.0, absent=sent[0].absent(orjson.dumps(NOT_FOUND))).verdict is (
        Verdict.ABSENT
    )
    html = b"<html>404</html>"
    assert classify_status(404, {}, 0.0, absent=sent[0].absent(html)).verdict is Verdict.FAULT, (
        "a 404 that is not Mautic's own answer for the id is a fault (a wrong base URL)"
    )


def test_mautic_erasure_of_a_person_mautic_never_had_sends_only_the_lookup() -> None:
    sent, finish = drive(plan_delivery(PERSON, MAUTIC, "erase", {}), [lookup_answer()])
    assert calls(sent) == [("GET", "/api/contacts")]
    assert (finish.status, finish.forget) == ("delivered", True)


def test_mailgun_erasure_deletes_the_member_and_leaves_the_domain_unsubscribe() -> None:
    state = {"vars": {"plan": "pro"}, "withdrawn": True, "unsubscribed": "mg.example.com"}
    sent, finish = drive(plan_delivery(PERSON, MAILGUN, "erase", state), [ok({"member": {}})])
    assert calls(sent) == [("DELETE", "/v3/lists/newsletter@mg.example.com/members/jane@example.com")]
    assert (finish.status, finish.forget) == ("delivered", True)


def test_mailgun_erasure_of_a_non_member_checks_the_list_then_is_done() -> None:
    sent, finish = drive(plan_delivery(PERSON, MAILGUN, "erase", {}), [absent(MEMBER_GONE), ok({"list": {}})])
    assert calls(sent) == [
        ("DELETE", "/v3/lists/newsletter@mg.example.com/members/jane@example.com"),
        ("GET", "/v3/lists/newsletter@mg.example.com"),
    ]
    assert (finish.status, finish.forget) == ("delivered", True)


def test_mailgun_erasure_with_the_list_missing_is_a_fault() -> None:
    """The list check names no item: its 404 is never an answer, so the integration pauses."""
    request = list_request(MAILGUN)
    assert request.absent is None
    assert classify_status(404, {}, 0.0, absent=False).verdict is Verdict.FAULT


def test_an_address_with_plus_is_one_path_segment() -> None:
    person = erased_person("req-2", "jane+news@example.com")
    sent, _ = drive(plan_delivery(person, MAILGUN, "erase", {}), [ok({"member": {}})])
    assert sent[0].url.endswith("/members/jane%2Bnews@example.com")


class Script:
    """A destination answering from a script; records what was sent."""

    def __init__(self, *answers: DeliveryResult) -> None:
        self.answers = list(answers)
        self.sent: list[Request] = []

    async def send(self, request: Request) -> DeliveryResult:
        self.sent.append(request)
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("integration", "stored", "answers"),
    [
        (MAUTIC, {"id": 5}, [deleted(5), lookup_answer()]),
        (MAILGUN, {"plan": "pro"}, [ok({"member": {}})]),
    ],
)
async def test_an_erasure_deletes_the_contacts_destination_state(
    integration: Any, stored: dict[str, Any], answers: list[DeliveryResult]
) -> None:
    key = state_key(integration, contact_id(EMAIL))
    other = state_key(integration, contact_id("sam@example.org"))
    table: dict[str, Any] = {key: stored, other: stored}
    world = Script(*answers)
    result = await Jobs(integration, ContactStates(integration, table), world.send).run(Job(PERSON, "erase"))
    assert (result.operation, result.status, result.reason) == ("erase", "delivered", None)
    assert key not in table and other in table


async def test_a_failed_erasure_keeps_the_state_for_the_next_try() -> None:
    key = state_key(MAUTIC, contact_id(EMAIL))
    table: dict[str, Any] = {key: {"id": 5}}
    refused = DeliveryResult("failed", 400, None, 1, "http_400", None, None, reply=b"{}")
    result = await Jobs(MAUTIC, ContactStates(MAUTIC, table), Script(refused).send).run(Job(PERSON, "erase"))
    assert (result.status, result.reason) == ("failed", "http_400")
    assert table == {key: {"id": 5}}
