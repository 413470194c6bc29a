"""The event debugger's exposure: off by default, who may read its API, what it masks by field name."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from signal_sync import observability
from signal_sync.config import DebuggerSettings
from signal_sync.identity import contact_id
from signal_sync.observability import debugger
from signal_sync.observability.logs import secrets_of
from signal_sync.runtime import create_runtime
from tests.unit.factories import (
    MAILGUN_KEY,
    MAUTIC_PASSWORD,
    SEED_MAUTIC_SIGNED_UP,
    Pipeline,
    mailgun,
    mautic,
    settings,
)

TOKEN = "dbg-token-0123456789abcdef"
JANE = "jane.doe@example.com"

# What Mautic and Mailgun receive for one person (as ``Request.view()`` shows a request).
MAUTIC_VIEW: dict[str, Any] = {
    "method": "POST",
    "url": "https://mautic.example.com/api/contacts/new",
    "headers": {
        "Authorization": "Basic <redacted>",
        "Content-Type": "application/json",
        "X-Forwarded-For": "203.0.113.7",
    },
    "json": {
        "email": JANE,
        "firstname": "Jane",
        "lastname": "Doe",
        "phone": "+49 30 1234567",
        "company": "Acme",
        "city": "Berlin",
        "state": "BE",
        "zipcode": "10115",
        "country": "DE",
        "ipAddress": "203.0.113.7",
        "lastActive": "2026-06-06 14:40:00",
        "utm_source": "newsletter",
        "tags": ["signal-marketing-consent"],
    },
}
MAILGUN_VIEW: dict[str, Any] = {
    "method": "POST",
    "url": "https://api.mailgun.net/v3/lists/newsletter@mg.example.com/members",
    "headers": {"Authorization": "Basic <redacted>"},
    "form": {
        "address": JANE,
        "name": "Jane Doe",
        "upsert": "yes",
        "subscribed": "yes",
        "vars": orjson.dumps(
            {
                "first_name": "Jane",
                "last_name": "Doe",
                "plan": "pro",
                "last_page_url": f"https://x.io/?e={JANE}",
            }
        ).decode(),
    },
}
MAILGUN_BATCH_VIEW: dict[str, Any] = {
    "method": "POST",
    "url": "https://api.mailgun.net/v3/lists/newsletter@mg.example.com/members.json",
    "headers": {"Authorization": "Basic <redacted>"},
    "form": {
        "upsert": "yes",
        "members": orjson.dumps(
            [{"address": JANE, "name": "Jane Doe", "vars": {"first_name": "Jane", "plan": "pro"}}]
        ).decode(),
    },
}
PERSONAL_VALUES = ("Jane", "Doe", "Jane Doe", "+49 30 1234567", "Berlin", "10115", "203.0.113.7", JANE)


def outcome(**extra: Any) -> dict[str, Any]:
    return {"integration": "mautic-main", "status": "delivered", "contact_id": contact_id(JANE), **extra}


def personal_in(shown: Any) -> list[str]:
    text = orjson.dumps(shown).decode()
    return [value for value in PERSONAL_VALUES if re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", text)]


# --- masking by field name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "view", [MAUTIC_VIEW, MAILGUN_VIEW, MAILGUN_BATCH_VIEW], ids=["mautic", "mailgun", "batch"]
)
def test_personal_fields_are_masked_by_name_unless_shown(view: dict[str, Any]) -> None:
    shown_outcome, shown = debugger.redact(outcome(email=JANE), view)
    assert personal_in(shown) == [] and personal_in(shown_outcome) == []
    assert "email" not in shown_outcome, "the outcome's own email is left out"

    as_sent_outcome, as_sent = debugger.redact(outcome(email=JANE), view, show_personal=True)
    assert as_sent == view and as_sent_outcome["email"] == JANE


def test_masked_mautic_body_stays_readable() -> None:
    _, shown = debugger.redact(outcome(), MAUTIC_VIEW)
    body = shown["json"]
    assert body["email"] == debugger.EMAIL_MASK
    for key in ("firstname", "lastname", "phone", "city", "state", "zipcode", "country", "ipAddress"):
        assert body[key] == debugger.PERSONAL_MASK, key
    for key in ("company", "lastActive", "utm_source", "tags"):
        assert body[key] == MAUTIC_VIEW["json"][key], f"{key} is not personal and stays"
    assert shown["headers"]["X-Forwarded-For"] == debugger.PERSONAL_MASK
    assert shown["headers"]["Content-Type"] == "application/json"


def test_json_inside_mailgun_form_fields_is_masked_field_by_field() -> None:
    _, shown = debugger.redact(outcome(), MAILGUN_VIEW)
    form = shown["form"]
    assert form["address"] == debugger.EMAIL_MASK and form["name"] == debugger.PERSONAL_MASK
    assert form["upsert"] == "yes"
    variables = orjson.loads(form["vars"])
    assert variables == {
        "first_name": debugger.PERSONAL_MASK,
        "last_name": debugger.PERSONAL_MASK,
        "plan": "pro",
        "last_page_url": f"https://x.io/?e={debugger.EMAIL_MASK}",
    }
    assert shown["url"] == MAILGUN_VIEW["url"], "the list address is configuration, not personal data"
    _, batch = debugger.redact(outcome(), MAILGUN_BATCH_VIEW)
    (member,) = orjson.loads(batch["form"]["members"])
    assert member == {
        "address": debugger.EMAIL_MASK,
        "name": debugger.PERSONAL_MASK,
        "vars": {"first_name": debugger.PERSONAL_MASK, "plan": "pro"},
    }


def test_a_real_mautic_request_loses_personal_data() -> None:
    request = Pipeline(mautic()).send(
        SEED_MAUTIC_SIGNED_UP
        | {"traits": {"email": JANE, "first_name": "Jane", "phone": "+49 30 1234567"}}
        | {"context": {"ip": "203.0.113.7", "consent": {"canonical": {"marketing": True}}}},
        "mautic-main",
    )
    _, shown = debugger.redact(outcome(), request.view())
    assert personal_in(shown) == [] and MAUTIC_PASSWORD not in orjson.dumps(shown).decode()


def test_secrets_stay_hidden_even_when_personal_data_is_shown() -> None:
    view = {**MAILGUN_VIEW, "form": {**MAILGUN_VIEW["form"], "vars": '{"api_key": "k-1", "plan": "pro"}'}}
    _, shown = debugger.redact(outcome(), view, show_personal=True)
    assert orjson.loads(shown["form"]["vars"]) == {"api_key": debugger.REDACTED, "plan": "pro"}


SEPARATORS = st.sampled_from(["", "_", "-", " "])
PERSONAL_NAMES = st.sampled_from(
    [
        ("email",),
        ("first", "name"),
        ("last", "name"),
        ("phone",),
        ("zip", "code"),
        ("postal", "code"),
        ("ip", "address"),
        ("x", "forwarded", "for"),
        ("city",),
        ("address",),
    ]
)


@st.composite
def personal_key(draw: st.DrawFn) -> str:
    """A personal field name in any spelling: firstName, first_name, FIRST-NAME, ..."""
    parts = draw(PERSONAL_NAMES)
    sep = draw(SEPARATORS)
    cased = [draw(st.sampled_from([p.lower(), p.upper(), p.capitalize()])) for p in parts]
    return sep.join(cased)


SECRET_VALUES = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=12, max_size=20)


@st.composite
def body_with_personal_values(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A nested body where every personal field holds a unique marker value."""
    planted: list[str] = []

    def node(depth: int) -> Any:
        items: dict[str, Any] = {}
        for _ in range(draw(st.integers(1, 4))):
            choice = draw(st.integers(0, 3 if depth < 3 else 1))
            if choice == 0:
                value = draw(SECRET_VALUES)
                planted.append(value)
                items[draw(personal_key())] = value
            elif choice == 1:
                items[draw(st.sampled_from(["plan", "company", "tags", "utm_source"]))] = "kept"
            elif choice == 2:
                items[draw(st.sampled_from(["vars", "members"]))] = orjson.dumps(node(depth + 1)).decode()
            else:
                items[draw(st.sampled_from(["data", "items"]))] = [node(depth + 1)]
        return items

    return node(0), planted


