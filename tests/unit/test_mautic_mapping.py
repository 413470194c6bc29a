"""Mautic mapping (seed 000): the contact upsert request built from a stitched event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from signal_sync.destinations import mautic as mautic_module
from signal_sync.destinations.base import Request, basic_auth
from tests.unit.factories import (
    MAUTIC_PASSWORD,
    MAUTIC_SEED_PAYLOAD,
    SEED_MAUTIC_IDENTIFY,
    SEED_MAUTIC_SIGNED_UP,
    Pipeline,
    consent,
    decode_basic,
    mautic,
)

JANE = {"email": "jane@example.com"}


def send(
    raw: dict[str, Any], *, integration_consent: list[str] | None = None, pipeline: Pipeline | None = None
):
    """The Mautic request for one event (gating off unless asked, so mapping is tested alone)."""
    pipeline = pipeline or Pipeline(mautic(consent=integration_consent or []))
    return pipeline.send(raw, "mautic-main")


def body(raw: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    request = send(raw, **kwargs)
    assert request.json is not None and request.form is None
    return request.json


def test_seed_signed_up_example_exactly() -> None:
    pipeline = Pipeline(mautic())  # default consent: [marketing]
    identify = pipeline.run(SEED_MAUTIC_IDENTIFY)["mautic-main"]
    assert isinstance(identify, Request)

    request = pipeline.send(SEED_MAUTIC_SIGNED_UP, "mautic-main")

    assert request.json == MAUTIC_SEED_PAYLOAD
    assert orjson.dumps(request.json) == orjson.dumps(MAUTIC_SEED_PAYLOAD)  # same keys, same order
    assert request.method == "POST"
    assert request.url == "https://mautic.example.com/api/contacts/new"
    assert request.headers["Authorization"] == basic_auth("signal", MAUTIC_PASSWORD)
    assert decode_basic(request.headers["Authorization"]) == f"signal:{MAUTIC_PASSWORD}"
    assert request.headers["X-Forwarded-For"] == "203.0.113.50"
    assert request.headers["Content-Type"] == "application/json"


def test_seed_signed_up_stitches_by_anonymous_id_alone() -> None:
    pipeline = Pipeline(mautic())
    pipeline.run({**SEED_MAUTIC_IDENTIFY, "userId": None})
    signed_up = {k: v for k, v in SEED_MAUTIC_SIGNED_UP.items() if k != "userId"}
    assert pipeline.send(signed_up, "mautic-main").json == MAUTIC_SEED_PAYLOAD


def test_signed_up_without_a_prior_identify_has_no_email() -> None:
    assert Pipeline(mautic()).run(SEED_MAUTIC_SIGNED_UP)["mautic-main"] == "no_email"


def test_url_follows_the_base_url() -> None:
    request = send(
        {"type": "identify", "traits": JANE},
        pipeline=Pipeline(mautic(base_url="http://127.0.0.1:8081", consent=[])),
    )
    assert request.url == "http://127.0.0.1:8081/api/contacts/new"


@pytest.mark.parametrize(
    "traits",
    [
        {"email": "jane@example.com", "firstName": "Jane", "lastName": "Doe", "postalCode": "N1 9GU"},
        {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe", "postal_code": "N1 9GU"},
    ],
)
def test_camel_and_snake_case_traits(traits: dict[str, Any]) -> None:
    assert body({"type": "identify", "traits": traits}) == {
        "email": "jane@example.com",
        "firstname": "Jane",
        "lastname": "Doe",
        "zipcode": "N1 9GU",
    }


def test_every_identity_field_of_the_seed_table() -> None:
    traits = {
        "email": "Jane.Doe@Example.com ",
        "first_name": "Jane",
        "last_name": "Doe",
        "phone": "+44 7700 900123",
        "company": "Acme Ltd",
        "city": "London",
        "state": "England",
        "postal_code": "N1 9GU",
        "country": "GB",
    }
    assert body({"type": "identify", "traits": traits, "context": {"ip": "198.51.100.7"}}) == {
        "email": "jane.doe@example.com",
        "firstname": "Jane",
        "lastname": "Doe",
        "phone": "+44 7700 900123",
        "company": "Acme Ltd",
        "city": "London",
        "state": "England",
        "zipcode": "N1 9GU",
        "country": "GB",
        "ipAddress": "198.51.100.7",
    }


def test_context_traits_count_as_the_events_traits() -> None:
    raw = {"type": "track", "event": "Lead Captured", "context": {"traits": {"email": "sam@example.org"}}}
    assert body(raw)["email"] == "sam@example.org"


def test_event_traits_win_over_stored_traits() -> None:
    pipeline = Pipeline(mautic(consent=[]))
    pipeline.run(
        {"type": "identify", "userId": "u1", "traits": {**JANE, "firstName": "Jane", "company": "Old"}}
    )
    request = pipeline.send(
        {"type": "track", "event": "Signed Up", "userId": "u1", "traits": {"first_name": "Janet"}},
        "mautic-main",
    )
    assert request.json == {"email": "jane@example.com", "firstname": "Janet", "company": "Old"}


def test_visitor_ip_goes_to_body_and_x_forwarded_for() -> None:
    request = send({"type": "identify", "traits": JANE, "context": {"ip": "2001:db8::1"}})
    assert request.json["ipAddress"] == "2001:db8::1"
    assert request.headers["X-Forwarded-For"] == "2001:db8::1"


def test_no_ip_means_no_ip_address_and_no_x_forwarded_for() -> None:
    request = send({"type": "identify", "traits": JANE})
    assert "ipAddress" not in request.json
    assert "X-Forwarded-For" not in request.headers


@pytest.mark.parametrize(
    ("timestamp", "last_active"),
    [
        ("2026-06-06T16:32:10+02:00", "2026-06-06 14:32:10"),
        ("2026-06-06T14:32:10Z", "2026-06-06 14:32:10"),
        ("2026-06-06T09:32:10-05:00", "2026-06-06 14:32:10"),
        ("2026-01-01T01:30:00+05:30", "2025-12-31 20:00:00"),
        ("2026-06-06T14:32:10.987654+00:00", "2026-06-06 14:32:10"),
    ],
)
def test_last_active_is_utc_in_mautic_format(timestamp: str, last_active: str) -> None:
    assert body({"type": "identify", "traits": JANE, "timestamp": timestamp})["lastActive"] == last_active


def test_no_timestamp_no_last_active() -> None:
    assert "lastActive" not in body({"type": "identify", "traits": JANE})


def test_utm_from_context_campaign() -> None:
    campaign = {"source": "newsletter", "medium": "email", "name": "spring", "content": "hero", "term": "crm"}
    page_url = "https://example.com/?utm_source=google&utm_medium=cpc"
    raw = {"type": "identify", "traits": JANE, "context": {"campaign": campaign, "page": {"url": page_url}}}
    fields = body(raw)
    assert {k: v for k, v in fields.items() if k.startswith("utm_")} == {
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring",
        "utm_content": "hero",
        "utm_term": "crm",
    }


def test_utm_from_page_url_when_campaign_absent() -> None:
    url = (
        "https://www.example.com/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring"
        "&utm_content=banner&utm_term=mautic%20crm&other=1"
    )
    raw = {"type": "page", "traits": JANE, "context": {"page": {"url": url}}}
    fields = body(raw)
    assert {k: v for k, v in fields.items() if k.startswith("utm_")} == {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "utm_content": "banner",
        "utm_term": "mautic crm",
    }
    assert "other" not in fields


def test_no_utm_anywhere_means_no_utm_fields() -> None:
    raw = {"type": "page", "traits": JANE, "context": {"page": {"url": "https://www.example.com/?q=1"}}}
    assert not [k for k in body(raw) if k.startswith("utm_")]


@pytest.mark.parametrize(
    ("canonical", "tags"),
    [
        ({"marketing": True}, ["signal-marketing-consent"]),
        ({"marketing": False}, ["-signal-marketing-consent"]),
        ({"analytics": True}, None),
        ({}, None),
    ],
)
def test_marketing_consent_to_tags(canonical: dict[str, bool], tags: list[str] | None) -> None:
    fields = body({"type": "identify", "traits": JANE, "context": consent(**canonical)})
    assert fields.get("tags") == tags
    if tags is None:
        assert "tags" not in fields


def test_signed_up_stamps_signup_method() -> None:
    raw = {"type": "track", "event": "Signed Up", "traits": JANE, "properties": {"method": "google"}}
    assert body(raw)["signal_signup_method"] == "google"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"lead_source": "webinar", "source": "ads"}, "webinar"),
        ({"source": "ads"}, "ads"),
        ({"lead_source": "", "source": "ads"}, "ads"),
        ({}, None),
    ],
)
def test_lead_captured_stamps_lead_source(properties: dict[str, Any], expected: str | None) -> None:
    fields = body({"type": "track", "event": "Lead Captured", "traits": JANE, "properties": properties})
    assert fields.get("signal_lead_source") == expected
    assert "signal_signup_method" not in fields


def test_event_specific_fields_only_on_their_event() -> None:
    props = {"method": "email", "lead_source": "webinar"}
    identified = body({"type": "identify", "traits": JANE, "properties": props})
    assert "signal_signup_method" not in identified and "signal_lead_source" not in identified
    signed_up = body({"type": "track", "event": "Signed Up", "traits": JANE, "properties": props})
    assert "signal_lead_source" not in signed_up


def test_empty_fields_are_omitted() -> None:
    traits = {
        **JANE,
        "first_name": "",
        "last_name": "   ",
        "phone": None,
        "company": [],
        "city": {},
        "country": "GB",
    }
    raw = {
        "type": "track",
        "event": "Signed Up",
        "traits": traits,
        "properties": {"method": ""},
        "context": {"ip": "", "campaign": {"source": "", "medium": None}},
    }
    assert body(raw) == {"email": "jane@example.com", "country": "GB"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"type": "page", "context": {"page": {"url": "https://example.com/"}}}, "no_email"),
        ({"type": "identify", "traits": {"first_name": "Jane"}}, "no_email"),
        ({"type": "track", "event": "Order Completed", "traits": JANE}, "event_not_mapped"),
        ({"type": "track", "event": "Product Viewed", "traits": JANE}, "event_not_mapped"),
        ({"type": "track", "event": "signed up", "traits": JANE}, "event_not_mapped"),
    ],
)
def test_mautic_drops(raw: dict[str, Any], reason: str) -> None:
    assert Pipeline(mautic(consent=[])).run(raw)["mautic-main"] == reason


def test_page_with_stitched_email_is_sent() -> None:
    pipeline = Pipeline(mautic(consent=[]))
    pipeline.run({"type": "identify", "anonymousId": "a1", "traits": JANE})
    request = pipeline.send({"type": "page", "anonymousId": "a1"}, "mautic-main")
    assert request.json == JANE


def test_mapped_events_are_the_seed_table() -> None:
    assert mautic_module.MAPPED_EVENTS == {"page", "Identified", "Signed Up", "Lead Captured"}
