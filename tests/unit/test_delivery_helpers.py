"""Pure helpers of the delivery module: error text, email redaction and the final result."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from signal_sync.destinations import DESTINATIONS
from signal_sync.destinations.classify import classify_exception, classify_status
from signal_sync.destinations.delivery import ERROR_TEXT_LIMIT, Attempt, error_text, redact_emails, result_of

MAUTIC = DESTINATIONS["mautic"]
MAILGUN = DESTINATIONS["mailgun"]


def attempt(status: int | None, body: bytes = b"", error: str | None = None, reports_created: bool = False):
    """An attempt as ``Sender.attempt`` records it: classified by ``classify``."""
    if status is None:
        return Attempt(classify_exception(aiohttp.ClientConnectionError("refused")), None, body, error)
    return Attempt(classify_status(status, {}, 0.0, reports_created=reports_created), status, body, error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jane@example.com", "<email>"),
        ("Contact jane.doe+news@example.co.uk already exists", "Contact <email> already exists"),
        ('{"address": "Jane@Example.com"}', '{"address": "<email>"}'),
        ("a@b.io and c@d.org", "<email> and <email>"),
        ("<jane@example.com>", "<<email>>"),
        ("no address here", "no address here"),
        ("newsletter@mg", "newsletter@mg"),
    ],
)
def test_redact_emails(text: str, expected: str) -> None:
    assert redact_emails(text) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b"   \n", None),
        (b"Forbidden", "Forbidden"),
        (b"  Forbidden\n", "Forbidden"),
        (
            orjson.dumps({"errors": [{"code": 401, "message": "API authorization denied.", "details": []}]}),
            "API authorization denied.",
        ),
        (orjson.dumps({"message": "Mailing list not found"}), "Mailing list not found"),
        (
            orjson.dumps({"message": "Address already exists 'jane@example.com'"}),
            "Address already exists '<email>'",
        ),
        (b"<html>Bad gateway for jane@example.com</html>", "<html>Bad gateway for <email></html>"),
        (orjson.dumps({"errors": [{"code": 400}], "message": "fallback"}), "fallback"),
        (orjson.dumps({"unexpected": 1}), '{"unexpected":1}'),
    ],
)
def test_error_text(body: bytes, expected: str | None) -> None:
    assert error_text(body) == expected


@pytest.mark.parametrize(
    "body",
    [b"x" * 5000, orjson.dumps({"message": "y" * 5000}), orjson.dumps({"errors": [{"message": "z" * 5000}]})],
)
def test_error_text_is_bounded(body: bytes) -> None:
    text = error_text(body)
    assert text is not None and 0 < len(text) <= ERROR_TEXT_LIMIT


@pytest.mark.parametrize(
    ("destination", "status", "created"),
    [(MAUTIC, 201, True), (MAUTIC, 200, False), (MAILGUN, 200, None)],
)
def test_delivered_result(destination, status: int, created: bool | None) -> None:
    result = result_of(
        attempt(status, b'{"contact": {}}', reports_created=destination.reports_created), 2, destination
    )
    assert result.status == "delivered"
    assert result.http_status == status
    assert result.created is created
    assert result.attempts == 2
    assert (result.reason, result.error, result.hint, result.fault) == (None, None, None, False)


# Key phrases of each seed's troubleshooting line, by status.
SEED_HINTS = {
    ("mautic", 401): [
        "Basic Authentication is not enabled in Mautic",
        "Settings > Configuration > API Settings",
    ],
    ("mautic", 403): ["lacks permission to create/edit contacts"],
    ("mautic", 404): ["base_url is wrong or has a trailing slash", "https://mautic.example.com"],
    ("mailgun", 401): ["Private key", "region"],
    ("mailgun", 404): ["mailing list", "region host"],
    ("mailgun", 400): ["$traits.email"],
}


@pytest.mark.parametrize(("name", "status"), list(SEED_HINTS))
def test_failed_result_carries_the_seed_hint(name: str, status: int) -> None:
    result = result_of(attempt(status, b'{"message": "nope"}'), 1, DESTINATIONS[name])
    assert result.status == "failed"
    assert result.http_status == status
    assert result.reason == f"http_{status}"
    assert result.error == "nope"
    assert result.created is None
    assert result.hint is not None
    for phrase in SEED_HINTS[(name, status)]:
        assert phrase.lower() in result.hint.lower()


@pytest.mark.parametrize(
    ("name", "status"), [("mautic", 500), ("mailgun", 503), ("mautic", 422), ("mailgun", 429)]
)
def test_statuses_without_a_seed_line_have_no_hint(name: str, status: int) -> None:
    assert result_of(attempt(status), 5, DESTINATIONS[name]).hint is None


@pytest.mark.parametrize(
    ("status", "fault"), [(401, True), (403, True), (404, True), (400, False), (503, False)]
)
def test_fault_flags_a_misconfigured_integration(status: int, fault: bool) -> None:
    result = result_of(attempt(status), 1, MAUTIC)
    assert result.fault is fault
    assert result.status == "failed"


def test_failed_result_redacts_emails_in_the_error() -> None:
    body = orjson.dumps({"errors": [{"message": "jane@example.com is not valid"}]})
    result = result_of(attempt(400, body), 1, MAILGUN)
    assert result.error == "<email> is not valid"


def test_connection_error_result() -> None:
    result = result_of(attempt(None, error="ClientConnectorError: refused"), 5, MAUTIC)
    assert result.status == "failed"
    assert result.reason == "connection_error"
    assert result.error == "ClientConnectorError: refused"
    assert (result.http_status, result.hint, result.created, result.fault) == (None, None, None, False)
    assert result.attempts == 5 and result.destination_down


def test_exhausted_retries_report_the_last_status() -> None:
    result = result_of(attempt(503, b"Service Unavailable"), 5, MAILGUN)
    assert (result.status, result.reason, result.error, result.attempts) == (
        "failed",
        "http_503",
        "Service Unavailable",
        5,
    )


def test_client_side_failure_result() -> None:
    failed = Attempt(classify_exception(ValueError("bad header")), None, b"", "ValueError: bad header")
    result = result_of(failed, 1, MAUTIC)
    assert (result.status, result.reason, result.error) == (
        "failed",
        "client_error",
        "ValueError: bad header",
    )
    assert not result.destination_down and not result.fault
