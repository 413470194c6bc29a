"""Properties of the pure pipeline over generated records, checked against the real emulators.

For every generated record (arbitrary bytes, arbitrary JSON, events from the shipped schema,
events assembled from hostile parts, deep nesting, truncations), handled in order with shared
state as the worker does:

* ``decode → plan → build request → outcome`` never raises, and gives exactly one outcome or
  one request per configured integration;
* every outcome and dead letter follows the shipped contract, is small, and holds no plaintext
  email; everything the worker writes for the event (identity traits, the internal-topic
  envelope) encodes;
* every request has clean headers and an address both destinations take as is, and sent with
  the worker's own HTTP client (``Sender.attempt``) to the in-process Mautic and Mailgun
  emulators, alone and batched, it is answered (never a client-side exception) with a 2xx or a
  per-event 4xx that is not about the address;
* a consent withdrawal's calls, run against the emulators, are each answered with a 2xx or a 404
  that names the missing person (never a fault), carry no personal data in their bodies, and end
  delivered or dropped as ``consent_denied``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from signal_sync.codecs.events import decode_event, peek_message_id
from signal_sync.config import DeliverySettings, MailgunIntegration, MauticIntegration
from signal_sync.dead_letters import dead_letter, read_letter
from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.base import Request
from signal_sync.destinations.delivery import Attempt, Sender, result_of
from signal_sync.destinations.operations import Calls, Finish, Upsert
from signal_sync.errors import InvalidEventError
from signal_sync.identity import ResolvedEvent, email_problem, normalize_email
from signal_sync.outcomes import OutcomeBuilder, SourceRecord
from signal_sync.planner import build_request, plan_delivery, plan_event, remember, remembered_for, state_key
from signal_sync.sandbox import RunningServer, mailgun, mautic, start_in_thread
from signal_sync.streams.output_producer import record_size
from signal_sync.streams.records import DeadLetterHeaders, Outcome, usable_ip
from tests.property.profiles import PROFILE
from tests.property.strategies import emails, ips, record_bursts, timestamps
from tests.unit.factories import MAILGUN_KEY, MAUTIC_PASSWORD
from tests.unit.factories import mailgun as mailgun_integration
from tests.unit.factories import mautic as mautic_integration

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
OUTCOME_SCHEMA = json.loads((SCHEMAS / "outcome.schema.json").read_text(encoding="utf-8"))
DEAD_LETTER_SCHEMA = json.loads((SCHEMAS / "dead-letter-headers.schema.json").read_text(encoding="utf-8"))
DEAD_LETTER_MAX_BYTES = 1_000_000
OUTCOME_MAX_BYTES = 8 * 1024
PER_EVENT_REJECTIONS = frozenset({400, 422})
HEADER_BREAKERS = ("\r", "\n", "\x00")
NOW = 1_780_000_000.0


class Client:
    """The worker's HTTP client on an event loop of its own, callable from the (sync) test body."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="property-client", daemon=True)
        self.thread.start()
        self.sender = Sender(DeliverySettings())

    def attempt(self, integration: Integration, request: Request) -> Attempt:
        """One attempt, classified; never a client-side exception."""
        future = asyncio.run_coroutine_threadsafe(self.sender.attempt(integration.id, request), self.loop)
        attempt = future.result(timeout=30)
        assert attempt.status is not None, f"client-side failure: {attempt.error}"
        return attempt

    def send(self, integration: Integration, request: Request) -> tuple[int, Any]:
        """One attempt: the status (never None: None would be a client-side exception) and JSON body."""
        attempt = self.attempt(integration, request)
        assert attempt.status is not None
        return attempt.status, orjson.loads(attempt.body) if attempt.body[:1] in (b"{", b"[") else None

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sender.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@dataclass
class World:
    """The emulators, the integrations pointing at them and the client."""

    crm: RunningServer
    mg: RunningServer
    integrations: list[MauticIntegration | MailgunIntegration]
    client: Client


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with (
        start_in_thread(mautic.create_app(username="signal", password=MAUTIC_PASSWORD)) as crm,
        start_in_thread(mailgun.create_app(api_key=MAILGUN_KEY)) as mg,
    ):
        client = Client()
        try:
            yield World(
                crm, mg, [mautic_integration(base_url=crm.url), mailgun_integration(base_url=mg.url)], client
            )
        finally:
            client.close()


