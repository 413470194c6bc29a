"""The delivery agent's ``deliver_to``: one outcome per event and integration, whatever raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from signal_sync.agents import deliver
from signal_sync.agents.deliver import deliver_to
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.identity import contact_id
from signal_sync.outcomes import OutcomeBuilder
from signal_sync.planner import state_key
from signal_sync.streams.records import Outcome
from tests.unit.factories import consent
from tests.unit.runtime_fakes import fake_runtime

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


def sending(result: DeliveryResult | Callable[[], DeliveryResult]) -> Callable[..., Any]:
    """Replaces the agent's ``send`` (the HTTP side) in these unit tests."""

    async def send(*_: object) -> tuple[DeliveryResult, bool]:
        return (result() if callable(result) else result), True

    return send


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
    monkeypatch.setattr(deliver, "send", sending(DELIVERED))
    await deliver_to(runtime, runtime.integrations["mailgun-news"], envelope())

    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"]) == ("failed", "internal_error")
    assert outcome["error"] == "OverflowError: date value out of range"
    letters = outputs.letters(DLQ)
    assert [letter.context["signal_sync.reason"] for letter in letters] == ["internal_error"]
    assert letters[0].context["__connect.errors.stage"] == "TASK_PUT"
    assert letters[0].context["__connect.errors.exception.class.name"] == "OverflowError"


async def test_an_exception_while_sending_clears_the_pending_state_and_becomes_one_outcome(monkeypatch):
    runtime, outputs = fake_runtime()
    mailgun = runtime.integrations["mailgun-news"]

    def boom() -> DeliveryResult:
        raise ValueError("header value contains a newline")

    monkeypatch.setattr(deliver, "send", sending(boom))
    await deliver_to(runtime, mailgun, envelope())
    assert only_outcome(outputs.on(DELIVERIES))["reason"] == "internal_error"
    assert runtime.pending_state == {}, "the next event must not merge into vars never delivered"


async def test_merged_vars_too_large_to_remember_are_said_in_the_delivered_outcome(monkeypatch):
    runtime, outputs = fake_runtime(state_limit=2_000)
    mailgun = runtime.integrations["mailgun-news"]
    key = state_key(mailgun, contact_id(EMAIL))
    runtime.destination_state[key] = {"plan": "pro"}
    monkeypatch.setattr(deliver, "send", sending(DELIVERED))
    await deliver_to(runtime, mailgun, envelope(company="x" * 3_000))

    outcome = only_outcome(outputs.on(DELIVERIES))
    assert (outcome["status"], outcome["reason"]) == ("delivered", None)
    assert "not remembered" in outcome["error"] and "2000-byte limit" in outcome["error"]
    assert runtime.destination_state[key] == {"plan": "pro"}, "the vars stored before stay"


async def test_when_the_outcome_cannot_be_written_deliver_to_raises(monkeypatch):
    runtime, outputs = fake_runtime()
    outputs.refuse = OSError("broker gone")
    monkeypatch.setattr(deliver, "send", sending(DELIVERED))
    with pytest.raises(OSError):
        await deliver_to(runtime, runtime.integrations["mautic-main"], envelope())
