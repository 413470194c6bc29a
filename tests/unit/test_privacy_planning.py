"""Consent withdrawal and re-grant, planned: each case's calls (exactly what is sent, and that no
other personal data goes out), how the answers become the contact's destination state, and which
answers make a withdrawal an outcome rather than a fault. The steps are driven with scripted answers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from signal_sync.destinations import DESTINATIONS
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Verdict, classify_status
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mailgun_privacy import (
    dump_state,
    load_state,
    member_missing,
    unsubscribe_missing,
)
from signal_sync.destinations.mautic_privacy import DNC_COMMENT, contact_missing
from signal_sync.destinations.operations import Calls, Drop, Finish, Upsert
from signal_sync.identity import ResolvedEvent
from signal_sync.planner import plan_delivery
from tests.unit.factories import consent, event, mailgun, mautic

EMAIL = "jane@example.com"
MAUTIC = mautic()
MAILGUN = mailgun()
MAILGUN_DOMAIN = mailgun(unsubscribe_domain="mg.example.com")
OUR_ENTRY = {"id": 7, "reason": 1, "comments": DNC_COMMENT, "channel": "email", "channelId": None}
BOUNCE = {"id": 3, "reason": 2, "comments": "550 mailbox unknown", "channel": "email", "channelId": None}


def resolved(granted: bool, **traits: Any) -> ResolvedEvent:
    raw = event(type="page", anonymousId="a1", context=consent(marketing=granted))
    return ResolvedEvent(raw, {"email": EMAIL, "first_name": "Jane", "phone": "+44 1", **traits})


def ok(body: Any, status: int = 200) -> DeliveryResult:
    return DeliveryResult("delivered", status, None, 1, None, None, None, reply=orjson.dumps(body))


def absent(body: Any) -> DeliveryResult:
    return DeliveryResult("absent", 404, None, 1, "http_404", None, None, reply=orjson.dumps(body))


def contact(contact_id: int, *entries: dict[str, Any], email: str = EMAIL) -> dict[str, Any]:
    return {
        "id": contact_id,
        "fields": {"all": {"id": contact_id, "email": email}},
        "doNotContact": list(entries),
    }


NOT_FOUND = {"errors": [{"code": 404, "message": "Item was not found.", "details": [], "type": None}]}


def drive(
    work: Any, answers: Iterable[DeliveryResult] | Callable[[Request], DeliveryResult]
) -> tuple[list[Request], Finish]:
    """Run planned steps with scripted answers (in order, or computed per request)."""
    assert isinstance(work, Calls), work
    answer = answers if callable(answers) else iter(answers).__next__
    sent: list[Request] = []
    try:
        request = next(work.steps)
        while True:
            sent.append(request)
            request = work.steps.send(answer(request) if callable(answers) else answer())
    except StopIteration as stop:
        return sent, stop.value


def calls(sent: list[Request]) -> list[tuple[str, str]]:
    return [(request.method, urlsplit(request.url).path) for request in sent]


def personal_values(request: Request) -> set[str]:
    """Every value a request carries in its body (JSON or form), flattened."""
    body = request.json if request.json is not None else request.form
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            found.add(str(value))

    walk(body)
    return found


# --- Mautic ---------------------------------------------------------------------------------


def test_mautic_withdraw_known_contact_removes_the_tag_and_adds_our_dnc_entry() -> None:
    work = plan_delivery(resolved(False), MAUTIC, "withdraw_consent", {"id": 12})
    sent, finish = drive(work, [ok({"contact": contact(12)}), ok({"contact": contact(12, OUR_ENTRY)})])
    assert calls(sent) == [("PATCH", "/api/contacts/12/edit"), ("POST", "/api/contacts/12/dnc/email/add")]
    assert sent[0].json == {"tags": ["-signal-marketing-consent"]}
    assert sent[1].json == {"reason": 1, "comments": DNC_COMMENT}
    assert finish == Finish("delivered", state={"id": 12, "withdrawn": True, "dnc": {"12": 7}})
    for request in sent:  # nothing personal: no email, no name, no phone, no IP
        assert not {EMAIL, "Jane", "+44 1"} & personal_values(request)
        assert EMAIL not in request.url and "X-Forwarded-For" not in request.headers


def test_mautic_withdraw_unknown_person_looks_up_exactly_and_is_dropped_without_creating_anything() -> None:
    work = plan_delivery(resolved(False), MAUTIC, "withdraw_consent", {})
    sent, finish = drive(work, [ok({"total": 0, "contacts": {}})])
    assert calls(sent) == [("GET", "/api/contacts")]
    assert dict(parse_qsl(urlsplit(sent[0].url).query)) == {
        "where[0][col]": "email",
        "where[0][expr]": "in",
        "where[0][val]": EMAIL,
        "limit": "0",
    }
    assert (finish.status, finish.reason, finish.state) == ("dropped", "consent_denied", {"withdrawn": True})


def test_mautic_withdraw_with_a_stale_id_falls_back_to_the_lookup_and_withdraws_every_exact_match() -> None:
    work = plan_delivery(resolved(False), MAUTIC, "withdraw_consent", {"id": 12})
    lookup = {
        "total": "3",  # never trusted (cached; a string on old PHP)
        "contacts": {
            "31": contact(31, email="Jane@Example.com"),
            "30": contact(30),
            "40": contact(40, email="jane@example.com.au"),  # a prefix match of search=email:, not exact
        },
    }
    answers = [
        absent(NOT_FOUND),
        ok(lookup),
        ok({"contact": contact(30)}),
        ok({"contact": contact(31, BOUNCE)}),  # a bounce is there: no add (it would rewrite it)
        ok({"contact": contact(30, OUR_ENTRY)}),
    ]
    sent, finish = drive(work, answers)
    assert calls(sent) == [
        ("PATCH", "/api/contacts/12/edit"),
        ("GET", "/api/contacts"),
        ("PATCH", "/api/contacts/30/edit"),
        ("PATCH", "/api/contacts/31/edit"),
        ("POST", "/api/contacts/30/dnc/email/add"),
    ]
    assert finish == Finish("delivered", state={"id": 30, "withdrawn": True, "dnc": {"30": 7}})


def test_mautic_withdraw_adopts_an_entry_of_ours_left_by_an_earlier_try() -> None:
    """The withdrawal ran, the worker stopped before its state was written, and runs it again."""
    work = plan_delivery(resolved(False), MAUTIC, "withdraw_consent", {"id": 12})
    sent, finish = drive(work, [ok({"contact": contact(12, OUR_ENTRY)})])
    assert calls(sent) == [("PATCH", "/api/contacts/12/edit")]
    assert finish.state == {"id": 12, "withdrawn": True, "dnc": {"12": 7}}


def test_mautic_withdraw_when_the_add_leaves_an_existing_entry_claims_nothing() -> None:
    """An entry appeared between the edit and the add (Mautic then changes nothing): not ours."""
    work = plan_delivery(resolved(False), MAUTIC, "withdraw_consent", {"id": 12})
    theirs = {**OUR_ENTRY, "comments": "User unsubscribed"}
    sent, finish = drive(work, [ok({"contact": contact(12)}), ok({"contact": contact(12, theirs)})])
    assert len(sent) == 2 and finish.state == {"id": 12, "withdrawn": True}


def test_already_withdrawn_sends_nothing() -> None:
    for integration, state in (
        (MAUTIC, {"id": 12, "withdrawn": True}),
        (MAILGUN, {"vars": {}, "withdrawn": True}),
    ):
        work = plan_delivery(resolved(False), integration, "withdraw_consent", state)
        assert work == Drop("withdraw_consent", "consent_denied")


def test_mautic_regrant_after_our_dnc_upserts_then_removes_our_entry() -> None:
    state = {"id": 12, "withdrawn": True, "dnc": {"12": 7}}
    work = plan_delivery(resolved(True), MAUTIC, "upsert", state)
    assert isinstance(work, Calls) and work.operation == "restore_consent"
    upserted = ok({"contact": contact(12)}, status=200)
    sent, finish = drive(work, [upserted, ok({"contact": contact(12, OUR_ENTRY)}), ok({"recordFound": True})])
    assert calls(sent) == [
        ("POST", "/api/contacts/new"),
        ("GET", "/api/contacts/12"),
        ("POST", "/api/contacts/12/dnc/email/remove"),
    ]
    assert sent[0].json is not None and sent[0].json["tags"] == ["signal-marketing-consent"]
    assert finish == Finish("delivered", state={"id": 12}, shown=upserted)


@pytest.mark.parametrize(
    "entries",
    [
        [BOUNCE],  # our entry is gone and a bounce came
        [BOUNCE, OUR_ENTRY],  # a bounce is first: the remove would delete it
        [{**OUR_ENTRY, "id": 8}],  # another entry than ours
        [{**OUR_ENTRY, "reason": 3}],  # ours, rewritten by an admin to manual
    ],
)
def test_mautic_regrant_with_a_foreign_first_entry_removes_nothing(entries: list[dict[str, Any]]) -> None:
    state = {"id": 12, "withdrawn": True, "dnc": {"12": 7}}
    work = plan_delivery(resolved(True), MAUTIC, "upsert", state)
    sent, finish = drive(work, [ok({"contact": contact(12)}), ok({"contact": contact(12, *entries)})])
    assert calls(sent) == [("POST", "/api/contacts/new"), ("GET", "/api/contacts/12")]
    assert finish.state == {"id": 12}


def test_mautic_regrant_of_a_contact_deleted_meanwhile_just_upserts() -> None:
    state = {"id": 12, "withdrawn": True, "dnc": {"12": 7}}
    work = plan_delivery(resolved(True), MAUTIC, "upsert", state)
    sent, finish = drive(work, [ok({"contact": contact(44)}, status=201), absent(NOT_FOUND)])
    assert calls(sent)[1:] == [("GET", "/api/contacts/12")]
    assert finish.state == {"id": 44}, "the id the upsert answered"


def test_mautic_upsert_state_keeps_the_answered_contact_id() -> None:
    settle = DESTINATIONS["mautic"].settle
    work = plan_delivery(resolved(True), MAUTIC, "upsert", {})
    assert isinstance(work, Upsert) and work.entry["email"] == EMAIL
    single = ok({"contact": {"id": 5, "fields": {}}}, status=201)
    assert settle(work.state, single) == {"id": 5}
    batch_item = DeliveryResult("delivered", 200, False, 1, None, None, None, item={"id": 6})
    assert settle({"id": 5}, batch_item) == {"id": 6}
    assert settle({"id": 5}, ok({"contact": {"id": None}})) == {"id": 5}, "a delete's answer has no id"


# --- Mailgun --------------------------------------------------------------------------------


MEMBER = "/v3/lists/newsletter@mg.example.com/members/jane@example.com"
LIST = "/v3/lists/newsletter@mg.example.com"
UNSUBSCRIBE = "/v3/mg.example.com/unsubscribes/jane@example.com"


def test_mailgun_withdraw_sets_subscribed_no_on_the_member_and_nothing_else() -> None:
    state = {"vars": {"plan": "pro"}}
    work = plan_delivery(resolved(False), MAILGUN, "withdraw_consent", state)
    updated = ok({"member": {"address": EMAIL, "subscribed": False}})
    sent, finish = drive(work, [updated])
    assert calls(sent) == [("PUT", MEMBER)]
    assert sent[0].form == {"subscribed": "no"}
    assert finish == Finish("delivered", state={"vars": {"plan": "pro"}, "withdrawn": True}, shown=updated)


def test_mailgun_address_with_plus_is_percent_encoded_in_the_path() -> None:
    work = plan_delivery(resolved(False, email="jane+news@example.com"), MAILGUN, "withdraw_consent", {})
    sent, _ = drive(work, [ok({})])
    assert sent[0].url.endswith("/members/jane%2Bnews@example.com")


def test_mailgun_not_a_member_checks_the_list_and_is_dropped_without_creating_anything() -> None:
    work = plan_delivery(resolved(False), MAILGUN_DOMAIN, "withdraw_consent", {})
    missing = absent(
        {"message": "Member jane@example.com of mailing list newsletter@mg.example.com not found"}
    )
    sent, finish = drive(work, [missing, ok({"list": {}})])
    assert calls(sent) == [("PUT", MEMBER), ("GET", LIST)]
    assert finish == Finish("dropped", "consent_denied", state={"withdrawn": True}, shown=missing)


def test_mailgun_withdraw_adds_the_domain_unsubscribe_only_when_not_there_and_remembers_it() -> None:
    work = plan_delivery(resolved(False), MAILGUN_DOMAIN, "withdraw_consent", {"vars": {}})
    not_there = absent({"message": "Address not found in unsubscribers table"})
    sent, finish = drive(work, [ok({}), not_there, ok({"message": "Address has been added"})])
    assert calls(sent) == [("PUT", MEMBER), ("GET", UNSUBSCRIBE), ("POST", "/v3/mg.example.com/unsubscribes")]
    assert sent[2].form == {"address": EMAIL, "tag": "*"}
    assert finish.state == {"vars": {}, "withdrawn": True, "unsubscribed": "mg.example.com"}

    work = plan_delivery(resolved(False), MAILGUN_DOMAIN, "withdraw_consent", {"vars": {}})
    sent, finish = drive(work, [ok({}), ok({"address": EMAIL, "tags": ["*"]})])
    assert calls(sent) == [("PUT", MEMBER), ("GET", UNSUBSCRIBE)], "someone else's unsubscribe is left alone"
    assert finish.state == {"vars": {}, "withdrawn": True}


def test_mailgun_regrant_upserts_subscribed_and_removes_only_our_unsubscribe() -> None:
    state = {"vars": {"plan": "pro"}, "withdrawn": True, "unsubscribed": "mg.example.com"}
    work = plan_delivery(resolved(True), MAILGUN_DOMAIN, "upsert", state)
    assert isinstance(work, Calls) and work.operation == "restore_consent"
    sent, finish = drive(work, [ok({"member": {}}), ok({"message": "Unsubscribe event has been removed"})])
    assert calls(sent) == [("POST", "/v3/lists/newsletter@mg.example.com/members"), ("DELETE", UNSUBSCRIBE)]
    assert sent[0].form is not None and sent[0].form["subscribed"] == "true"
    assert finish.state == {"vars": {"plan": "pro", "anonymous_id": "a1"}}

    work = plan_delivery(resolved(True), MAILGUN_DOMAIN, "upsert", {"vars": {}, "withdrawn": True})
    sent, _ = drive(work, [ok({"member": {}})])
    assert calls(sent) == [("POST", "/v3/lists/newsletter@mg.example.com/members")]


def test_mailgun_state_reads_vars_stored_alone_and_stores_them_alone_while_nothing_else_is_kept() -> None:
    assert load_state(None) == {}
    assert load_state({"plan": "pro"}) == {"vars": {"plan": "pro"}}
    assert dump_state({"vars": {"plan": "pro"}}) == {"plan": "pro"}
    withdrawn = {"vars": {"plan": "pro"}, "withdrawn": True}
    assert dump_state(withdrawn) == withdrawn and load_state(dump_state(withdrawn)) == withdrawn
    assert load_state(dump_state({"withdrawn": True})) == {"vars": {}, "withdrawn": True}


def test_consent_granted_without_a_required_category_never_restores() -> None:
    """``consent: []``: nothing to withdraw or grant; a withdrawn state stays as it is."""
    work = plan_delivery(resolved(True), mautic(consent=[]), "upsert", {"id": 1, "withdrawn": True})
    assert isinstance(work, Upsert)


# --- which 404 is an outcome ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "body", "missing"),
    [
        (contact_missing, orjson.dumps(NOT_FOUND), True),
        (
            contact_missing,
            b'{"errors":[{"code":404,"message":"Requested URL not found: /x/api/contacts/1"}]}',
            False,
        ),
        (contact_missing, b"<!DOCTYPE html><html><title>404 Not Found</title></html>", False),
        (contact_missing, b"", False),
        (member_missing, b'{"message": "Member jane@example.com of list x not found"}', True),
        (member_missing, b"<html>404</html>", False),
        (unsubscribe_missing, b'{"message": "Address not found in unsubscribers table"}', True),
        (unsubscribe_missing, b'{"message": "Domain not found: mg.example.com"}', False),
    ],
)
def test_a_404_names_a_missing_item_only_in_the_destinations_own_words(
    reader: Callable[[bytes], bool], body: bytes, missing: bool
) -> None:
    assert reader(body) is missing
    verdict = classify_status(404, {}, 0.0, absent=reader(body)).verdict
    assert verdict is (Verdict.ABSENT if missing else Verdict.FAULT)


def test_absent_is_only_a_404() -> None:
    assert classify_status(401, {}, 0.0, absent=True).verdict is Verdict.FAULT
    assert classify_status(200, {}, 0.0, absent=True).verdict is Verdict.DELIVERED
    assert classify_status(503, {}, 0.0, absent=True).verdict is Verdict.RETRY