@dataclass
class Sent:
    """A request the pipeline built for one integration, and the event it carries."""

    integration: MauticIntegration | MailgunIntegration
    request: Request
    resolved: ResolvedEvent
    entry: dict[str, Any]
    """The upsert's item, as a bulk call carries it."""


def check_outcome(outcome: dict[str, Any], source: SourceRecord, email: Any) -> None:
    """The outcome (and its dead letter) follow the contract, are small and hold no plaintext email."""
    Outcome.model_validate(outcome)
    jsonschema.validate(outcome, OUTCOME_SCHEMA)
    encoded = orjson.dumps(outcome)
    assert len(encoded) <= OUTCOME_MAX_BYTES, len(encoded)
    assert "email" not in outcome
    if isinstance(email, str) and "@" in email and len(email.strip()) >= 6:
        assert email.strip() not in (outcome["error"] or "")
    if outcome["status"] in ("failed", "invalid"):
        record = dead_letter(outcome, source, DEAD_LETTER_MAX_BYTES)
        assert record_size(record.key, record.value, record.headers) <= DEAD_LETTER_MAX_BYTES
        letter = read_letter(record.key, record.value, record.headers, record.timestamp_ms)
        assert letter is not None and letter.value == source.value
        DeadLetterHeaders.model_validate(letter.context)
        jsonschema.validate(letter.context, DEAD_LETTER_SCHEMA)
        if isinstance(email, str) and "@" in email and len(email.strip()) >= 6:
            assert all(email.strip() not in text for text in letter.context.values())


