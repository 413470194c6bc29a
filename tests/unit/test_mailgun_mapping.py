"""Mailgun mapping (seed 001): the mailing-list member upsert built from a stitched event."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from signal_sync.destinations import mailgun as mailgun_module
from signal_sync.destinations.base import basic_auth
from signal_sync.planner import plan_event
from tests.unit.factories import (
    MAILGUN_KEY,
    MAILGUN_SEED_FORM,
    MAILGUN_SEED_URL,
    MAILGUN_SEED_VARS,
    SEED_MAILGUN_IDENTIFY,
    Pipeline,
    consent,
    decode_basic,
    event,
    mailgun,
)

JANE = {"email": "jane@example.com"}


def form(raw: dict[str, Any], pipeline: Pipeline | None = None) -> dict[str, str]:
    request = (pipeline or Pipeline(mailgun(consent=[]))).send(raw, "mailgun-news")
    assert request.form is not None and request.json is None
    return request.form


def variables(raw: dict[str, Any], pipeline: Pipeline | None = None) -> dict[str, Any]:
    return json.loads(form(raw, pipeline)["vars"])


def test_seed_identify_example_exactly() -> None:
    request = Pipeline(mailgun()).send(SEED_MAILGUN_IDENTIFY, "mailgun-news")

    assert request.method == "POST"
    assert request.url == MAILGUN_SEED_URL
    assert request.form == MAILGUN_SEED_FORM
    assert request.form["vars"] == MAILGUN_SEED_VARS  # byte for byte, key order included
    assert json.loads(request.form["vars"]) == {
        "first_name": "Jane",
        "last_name": "Doe",
        "plan": "pro",
        "company": "Acme Ltd",
        "anonymous_id": "a1b2c3",
    }
    assert request.headers["Authorization"] == basic_auth("api", MAILGUN_KEY)
    assert decode_basic(request.headers["Authorization"]) == f"api:{MAILGUN_KEY}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_seed_identify_builds_the_same_form_with_camel_case_traits() -> None:
    traits = dict(SEED_MAILGUN_IDENTIFY["traits"])
    traits["firstName"], traits["lastName"] = traits.pop("first_name"), traits.pop("last_name")
    raw = {**SEED_MAILGUN_IDENTIFY, "traits": traits}
    assert Pipeline(mailgun()).send(raw, "mailgun-news").form == MAILGUN_SEED_FORM


def test_eu_region_url() -> None:
    integration = mailgun(base_url="https://api.eu.mailgun.net", consent=[])
    request = Pipeline(integration).send({"type": "identify", "traits": JANE}, "mailgun-news")
    assert request.url == "https://api.eu.mailgun.net/v3/lists/newsletter@mg.example.com/members"


@pytest.mark.parametrize("email", ["  Jane@Example.COM ", "JANE@EXAMPLE.COM", "jane@example.com\t"])
def test_address_is_lowercased_and_trimmed(email: str) -> None:
    assert form({"type": "identify", "traits": {"email": email}})["address"] == "jane@example.com"


@pytest.mark.parametrize(
    ("traits", "name"),
    [
        ({"name": "Jane Q. Doe", "first_name": "Jane", "last_name": "Doe"}, "Jane Q. Doe"),
        ({"first_name": "Jane", "last_name": "Doe"}, "Jane Doe"),
        ({"firstName": "Jane", "lastName": "Doe"}, "Jane Doe"),
        ({"name": "", "first_name": "Jane", "last_name": "Doe"}, "Jane Doe"),
        ({"first_name": "Jane"}, "Jane"),
        ({"last_name": "Doe"}, "Doe"),
        ({}, None),
    ],
)
def test_name_from_trait_name_else_first_and_last(traits: dict[str, Any], name: str | None) -> None:
    fields = form({"type": "identify", "traits": {**JANE, **traits}})
    assert fields.get("name") == name
    if name is None:
        assert "name" not in fields


@pytest.mark.parametrize(
    ("canonical", "subscribed"),
    [({"marketing": True}, "true"), ({"marketing": False}, "false"), ({"analytics": True}, None), ({}, None)],
)
def test_subscribed_only_when_marketing_consent_is_known(
    canonical: dict[str, bool], subscribed: str | None
) -> None:
    fields = form({"type": "identify", "traits": JANE, "context": consent(**canonical)})
    assert fields.get("subscribed") == subscribed
    assert fields["upsert"] == "true"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"type": "page", "context": {"page": {"url": "https://example.com/pricing?a=1"}}},
            {"last_page_url": "https://example.com/pricing?a=1"},
        ),
        (
            {"type": "page", "properties": {"url": "https://example.com/p"}},
            {"last_page_url": "https://example.com/p"},
        ),
        (
            {"type": "track", "event": "Signed Up", "properties": {"method": "email"}},
            {"signup_method": "email"},
        ),
        (
            {
                "type": "identify",
                "traits": {
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "plan": "pro",
                    "company": "Acme",
                    "phone": "1",
                },
            },
            {"first_name": "Jane", "last_name": "Doe", "plan": "pro", "company": "Acme"},
        ),
        (
            {
                "type": "track",
                "event": "Order Completed",
                "properties": {"order_id": "ord-1001", "revenue": 49.5, "currency": "GBP", "coupon": "X"},
            },
            {"last_order_id": "ord-1001", "last_order_revenue": 49.5, "last_order_currency": "GBP"},
        ),
        ({"type": "track", "event": "Order Completed", "properties": {}}, {}),
    ],
)
def test_vars_per_event(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    raw = {**raw, "traits": {**JANE, **raw.get("traits", {})}}
    assert variables(raw) == expected


def test_anonymous_id_is_always_in_vars() -> None:
    raw = {"type": "track", "event": "Signed Up", "anonymousId": "anon-9", "traits": JANE}
    assert variables(raw) == {"anonymous_id": "anon-9"}


def test_vars_are_merged_so_a_page_view_keeps_plan() -> None:
    pipeline = Pipeline(mailgun())
    granted = consent(marketing=True)
    pipeline.send(SEED_MAILGUN_IDENTIFY, "mailgun-news")
    page = {
        "type": "page",
        "anonymousId": "a1b2c3",
        "context": {"page": {"url": "https://www.example.com/pricing"}, **granted},
    }
    assert variables(page, pipeline) == {
        "first_name": "Jane",
        "last_name": "Doe",
        "plan": "pro",
        "company": "Acme Ltd",
        "anonymous_id": "a1b2c3",
        "last_page_url": "https://www.example.com/pricing",
    }
    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-123",
        "properties": {"order_id": "o-1", "revenue": 10, "currency": "EUR"},
        "context": granted,
    }
    merged = variables(order, pipeline)
    assert merged["plan"] == "pro" and merged["last_page_url"] == "https://www.example.com/pricing"
    assert (merged["last_order_id"], merged["last_order_revenue"], merged["last_order_currency"]) == (
        "o-1",
        10,
        "EUR",
    )


def test_new_vars_win_over_known_vars_and_state_is_the_merged_vars() -> None:
    integration = mailgun(consent=[])
    plan = plan_event(event(type="identify", traits={**JANE, "plan": "pro"}), [integration], {})
    request = mailgun_module.build_request(
        plan.resolved, integration, {"plan": "free", "signup_method": "email"}
    )
    assert json.loads(request.form["vars"]) == {"plan": "pro", "signup_method": "email"}
    assert request.state == {"plan": "pro", "signup_method": "email"}


def test_vars_are_per_contact() -> None:
    pipeline = Pipeline(mailgun(consent=[]))
    pipeline.run({"type": "identify", "traits": {**JANE, "plan": "pro"}})
    other = {"type": "identify", "traits": {"email": "sam@example.org", "company": "Other"}}
    assert variables(other, pipeline) == {"company": "Other"}


def test_every_form_value_is_a_string() -> None:
    raw = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "a1",
        "traits": {**JANE, "name": "Jane"},
        "properties": {"order_id": 1001, "revenue": 49.5, "currency": "GBP"},
        "context": consent(marketing=True),
    }
    fields = form(raw)
    assert set(fields) == {"address", "name", "subscribed", "upsert", "vars"}
    assert all(isinstance(value, str) for value in fields.values())
    assert orjson.loads(fields["vars"])["last_order_id"] == "1001"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"type": "page", "anonymousId": "anon", "context": {"page": {"url": "https://e.com/"}}}, "no_email"),
        ({"type": "track", "event": "Lead Captured", "traits": JANE}, "event_not_mapped"),
        ({"type": "track", "event": "Product Viewed", "traits": JANE}, "event_not_mapped"),
    ],
)
def test_mailgun_drops(raw: dict[str, Any], reason: str) -> None:
    assert Pipeline(mailgun(consent=[])).run(raw)["mailgun-news"] == reason


def test_mapped_events_are_the_seed_table() -> None:
    assert mailgun_module.MAPPED_EVENTS == {"page", "Signed Up", "Identified", "Order Completed"}
