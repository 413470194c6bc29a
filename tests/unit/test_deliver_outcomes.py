"""The delivery agent's ``deliver_events``: one outcome per event and integration, whatever raises."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from signal_sync.agents.deliver import Delivery, build_jobs, deliver_events
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.engine.batcher import Placed
from signal_sync.engine.jobs import JobResult
from signal_sync.engine.ordered import KeyOrderedScheduler, Slots
from signal_sync.identity import contact_id
from signal_sync.outcomes import OutcomeBuilder
from signal_sync.planner import state_key
from signal_sync.streams.records import Outcome
from tests.unit.factories import consent, mautic
from tests.unit.runtime_fakes import RecordingOutputs, fake_runtime

DELIVERIES, DLQ = "signal.deliveries", "signal.deliveries.dlq"
EMAIL = "jane@example.com"
DELIVERED = DeliveryResult("delivered", 200, None, 1, None, None, None)


def envelope(**traits: Any) -> dict[str, Any]:
    body = {
        "type": "identify",
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "timestamp": "2026-06-06T14:40:00Z",
        "traits": {"email": EMAIL, "first_name": "Jane", **traits},
        "context": consent(marketing=True),
    }
    return {
        "raw": orjson.dumps(body).decode(),
        "traits": body["traits"],
        "contact": contact_id(EMAIL),
        "src": ["signal.events", 0, 5, 1_780_000_000_000.0],
        "takers": 1,
    }


async def deliver_to(runtime: Any, integration: Any, envelope: dict[str, Any], partition: int = 0) -> None:
    """One event delivered as the delivery agent delivers an internal record's events."""
    await deliver_events(runtime, integration, Delivery([envelope], None, partition))


def sending(result: DeliveryResult | Callable[[], DeliveryResult]) -> Callable[..., Any]:
    """Replaces the sender's ``deliver`` (the HTTP side) in these unit tests."""

    async def deliver(*_: object, **__: object) -> DeliveryResult:
        return result() if callable(result) else result

    return deliver


class BuilderFailingOn(OutcomeBuilder):
    """An outcome builder that raises for one status (a bug in building the outcome)."""

    def build(self, **fields: Any) -> dict[str, Any]:  # type: ignore[override]
        if fields["status"] == "delivered":
            raise OverflowError("date value out of range")
        return super().build(**fields)


