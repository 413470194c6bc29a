"""Pure batch helpers of both destinations: coalescing, bulk requests, per-item answers."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.config import MailgunIntegration, MauticIntegration
from signal_sync.destinations import mailgun, mautic

MAUTIC = MauticIntegration(
    id="m", type="mautic", base_url="https://mautic.example.com", api_user="u", api_password="p"
)
MAILGUN = MailgunIntegration(
    id="g",
    type="mailgun",
    base_url="https://api.mailgun.net",
    api_key="k",
    list_address="news@mg.example.com",
)


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.sampled_from(["statusCodes", "errors", "message", "0", "1", "2"]) | st.text(max_size=3)
    return st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)


def test_mautic_batch_request_and_item_answers_as_list_or_object() -> None:
    request = mautic.build_batch_request(MAUTIC, [{"email": "a@x.io"}, {"email": "b@x.io"}])
    assert request.url == "https://mautic.example.com/api/contacts/batch/new" and len(request.json) == 2
    assert "X-Forwarded-For" not in request.headers
    assert mautic.batch_item_results({"statusCodes": [201, 200]}, 2) == [(201, None), (200, None)]
    answer = {"statusCodes": {"0": 400, "1": 201}, "errors": {"0": {"code": 400, "message": "email: bad"}}}
    assert mautic.batch_item_results(answer, 2) == [(400, "email: bad"), (201, None)]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("garbage", [(None, None), (None, None)]),
        ({}, [(None, None), (None, None)]),
        ({"statusCodes": [201]}, [(201, None), (None, None)]),
        ({"statusCodes": [201, 200, 200]}, [(201, None), (200, None)]),
        ({"statusCodes": [True, "429"]}, [(None, None), (429, None)]),
        ({"statusCodes": {"1": 503}, "errors": {"1": "busy"}}, [(None, None), (503, "busy")]),
        ({"statusCodes": [429, 500], "errors": [{"code": 429}, None]}, [(429, None), (500, None)]),
    ],
)
def test_mautic_item_answers_are_read_not_judged(reply: object, expected: list) -> None:
    """Statuses and messages as Mautic wrote them (None where unreadable); classify decides."""
    assert mautic.batch_item_results(reply, 2) == expected


@given(
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), _containers, max_leaves=20)
)
def test_mautic_item_answers_never_raise(reply: object) -> None:
    results = mautic.batch_item_results(reply, 3)
    assert len(results) == 3
    assert all(status is None or isinstance(status, int) for status, _ in results)


def test_mautic_single_request_of_a_merged_body_forwards_the_ip() -> None:
    request = mautic.single_request(MAUTIC, {"email": "a@x.io", "ipAddress": "203.0.113.9"})
    assert request.url.endswith("/api/contacts/new") and request.headers["X-Forwarded-For"] == "203.0.113.9"


def test_mailgun_member_single_request_merge_and_bulk_request() -> None:
    member = {"address": "a@x.io", "name": "A", "subscribed": True, "vars": {"plan": "pro"}}
    single = mailgun.single_request(MAILGUN, member)
    assert single.form == {
        "address": "a@x.io",
        "name": "A",
        "subscribed": "true",
        "upsert": "true",
        "vars": '{"plan":"pro"}',
    }
    merged = mailgun.merge_members([member, {"address": "a@x.io", "vars": {"plan": "pro", "x": 1}}])
    assert merged["vars"] == {"plan": "pro", "x": 1} and merged["name"] == "A"
    bulk = mailgun.build_batch_request(MAILGUN, [merged])
    assert bulk.url == "https://api.mailgun.net/v3/lists/news@mg.example.com/members.json"
    assert bulk.form["upsert"] == "true" and orjson.loads(bulk.form["members"]) == [merged]
