"""Pure batch helpers of both destinations: coalescing, bulk requests, per-item answers."""

from __future__ import annotations

import orjson

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


def test_mautic_batch_request_and_item_answers_as_list_or_object() -> None:
    request = mautic.build_batch_request(MAUTIC, [{"email": "a@x.io"}, {"email": "b@x.io"}])
    assert request.url == "https://mautic.example.com/api/contacts/batch/new" and len(request.json) == 2
    assert "X-Forwarded-For" not in request.headers
    assert mautic.batch_item_results({"statusCodes": [201, 200]}, 2) == [(201, None), (200, None)]
    answer = {"statusCodes": {"0": 400, "1": 201}, "errors": {"0": {"code": 400, "message": "email: bad"}}}
    assert mautic.batch_item_results(answer, 2) == [(400, "email: bad"), (201, None)]
    assert mautic.batch_item_results("garbage", 1) == [(500, "unreadable batch answer")]


def test_mautic_single_request_of_a_merged_body_forwards_the_ip() -> None:
    request = mautic.single_request(MAUTIC, {"email": "a@x.io", "ipAddress": "203.0.113.9"})
    assert request.url.endswith("/api/contacts/new") and request.headers["X-Forwarded-For"] == "203.0.113.9"


def test_mailgun_member_roundtrip_merge_and_bulk_request() -> None:
    single = mailgun.single_request(
        MAILGUN, {"address": "a@x.io", "name": "A", "subscribed": True, "vars": {"plan": "pro"}}
    )
    member = mailgun.member_of(single)
    assert member == {"address": "a@x.io", "name": "A", "subscribed": True, "vars": {"plan": "pro"}}
    merged = mailgun.merge_members([member, {"address": "a@x.io", "vars": {"plan": "pro", "x": 1}}])
    assert merged["vars"] == {"plan": "pro", "x": 1} and merged["name"] == "A"
    bulk = mailgun.build_batch_request(MAILGUN, [merged])
    assert bulk.url == "https://api.mailgun.net/v3/lists/news@mg.example.com/members.json"
    assert bulk.form["upsert"] == "true" and orjson.loads(bulk.form["members"]) == [merged]
    assert mailgun.invalid_member({"address": "not-an-email"}) and mailgun.invalid_member(merged) is None