def only_outcome(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, records
    return Outcome.model_validate(records[0]).model_dump(by_alias=True)


async def test_an_exception_while_building_the_outcome_becomes_an_internal_error_outcome(monkeypatch):
    runtime, outputs = fake_runtime()
    runtime.outcomes = BuilderFailingOn()
    monkeypatch.setattr(runtime.sender, "deliver", sending(DELIVERED))
    await deliver_to(runtime, runtime.integrations["mailgun-news"], envelope())

    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"]) == ("failed", "internal_error")
    assert outcome["error"] == "OverflowError: date value out of range"
    letters = outputs.letters(DLQ)
    assert [letter.context["signal_sync.reason"] for letter in letters] == ["internal_error"]
    assert letters[0].context["__connect.errors.stage"] == "TASK_PUT"
    assert letters[0].context["__connect.errors.exception.class.name"] == "OverflowError"


async def test_an_exception_while_sending_fails_that_event_and_keeps_the_state(monkeypatch):
    runtime, outputs = fake_runtime()
    mailgun = runtime.integrations["mailgun-news"]
    key = state_key(mailgun, contact_id(EMAIL))
    runtime.destination_state[key] = {"plan": "pro"}

    def boom() -> DeliveryResult:
        raise ValueError("header value contains a newline")

    monkeypatch.setattr(runtime.sender, "deliver", sending(boom))
    await deliver_to(runtime, mailgun, envelope(plan="team"))
    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"]) == ("failed", "client_error")
    assert outcome["error"] == "ValueError: header value contains a newline"
    assert runtime.destination_state[key] == {"plan": "pro"}, (
        "the next event must not merge into vars never delivered"
    )


async def test_merged_vars_too_large_to_remember_are_said_in_the_delivered_outcome(monkeypatch):
    runtime, outputs = fake_runtime(state_limit=2_000)
    mailgun = runtime.integrations["mailgun-news"]
    key = state_key(mailgun, contact_id(EMAIL))
    runtime.destination_state[key] = {"plan": "pro"}
    monkeypatch.setattr(runtime.sender, "deliver", sending(DELIVERED))
    await deliver_to(runtime, mailgun, envelope(company="x" * 3_000))

    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"]) == ("delivered", None)
    assert "not remembered" in outcome["error"] and "2000-byte limit" in outcome["error"]
    assert runtime.destination_state[key] == {"plan": "pro"}, "the vars stored before stay"


async def test_when_the_outcome_cannot_be_written_deliver_events_raises(monkeypatch):
    runtime, outputs = fake_runtime()
    outputs.refuse = OSError("broker gone")
    monkeypatch.setattr(runtime.sender, "deliver", sending(DELIVERED))
    with pytest.raises(OSError):
        await deliver_to(runtime, runtime.integrations["mautic-main"], envelope())


def withdrawing_envelope() -> dict[str, Any]:
    body = orjson.loads(envelope()["raw"])
    body["context"] = consent(marketing=False)
    return {**envelope(), "raw": orjson.dumps(body).decode()}


async def test_a_withdrawal_for_a_person_mautic_does_not_know_is_dropped_and_remembered(monkeypatch):
    runtime, outputs = fake_runtime()
    crm = runtime.integrations["mautic-main"]
    sent: list[str] = []

    async def deliver(integration: Any, request: Any, watch: Any = None) -> DeliveryResult:
        sent.append(f"{request.method} {request.url.split('?')[0]}")
        return DeliveryResult(
            "delivered", 200, None, 1, None, None, None, reply=b'{"total": 0, "contacts": {}}'
        )

    monkeypatch.setattr(runtime.sender, "deliver", deliver)
    await deliver_to(runtime, crm, withdrawing_envelope(), partition=0)
    await deliver_to(runtime, crm, withdrawing_envelope(), partition=0)
    first, second = (Outcome.model_validate(o).model_dump(by_alias=True) for o in outputs.on(DELIVERIES))
    assert (first["status"], first["reason"], first["operation"]) == (
        "dropped",
        "consent_denied",
        "withdraw_consent",
    )
    assert (second["status"], second["reason"], second["operation"]) == (
        "dropped",
        "consent_denied",
        "withdraw_consent",
    )
    assert sent == ["GET https://mautic.example.com/api/contacts"], "the second withdrawal sends nothing"
    assert runtime.destination_state[state_key(crm, contact_id(EMAIL))] == {"withdrawn": True}
    assert outputs.letters(DLQ) == []


async def test_stage_two_decides_again_with_its_own_config(monkeypatch):
    """An event forwarded as a withdrawal while the worker now drops withdrawals (the config changed
    between the stages): dropped as consent_denied, nothing sent, no operation."""
    runtime, outputs = fake_runtime()
    dropping = mautic(on_consent_withdrawn="drop")

    async def deliver(*_: object, **__: object) -> DeliveryResult:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(runtime.sender, "deliver", deliver)
    await deliver_to(runtime, dropping, withdrawing_envelope())
    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"], outcome["operation"]) == ("dropped", "consent_denied", None)


def envelope_of(email: str, message_id: str) -> dict[str, Any]:
    body = {**orjson.loads(envelope()["raw"]), "messageId": message_id, "anonymousId": f"anon-{message_id}"}
    body["traits"] = {**body["traits"], "email": email}
    return {
        **envelope(),
        "raw": orjson.dumps(body).decode(),
        "traits": body["traits"],
        "contact": contact_id(email),
    }


async def test_a_records_events_share_one_bulk_call_and_a_bad_one_harms_no_neighbour(monkeypatch):
    runtime, outputs = fake_runtime()
    mailgun = runtime.integrations["mailgun-news"]
    build_jobs(runtime, mailgun)
    assert mailgun.id in runtime.batchers
    calls: list[Any] = []

    async def deliver(integration: Any, request: Any, watch: Any = None) -> DeliveryResult:
        calls.append(request)
        return DELIVERED

    monkeypatch.setattr(runtime.sender, "deliver", deliver)
    broken = {**envelope_of("b@example.com", "m-b"), "raw": "{not json"}
    events = [envelope_of("a@example.com", "m-a"), broken, envelope_of("c@example.com", "m-c")]
    delivery = Delivery(events, None, 0)
    await deliver_events(runtime, mailgun, delivery)

    assert len(calls) == 1, "the record's two good events go in one bulk call"
    outcomes = [Outcome.model_validate(o).model_dump(by_alias=True) for o in outputs.on(DELIVERIES)]
    assert sorted((o["status"], o["reason"], o["message_id"]) for o in outcomes) == [
        ("delivered", None, "m-a"),
        ("delivered", None, "m-c"),
        ("failed", "internal_error", outcomes[-1]["message_id"]),
    ]
    assert delivery.finished == {0, 1, 2}
    assert [letter.context["signal_sync.reason"] for letter in outputs.letters(DLQ)] == ["internal_error"]


class RefusingAfter(RecordingOutputs):
    """Takes ``left`` records, then refuses every one (the broker went away mid-record)."""

    left = 1

    def send_soon(self, *args: Any, **kwargs: Any) -> None:
        if self.left == 0:
            raise OSError("broker gone")
        self.left -= 1
        super().send_soon(*args, **kwargs)


async def test_an_outcome_that_cannot_be_written_stops_the_record_where_it_is(monkeypatch):
    """``finished`` holds the events with outcomes, so the agent's ``fail`` records only the rest."""
    runtime, _ = fake_runtime()
    runtime.outputs = RefusingAfter()  # type: ignore[assignment]
    mailgun = runtime.integrations["mailgun-news"]
    build_jobs(runtime, mailgun)
    assert mailgun.id in runtime.batchers
    monkeypatch.setattr(runtime.sender, "deliver", sending(DELIVERED))
    delivery = Delivery([envelope_of(f"{n}@example.com", f"m-{n}") for n in range(3)], None, 0)
    with pytest.raises(OSError):
        await deliver_events(runtime, mailgun, delivery)
    assert delivery.finished == {0}


class AnsweredByHand:
    """Stands in for a batcher: each job's future is answered when the test says."""

    def __init__(self) -> None:
        self.placed: dict[str, asyncio.Future[Placed[JobResult]]] = {}

    def put(self, contact: str, job: Any) -> asyncio.Future[Placed[JobResult]]:
        future = self.placed[job.resolved.event.message_id] = asyncio.get_running_loop().create_future()
        return future

    def answer(self, message_id: str) -> None:
        self.placed[message_id].set_result(Placed(JobResult("upsert", "delivered", http_status=200), 0, 1))


async def test_each_outcome_is_written_when_its_event_is_answered_not_in_record_order():
    """A contact's outcomes complete in its events' order even when an earlier event of the first
    record (another contact's) is answered last."""
    runtime, outputs = fake_runtime()
    mailgun = runtime.integrations["mailgun-news"]
    batcher = runtime.batchers[mailgun.id] = AnsweredByHand()  # type: ignore[assignment]
    first = Delivery([envelope_of("slow@example.com", "m-d"), envelope_of("c@example.com", "m-a")], None, 0)
    second = Delivery([envelope_of("c@example.com", "m-b")], None, 0)
    records = [asyncio.create_task(deliver_events(runtime, mailgun, item)) for item in (first, second)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert sorted(batcher.placed) == ["m-a", "m-b", "m-d"], "every job is placed before any answer"
    for message_id in ("m-a", "m-b", "m-d"):
        batcher.answer(message_id)
        await asyncio.sleep(0)
    await asyncio.gather(*records)
    assert [o["message_id"] for o in outputs.on(DELIVERIES)] == ["m-a", "m-b", "m-d"]
    assert first.finished == {0, 1} and second.finished == {0}


async def test_a_record_gives_back_a_slot_for_each_outcome_as_it_is_written():
    """The scheduler's slots held by a record are those of its events still waiting for an answer
    (a contact's event queued behind its batch in flight holds one, not the whole record's)."""
    runtime, outputs = fake_runtime()
    mailgun = runtime.integrations["mailgun-news"]
    batcher = runtime.batchers[mailgun.id] = AnsweredByHand()  # type: ignore[assignment]
    scheduler = KeyOrderedScheduler(ack=lambda _: asyncio.sleep(0), max_in_flight=3)
    slots = Slots(3)
    record = Delivery([envelope_of(f"{n}@example.com", f"m-{n}") for n in range(3)], None, 0, slots=slots)

    async def handle(delivery: Delivery) -> None:
        await deliver_events(runtime, mailgun, delivery)

    await scheduler.submit("p", 0, "k", record, handle, slots)
    waiting = asyncio.create_task(scheduler.submit("p", 1, "k2", Delivery([], None, 0), handle, 2))
    await asyncio.sleep(0)
    batcher.answer("m-1")
    await asyncio.sleep(0)
    assert (slots.held, waiting.done()) == (2, False)
    batcher.answer("m-0")
    await asyncio.wait_for(waiting, 1)  # two slots free while the record still waits for m-2
    assert slots.held == 1 and len(outputs.on(DELIVERIES)) == 2
    batcher.answer("m-2")
    assert await scheduler.drain(1)
    assert slots.held == 0 and record.finished == {0, 1, 2}
