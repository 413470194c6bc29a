"""The validated-event hand-off between the ingest stage and this process's delivery agents."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from signal_sync.agents.deliver import decoded_event
from signal_sync.outcomes import SourceRecord
from signal_sync.streams.handoff import DecodedEvents
from signal_sync.streams.records import SignalEvent


def event(message_id: str) -> SignalEvent:
    return SignalEvent.model_validate({"type": "page", "messageId": message_id})


def test_each_taker_gets_the_event_once_and_the_last_one_removes_it():
    decoded = DecodedEvents()
    kept = event("m-1")
    decoded.keep(("signal.events", 3, 17), kept, takers=2)
    assert decoded.take(("signal.events", 3, 17)) is kept
    assert decoded.take(("signal.events", 3, 17)) is kept
    assert decoded.take(("signal.events", 3, 17)) is None  # a third taker decodes for itself
    assert len(decoded) == 0


def test_a_position_never_kept_is_a_miss():
    decoded = DecodedEvents()
    decoded.keep(("signal.events", 0, 1), event("m-1"), takers=1)
    assert decoded.take(("signal.events", 0, 2)) is None
    assert decoded.take(("other", 0, 1)) is None


def test_the_oldest_entries_go_when_full():
    decoded = DecodedEvents(capacity=3)
    for offset in range(5):
        decoded.keep(("signal.events", 0, offset), event(f"m-{offset}"), takers=1)
    assert len(decoded) == 3
    assert decoded.take(("signal.events", 0, 1)) is None
    taken = decoded.take(("signal.events", 0, 4))
    assert taken is not None and taken.message_id == "m-4"


def test_a_delivery_agent_that_decodes_leaves_the_event_for_the_other_integrations():
    runtime = SimpleNamespace(decoded=DecodedEvents())
    source = SourceRecord("signal.events", 1, 40, None, orjson.dumps({"type": "page", "messageId": "m-40"}))
    envelope = {"takers": 3}
    first = decoded_event(runtime, envelope, source)  # type: ignore[arg-type]  # a miss: decoded here
    assert first.message_id == "m-40"
    assert decoded_event(runtime, envelope, source) is first  # type: ignore[arg-type]
    assert decoded_event(runtime, envelope, source) is first  # type: ignore[arg-type]
    assert len(runtime.decoded) == 0  # the third and last taker removed it
