"""The event debugger's ring buffer, filters, redaction and HTTP API (no broker, no browser)."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from signal_sync.identity import contact_id
from signal_sync.observability import debugger
from signal_sync.observability.recent import (
    DEFAULT_CAPACITY,
    STATUSES,
    FilterError,
    Filters,
    RecentOutcomes,
)
from signal_sync.outcomes import OutcomeBuilder, SourceRecord
from signal_sync.runtime import create_runtime
from tests.unit.factories import (
    MAILGUN_KEY,
    MAUTIC_PASSWORD,
    SEED_MAILGUN_IDENTIFY,
    SEED_MAUTIC_SIGNED_UP,
    Pipeline,
    event,
    mailgun,
    mautic,
    settings,
)

JANE = contact_id("jane.doe@example.com")
BOB = contact_id("bob@example.com")


def outcome(
    integration: str = "mautic-main", status: str = "delivered", contact: str | None = JANE, **extra: Any
) -> dict[str, Any]:
    return {"integration": integration, "status": status, "contact_id": contact, "message_id": "m", **extra}


# --- ring buffer -----------------------------------------------------------------------------


def test_default_capacity_is_200_per_integration():
    recent = RecentOutcomes()
    assert recent.capacity == DEFAULT_CAPACITY == 200
    for n in range(250):
        recent.record(outcome(message_id=f"a{n}"))
    for n in range(10):
        recent.record(outcome("mailgun-news", message_id=f"b{n}"))
    assert len(recent) == 210
    assert recent.recorded == 260
    counts = recent.counts()
    assert counts["mautic-main"]["delivered"] == 200 and counts["mailgun-news"]["delivered"] == 10


def test_a_busy_integration_does_not_push_out_a_quiet_one():
    recent = RecentOutcomes(capacity=3)
    recent.record(outcome("mailgun-news", message_id="quiet"))
    for n in range(10):
        recent.record(outcome(message_id=f"busy{n}"))
    ids = [e.outcome["message_id"] for e in recent.query()]
    assert ids == ["busy9", "busy8", "busy7", "quiet"]


def test_query_is_newest_first_across_integrations():
    recent = RecentOutcomes(capacity=10)
    order = [("mautic-main", "1"), ("mailgun-news", "2"), ("mautic-main", "3"), ("mailgun-news", "4")]
    for integration, message_id in order:
        recent.record(outcome(integration, message_id=message_id))
    entries = recent.query()
    assert [e.outcome["message_id"] for e in entries] == ["4", "3", "2", "1"]
    assert [e.seq for e in entries] == [4, 3, 2, 1]
    row = debugger.shown(entries[0])
    assert row["seq"] == 4 and row["request"] is None and row["message_id"] == "4"


def test_limit_applies_per_integration_after_filtering():
    recent = RecentOutcomes(capacity=50)
    for n in range(6):
        recent.record(outcome(status="failed" if n % 2 else "delivered", message_id=f"a{n}"))
        recent.record(outcome("mailgun-news", message_id=f"b{n}"))
    entries = recent.query(Filters(limit=2))
    assert [e.outcome["message_id"] for e in entries] == ["b5", "a5", "b4", "a4"]
    failed = recent.query(Filters(statuses=frozenset({"failed"}), limit=2))
    assert [e.outcome["message_id"] for e in failed] == ["a5", "a3"]


def test_filters_by_integration_status_and_contact():
    recent = RecentOutcomes()
    recent.record(outcome(status="delivered", contact=JANE, message_id="1"))
    recent.record(outcome(status="failed", contact=BOB, message_id="2"))
    recent.record(outcome("mailgun-news", status="failed", contact=JANE, message_id="3"))
    recent.record(outcome("mailgun-news", status="invalid", contact=None, message_id="4"))

    def ids(**kwargs: Any) -> list[str]:
        return [e.outcome["message_id"] for e in recent.query(Filters(**kwargs))]

    assert ids(integration="mailgun-news") == ["4", "3"]
    assert ids(statuses=frozenset({"failed"})) == ["3", "2"]
    assert ids(statuses=frozenset({"failed", "invalid"})) == ["4", "3", "2"]
    assert ids(contact=JANE) == ["3", "1"]
    assert ids(contact=BOB[:8]) == ["2"], "a contact_id prefix is enough"
    assert ids(integration="mautic-main", statuses=frozenset({"failed"}), contact=JANE) == []
    assert ids(integration="nope") == []


def test_clear_keeps_sequence_numbers_increasing():
    recent = RecentOutcomes(capacity=2)
    recent.record(outcome())
    recent.clear()
    assert len(recent) == 0 and recent.integrations() == []
    assert recent.record(outcome()).seq == 2


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        RecentOutcomes(capacity=0)


def test_recording_from_threads_while_querying_is_safe():
    recent = RecentOutcomes(capacity=100)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        for n in range(2000):
            recent.record(outcome(name, message_id=str(n)))

    def reader() -> None:
        try:
            for _ in range(200):
                recent.query(Filters(statuses=frozenset({"delivered"})))
                recent.counts()
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"i{n}",)) for n in range(3)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert recent.recorded == 6000 and len(recent) == 300


# --- query parameters ------------------------------------------------------------------------


def test_filters_from_query_parse_and_normalize():
    filters = Filters.from_query(
        {"integration": " mautic-main ", "status": "Failed, invalid", "contact": JANE.upper(), "limit": "5"},
        max_limit=200,
    )
    assert filters == Filters("mautic-main", frozenset({"failed", "invalid"}), JANE, 5)
    assert Filters.from_query({}, max_limit=200) == Filters()
    assert Filters.from_query({"integration": "", "status": "", "contact": "", "limit": ""}, max_limit=9) == (
        Filters()
    )
    assert Filters.from_query({"limit": "10000"}, max_limit=200).limit == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "sent"}, "unknown status sent"),
        ({"contact": "Jane@Example.com"}, "not an email"),
        ({"contact": "xyz123"}, "hexadecimal"),
        ({"contact": "abc"}, "at least 6"),
        ({"contact": "a" * 65}, "hexadecimal"),
        ({"limit": "ten"}, "whole number"),
        ({"limit": "0"}, "at least 1"),
    ],
)
def test_bad_query_parameters_are_refused_with_a_reason(query, message):
    with pytest.raises(FilterError, match=message):
        Filters.from_query(query, max_limit=200)


def test_every_status_is_known():
    assert set(STATUSES) == {"delivered", "dropped", "failed", "invalid"}


# --- redaction ---------------------------------------------------------------------------------


def real_outcome(integration, request=None, *, include_email=False, **kwargs: Any) -> dict[str, Any]:
    builder = OutcomeBuilder(include_email=include_email)
    source = SourceRecord("signal.events", 0, 1, 1_700_000_000_000.0, b"{}")
    return builder.build(
        message_id="m-1",
        integration=integration,
        event_name="Identified",
        email="jane.doe@example.com",
        source=source,
        now=1_700_000_000.5,
        **{"status": "delivered", "reason": None, **kwargs},
    )


def test_mautic_request_loses_password_and_email_without_include_email():
    request = Pipeline(mautic()).send(
        SEED_MAUTIC_SIGNED_UP | {"traits": {"email": "jane.doe@example.com"}}, "mautic-main"
    )
    stored, shown = debugger.redact(real_outcome(mautic(), http_status=201, created=True), request.view())
    text = orjson.dumps([stored, shown]).decode()
    assert MAUTIC_PASSWORD not in text and "jane.doe@example.com" not in text
    assert shown["headers"]["Authorization"] == "Basic <redacted>"
    assert shown["json"]["email"] == debugger.EMAIL_MASK
    assert shown["json"]["signal_signup_method"] == "email", "the rest of the body stays readable"
    assert shown["url"] == "https://mautic.example.com/api/contacts/new"


def test_mailgun_form_loses_key_and_address_but_keeps_the_list_address():
    request = Pipeline(mailgun()).send(SEED_MAILGUN_IDENTIFY, "mailgun-news")
    stored, shown = debugger.redact(real_outcome(mailgun()), request.view())
    text = orjson.dumps([stored, shown]).decode()
    assert MAILGUN_KEY not in text and "jane@example.com" not in text.lower()
    assert shown["form"]["address"] == debugger.EMAIL_MASK
    assert shown["url"] == "https://api.mailgun.net/v3/lists/newsletter@mg.example.com/members"
    assert '"plan":"pro"' in shown["form"]["vars"]


def test_plaintext_email_is_shown_only_with_show_personal_data():
    request = Pipeline(mautic()).send(
        SEED_MAUTIC_SIGNED_UP | {"traits": {"email": "jane.doe@example.com"}}, "mautic-main"
    )
    stored, shown = debugger.redact(
        real_outcome(mautic(), include_email=True), request.view(), show_personal=True
    )
    assert stored["email"] == "jane.doe@example.com"
    assert shown["json"]["email"] == "jane.doe@example.com"
    assert MAUTIC_PASSWORD not in orjson.dumps(shown).decode()
    # outcomes.include_email alone does not put personal data on the page
    stored, shown = debugger.redact(real_outcome(mautic(), include_email=True), request.view())
    assert "email" not in stored and shown["json"]["email"] == debugger.EMAIL_MASK


def test_defensive_redaction_of_urls_headers_and_secret_keys():
    jane = "Jane.Doe@Example.com"
    raw = {
        "method": "PUT",
        "url": f"https://user:pw@api.example.com/v3/lists/l@mg.example.com/members/{jane}?api_key=k&x=1",
        "headers": {"Authorization": "Bearer abc.def", "X-Api-Key": "k2", "X-Forwarded-For": "203.0.113.5"},
        "json": {"nested": [{"token": "t"}, "write to bob@example.com"], "password": "p", "n": 3},
    }
    _, shown = debugger.redact(outcome(contact=JANE), raw)
    assert shown["url"] == (
        "https://api.example.com/v3/lists/l@mg.example.com/members/<email redacted>?api_key=<redacted>&x=1"
    )
    assert shown["headers"] == {
        "Authorization": "Bearer <redacted>",
        "X-Api-Key": "<redacted>",
        "X-Forwarded-For": debugger.PERSONAL_MASK,
    }
    assert shown["json"] == {
        "nested": [{"token": "<redacted>"}, "write to <email redacted>"],
        "password": "<redacted>",
        "n": 3,
    }


def test_errors_lose_emails_and_drops_have_no_request():
    stored, shown = debugger.redact(outcome(status="failed", error="HTTP 400: bad address jane@x.io"), None)
    assert stored["error"] == "HTTP 400: bad address <email redacted>"
    assert shown is None


# --- observer and HTTP API ---------------------------------------------------------------------


@pytest.fixture
async def client_and_runtime():
    runtime = create_runtime(settings(), partitions=1)
    recent = debugger.install(runtime)
    async with TestClient(TestServer(runtime.app.web.web_app)) as client:
        yield client, runtime, recent


async def test_install_feeds_the_buffer_and_serves_page_assets_and_api(client_and_runtime):
    client, runtime, recent = client_and_runtime
    observe = runtime.observers[-1]
    mautic_request = Pipeline(mautic()).send(
        SEED_MAUTIC_SIGNED_UP | {"traits": {"email": "jane.doe@example.com"}}, "mautic-main"
    )
    observe(real_outcome(mautic(), http_status=201, created=True), mautic_request)
    observe(
        real_outcome(
            mailgun(), status="failed", reason="http_400", http_status=400, attempts=1, hint="Missing email"
        ),
        Pipeline(mailgun()).send(SEED_MAILGUN_IDENTIFY, "mailgun-news"),
    )
    observe(real_outcome(mautic(), status="dropped", reason="consent_denied"), None)
    assert len(recent) == 3

    page = await client.get("/debugger")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert "/debugger/static/debugger.js" in html and "http" not in html.replace("http-equiv", "")
    for name, kind in (("debugger.js", "text/javascript"), ("debugger.css", "text/css")):
        asset = await client.get(f"/debugger/static/{name}")
        assert asset.status == 200 and asset.headers["Content-Type"].startswith(kind)
    assert (await client.get("/debugger/static/../debugger.py")).status == 404
    assert (await client.get("/debugger/static/missing.js")).status == 404

    reply = await client.get("/debugger/api/outcomes")
    assert reply.status == 200
    body = await reply.json()
    assert [o["status"] for o in body["outcomes"]] == ["dropped", "failed", "delivered"]
    assert body["integrations"] == [
        {"id": "mailgun-news", "type": "mailgun"},
        {"id": "mautic-main", "type": "mautic"},
    ]
    assert body["capacity"] == 200 and body["recorded"] == 3
    assert body["counts"]["mautic-main"] == {"delivered": 1, "dropped": 1, "failed": 0, "invalid": 0}
    delivered = body["outcomes"][2]
    assert (delivered["http_status"], delivered["created"], delivered["contact_id"]) == (201, True, JANE)
    assert delivered["request"]["headers"]["Authorization"] == "Basic <redacted>"
    text = orjson.dumps(body).decode()
    assert MAUTIC_PASSWORD not in text and MAILGUN_KEY not in text and "@example.com" not in text

    failed = await (await client.get("/debugger/api/outcomes?status=failed")).json()
    assert [(o["integration"], o["hint"]) for o in failed["outcomes"]] == [("mailgun-news", "Missing email")]
    mine = await (await client.get(f"/debugger/api/outcomes?contact={JANE}&integration=mautic-main")).json()
    assert [o["status"] for o in mine["outcomes"]] == ["dropped", "delivered"]
    assert mine["filters"] == {"integration": "mautic-main", "status": None, "contact": JANE, "limit": 200}
    limited = await (await client.get("/debugger/api/outcomes?limit=1")).json()
    assert [o["integration"] for o in limited["outcomes"]] == ["mautic-main", "mailgun-news"]

    bad = await client.get("/debugger/api/outcomes?contact=jane.doe@example.com")
    assert bad.status == 400 and "not an email" in (await bad.json())["error"]


def test_contact_id_is_what_the_page_computes():
    # The page hashes the lowercased, trimmed email with SHA-256, exactly like the worker.
    assert contact_id("jane.doe@example.com") == hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert event(type="identify", traits={"email": " Jane.Doe@Example.com "}).traits["email"]