@given(body_with_personal_values())
def test_no_personal_value_survives_in_any_spelling_or_nesting(generated: tuple[Any, list[str]]) -> None:
    body, planted = generated
    shown = debugger.redact_request({"method": "POST", "json": body}, show_personal=False, contact_id=None)
    text = orjson.dumps(shown).decode()
    assert not [value for value in planted if value in text]


# --- emails in text, internationalized ones included --------------------------------------------------

IDN_ADDRESSES = (
    "jürgen.müller@exämple.de",
    "用户@例子.广告",
    "θσερ@παράδειγμα.δοκιμή",
    "почта@пример.рф",
    "o'brien+news@example.co.uk",
    "user@xn--bcher-kva.example",
)


@pytest.mark.parametrize("address", IDN_ADDRESSES)
def test_internationalized_addresses_are_masked_in_text(address: str) -> None:
    text = f"HTTP 400: address {address} rejected; retry with {address.upper()}."
    masked = debugger.mask_emails(text)
    assert masked == (f"HTTP 400: address {debugger.EMAIL_MASK} rejected; retry with {debugger.EMAIL_MASK}.")
    stored, _ = debugger.redact(outcome(status="failed", error=text), None)
    assert address not in stored["error"]


LETTERS = st.characters(categories=["Ll", "Lu", "Lo", "Nd"])