def traits_email(raw: bytes | None) -> Any:
    try:
        data = orjson.loads(raw or b"")
        return data.get("traits", {}).get("email") if isinstance(data, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def run_burst(world: World, records: list[bytes | None]) -> list[Sent]:
    """Handle records in order as ingest and deliver do (shared identities and destination state);
    check every outcome; return the requests to send."""
    builder = OutcomeBuilder()
    identities: dict[str, Any] = {}
    state: dict[str, Any] = {}
    sent: list[Sent] = []
    for offset, raw in enumerate(records):
        source = SourceRecord("signal.events", 0, offset, NOW * 1000 - 5, raw)
        per_integration: dict[str, str] = {}
        try:
            event = decode_event(raw)
        except InvalidEventError as exc:
            message_id = peek_message_id(raw)
            for integration in world.integrations:
                outcome = builder.build(
                    message_id=message_id,
                    integration=integration,
                    event_name=None,
                    email=None,
                    status="invalid",
                    reason="invalid_event",
                    source=source,
                    now=NOW,
                    error=str(exc),
                )
                check_outcome(outcome, source, traits_email(raw))
                per_integration[integration.id] = "outcome"
            assert set(per_integration) == {i.id for i in world.integrations}
            continue
        assert event.message_id
        assert event.timestamp is None or event.timestamp.tzinfo is UTC
        plan = plan_event(event, world.integrations, remembered_for(event, identities))
        orjson.dumps(plan.learned)  # the identities table writes it
        remember(identities, event, plan.learned)
        resolved = plan.resolved
        for (integration, reason), operation in zip(plan.decisions, plan.operations, strict=True):
            if reason is not None or operation is None:
                (outcome,) = builder.dropped([(integration, reason)], resolved, source, NOW)
                check_outcome(outcome, source, resolved.traits.get("email"))
                per_integration[integration.id] = "outcome"
                continue
            assert resolved.contact_id is not None
            envelope = {
                "raw": (raw or b"").decode("utf-8"),
                "traits": resolved.traits,
                "contact": resolved.contact_id,
            }
            orjson.dumps({"events": [envelope]})  # the internal topic's record
            key = state_key(integration, resolved.contact_id)
            destination = destination_of(integration)
            work = plan_delivery(resolved, integration, operation, destination.load_state(state.get(key)))
            if isinstance(work, Upsert):
                request = destination.batch.single_request(integration, work.entry)
                state[key] = destination.dump_state(work.state)
                sent.append(Sent(integration, request, resolved, work.entry))
            elif isinstance(work, Calls):
                finish = run_steps(world, integration, work, resolved)
                if finish.state is not None:
                    state[key] = destination.dump_state(finish.state)
            per_integration[integration.id] = "request"
        assert set(per_integration) == {i.id for i in world.integrations}
    return sent


def run_steps(world: World, integration: Integration, work: Calls, resolved: ResolvedEvent) -> Finish:
    """An operation's calls against the emulators, as the delivery stage makes them."""
    destination = destination_of(integration)
    personal = {str(value) for value in resolved.traits.values() if not isinstance(value, dict | list)}
    try:
        request = next(work.steps)
        while True:
            for name, value in request.headers.items():
                assert not any(char in name + value for char in HEADER_BREAKERS), (name, value)
            body = request.json if request.json is not None else request.form or {}
            assert not personal & {str(value) for value in body.values()}, body  # type: ignore[union-attr]
            result = result_of(world.client.attempt(integration, request), 1, destination)
            assert result.status in ("delivered", "absent"), (request.method, request.url, result)
            request = work.steps.send(result)
    except StopIteration as stop:
        finish: Finish = stop.value
    assert finish.status == "delivered" or finish.reason == "consent_denied", finish
    return finish


def address_of(item: Sent) -> str:
    request = item.request
    if isinstance(item.integration, MauticIntegration):
        assert isinstance(request.json, dict)
        return request.json["email"]
    assert request.form is not None
    return request.form["address"]


def check_request(item: Sent) -> None:
    """Clean headers; the address is the normalized email, valid, and keeps its contact id."""
    for name, value in item.request.headers.items():
        assert not any(char in name + value for char in HEADER_BREAKERS), (name, value)
    forwarded = item.request.headers.get("X-Forwarded-For")
    assert forwarded is None or usable_ip(forwarded) == forwarded
    address = address_of(item)
    assert address == item.resolved.email == normalize_email(item.resolved.traits.get("email"))
    assert email_problem(address) is None
    assert mautic.email_accepted(address) and mailgun.address_accepted(address)
    assert item.resolved.contact_id == hashlib.sha256(address.encode()).hexdigest()


def check_answer(status: int, body: Any) -> None:
    """A 2xx, or a per-event rejection that is not about the address."""
    assert 200 <= status < 300 or status in PER_EVENT_REJECTIONS, (status, body)
    if status in PER_EVENT_REJECTIONS:
        text = json.dumps(body)
        assert "email" not in text and "address" not in text, body


def send_batches(world: World, sent: list[Sent]) -> None:
    """The same events as the batcher sends them: one batch call per integration."""
    for integration in world.integrations:
        mine = [item for item in sent if item.integration is integration]
        if not mine:
            continue
        batch = destination_of(integration).batch
        by_contact: dict[str, list[dict[str, Any]]] = {}
        for item in mine:
            by_contact.setdefault(address_of(item), []).append(item.entry)
        entries = [entry for items in by_contact.values() for entry in batch.coalesce(items)]
        status, body = world.client.send(integration, batch.batch_request(integration, entries))
        check_answer(status, body)
        if isinstance(integration, MauticIntegration) and status == 201:
            codes = body["statusCodes"]
            codes = codes if isinstance(codes, list) else [codes[str(i)] for i in range(len(entries))]
            for index, code in enumerate(codes):
                errors = body.get("errors") or {}
                error = errors[index] if isinstance(errors, list) and index < len(errors) else None
                error = error or (errors.get(str(index)) if isinstance(errors, dict) else None)
                check_answer(code, error)


def _sendable(**fields: Any) -> bytes:
    """An identify both integrations take, with ``fields`` merged in (traits and context deeply)."""
    event: dict[str, Any] = {
        "type": "identify",
        "traits": {"email": "jane@example.com"},
        "context": {"consent": {"canonical": {"marketing": True}}},
    }
    for key, value in fields.items():
        event[key] = {**event[key], **value} if key in ("traits", "context") else value
    return orjson.dumps(event)


# The categories of issue #22, always run whatever the generated examples are.
KNOWN_HOSTILE = [
    _sendable(timestamp="9999-12-31T23:00:00-05:00"),
    _sendable(timestamp="0001-01-01T00:00:00+05:00"),
    _sendable(context={"ip": "1.2.3.4\r\nX-Evil: 1"}),
    _sendable(context={"ip": "1.2.3.4\x00"}),
    _sendable(context={"ip": "1.2.3.4, 10.0.0.1"}),
    _sendable(context={"ip": "fe80::1%<script>"}),
    _sendable(context={"page": {"url": "http://[::1"}}),
    *(_sendable(traits={"email": email}) for email in ("a@b@c.com", "jane doe@example.com", "x\uff20y.com")),
    _sendable(traits={"email": "jane@example.com\r\nbcc: x@example.org"}),
    _sendable(messageId="m" * 900_000),
    json.dumps({"type": "identify", "traits": {"deep": json.loads("[" * 300 + "]" * 300)}}).encode(),
    b'{"type": "identify", "traits": {"n": 123456789012345678901234567890}}',
]


@PROFILE
@given(record_bursts)
@example(records=KNOWN_HOSTILE)
def test_every_record_gets_one_outcome_or_one_accepted_request_per_integration(
    world: World, records: list[bytes | None]
) -> None:
    sent = run_burst(world, records)
    for item in sent:
        check_request(item)
        check_answer(*world.client.send(item.integration, item.request))
    send_batches(world, sent)


@PROFILE
@given(st.data())
def test_a_sendable_event_with_any_email_is_delivered_or_dropped_invalid_email(
    world: World, data: Any
) -> None:
    email = data.draw(emails)
    raw = orjson.dumps(
        {
            "type": "identify",
            "traits": {"email": email},
            "context": {"consent": {"canonical": {"marketing": True}}},
        }
    )
    sent = run_burst(world, [raw])
    normalized = normalize_email(email)
    if normalized is not None and email_problem(normalized) is None:
        assert len(sent) == 2
        for item in sent:
            check_request(item)
            status, body = world.client.send(item.integration, item.request)
            assert 200 <= status < 300, (status, body)
    else:
        assert sent == []


@PROFILE
@given(ips)
def test_only_a_parsed_ip_reaches_a_request(world: World, ip: Any) -> None:
    raw = orjson.dumps({"type": "identify", "traits": {"email": "ip@example.com"}, "context": {"ip": ip}})
    integration = mautic_integration(base_url=world.crm.url, consent=[])
    try:
        event = decode_event(raw)
    except InvalidEventError:
        assert not isinstance(ip, str)  # a wrong type is an invalid event; a bad string never is
        return
    plan = plan_event(event, [integration], {})
    request = build_request(plan.resolved, integration, None)
    assert isinstance(request.json, dict)
    expected = usable_ip(ip) if isinstance(ip, str) else None
    assert request.json.get("ipAddress") == expected
    assert request.headers.get("X-Forwarded-For") == expected
    if expected is not None:
        assert not any(char in expected for char in HEADER_BREAKERS + (",", "%", " "))
    status, body = world.client.send(integration, request)
    assert status in (200, 201), body


@PROFILE
@given(timestamps)
def test_a_timestamp_decodes_into_the_accepted_utc_range_or_is_an_invalid_event(stamp: Any) -> None:
    raw = orjson.dumps({"type": "identify", "timestamp": stamp, "traits": {"email": "t@example.com"}})
    try:
        event = decode_event(raw)
    except InvalidEventError as exc:
        assert str(exc).startswith("timestamp: ")
        return
    if event.timestamp is None:
        return
    assert event.timestamp.tzinfo is UTC and 1000 <= event.timestamp.year <= 9999
    integration = mautic_integration(consent=[])
    plan = plan_event(event, [integration], {})
    request = build_request(plan.resolved, integration, None)
    assert isinstance(request.json, dict) and len(request.json["lastActive"]) == len("2026-06-06 14:32:10")