@given(
    local=st.text(LETTERS, min_size=1, max_size=12),
    labels=st.lists(st.text(LETTERS, min_size=1, max_size=10), min_size=2, max_size=3),
)
def test_any_script_address_is_masked_whole(local: str, labels: list[str]) -> None:
    address = f"{local}@{'.'.join(labels)}"
    masked = debugger.mask_emails(f"bad address: {address}!")
    assert masked == f"bad address: {debugger.EMAIL_MASK}!"


# --- who may read the API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "authorization", "token", "allowed"),
    [
        ("127.0.0.1", None, None, True),
        ("::1", None, None, True),
        ("127.0.0.6", None, None, True),
        ("10.1.2.3", None, None, False),
        (None, None, None, False),
        ("10.1.2.3", f"Bearer {TOKEN}", None, False),
        ("10.1.2.3", f"Bearer {TOKEN}", TOKEN, True),
        ("10.1.2.3", f"bearer  {TOKEN} ", TOKEN, True),
        ("10.1.2.3", "Bearer wrong-token-0000000000", TOKEN, False),
        ("10.1.2.3", f"Basic {TOKEN}", TOKEN, False),
        ("127.0.0.1", None, TOKEN, False),
        ("127.0.0.1", f"Bearer {TOKEN}", TOKEN, True),
    ],
)
def test_may_read(peer: str | None, authorization: str | None, token: str | None, allowed: bool) -> None:
    """Without a token: loopback only. With one: the token, from anywhere, loopback included (a mesh
    sidecar delivers every client from a loopback address such as Istio's 127.0.0.6)."""
    assert debugger.may_read(peer, authorization, token) is allowed


def record_one(runtime: Any) -> None:
    """One outcome that carries the plaintext email (outcomes.include_email on), seen by the debugger."""
    runtime.observers[-1](outcome(email=JANE, message_id="m-1", reason=None), None)


@pytest.fixture
async def served() -> Any:
    """A runtime with observability installed from its settings; yields (make, ...)"""
    clients: list[TestClient] = []

    async def make(**debugger_settings: Any) -> tuple[TestClient, Any]:
        runtime = create_runtime(settings(debugger=debugger_settings), partitions=1)
        observability.install(runtime)
        client = TestClient(TestServer(runtime.app.web.web_app))
        await client.start_server()
        clients.append(client)
        return client, runtime

    yield make
    for client in clients:
        await client.close()


async def test_the_debugger_is_not_served_unless_enabled(served: Any) -> None:
    client, _ = await served()
    for path in ("/debugger", "/debugger/api/outcomes", "/debugger/static/debugger.js"):
        assert (await client.get(path)).status == 404, path
    assert (await client.get("/health")).status == 200


async def test_loopback_only_without_a_token(served: Any) -> None:
    client, runtime = await served(enabled=True)
    record_one(runtime)
    reply = await client.get("/debugger/api/outcomes")  # the test client connects over loopback
    assert reply.status == 200
    body = await reply.json()
    assert body["personal_data"] == "masked"
    assert JANE not in orjson.dumps(body).decode() and "email" not in body["outcomes"][0]


async def test_with_a_token_every_api_request_needs_it(served: Any) -> None:
    client, runtime = await served(enabled=True, token=TOKEN, show_personal_data=True)
    record_one(runtime)
    page = await client.get("/debugger")
    assert page.status == 200, "the page holds no data and loads without the token"
    denied = await client.get("/debugger/api/outcomes")
    assert denied.status == 401
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await denied.json()) == {"error": debugger.NEEDS_BEARER, "token_required": True}
    wrong = await client.get("/debugger/api/outcomes", headers={"Authorization": "Bearer not-the-token-000"})
    assert wrong.status == 401
    allowed = await client.get("/debugger/api/outcomes", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status == 200
    body = await allowed.json()
    assert body["personal_data"] == "shown" and body["outcomes"][0]["email"] == JANE


# --- settings ------------------------------------------------------------------------------------------


def test_debugger_settings_are_off_by_default_and_check_the_token(tmp_path: Any) -> None:
    assert DebuggerSettings().enabled is False and DebuggerSettings().show_personal_data is False
    with pytest.raises(ValueError, match="at least 16 characters"):
        DebuggerSettings(token="short")
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    assert DebuggerSettings(token_file=token_file).token.get_secret_value() == TOKEN
    with pytest.raises(ValueError, match="not both"):
        DebuggerSettings(token=TOKEN, token_file=token_file)
    with pytest.raises(ValueError, match="cannot read"):
        DebuggerSettings(token_file=tmp_path / "missing")


def test_the_token_is_redacted_from_logs_like_every_secret() -> None:
    found = secrets_of(settings(debugger={"enabled": True, "token": TOKEN}))
    assert TOKEN in found and MAILGUN_KEY in found


def test_the_calls_of_a_withdrawal_are_shown_redacted_with_keyed_contact_ids() -> None:
    """A withdrawal's calls: the contact's own address is masked in every URL, also when the
    outcomes' contact_id is keyed (the list address, configuration, stays readable)."""
    from signal_sync.destinations.base import CallLog
    from signal_sync.destinations.mailgun_privacy import list_request, withdraw_member_request
    from signal_sync.outcomes import OutcomeBuilder

    builder = OutcomeBuilder(contact_id_key=b"k" * 32)
    integration = mailgun()
    calls = CallLog((withdraw_member_request(integration, "jane@example.com"), list_request(integration)))
    outcome = {"contact_id": builder.contact_id_of("jane@example.com"), "operation": "withdraw_consent"}
    _, shown = debugger.redact(outcome, calls.view(), contact_id_of=builder.contact_id_of)
    assert shown is not None
    urls = [call["url"] for call in shown["calls"]]
    assert urls == [
        "https://api.mailgun.net/v3/lists/newsletter@mg.example.com/members/<email redacted>",
        "https://api.mailgun.net/v3/lists/newsletter@mg.example.com",
    ]
    assert shown["calls"][0]["form"] == {"subscribed": "no"}
    assert all(call["headers"]["Authorization"] == "Basic <redacted>" for call in shown["calls"])
    _, unkeyed = debugger.redact(outcome, calls.view())
    assert unkeyed is not None and "jane@example.com" in unkeyed["calls"][0]["url"], (
        "without the key the address cannot be recognised: the debugger is given the outcomes' contact_id_of"
    )
