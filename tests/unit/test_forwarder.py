"""The ingest stage's forwarder: one internal record per (integration, partition), contacts stay put."""

from __future__ import annotations

import hashlib

import orjson

from signal_sync.engine.forwarder import Forwarder, partition_of


def contact(n: int) -> str:
    return hashlib.sha256(b"person-%d@example.com" % n).hexdigest()


class RecordingOutputs:
    """Stands in for the OutputProducer: what was sent, per topic."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[int, dict]]] = {"topic-a": [], "topic-b": []}

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int = -1) -> None:
        assert key is None
        self.sent[topic].append((partition, orjson.loads(value)))


def test_a_contact_always_maps_to_one_partition_and_contacts_spread() -> None:
    assert all(partition_of(contact(n), 12) == partition_of(contact(n), 12) for n in range(50))
    assert {partition_of(contact(n), 12) for n in range(500)} == set(range(12))
    assert all(0 <= partition_of(contact(n), 5) < 5 for n in range(100))


async def test_envelopes_are_grouped_per_integration_and_partition_in_arrival_order() -> None:
    outputs = RecordingOutputs()
    forwarder = Forwarder(outputs, {"a": "topic-a", "b": "topic-b"}, partitions=4, max_items=5)  # type: ignore[arg-type]
    people = [contact(n) for n in range(3)]
    for step in range(2):
        for person in people:
            forwarder.add("a", person, {"contact": person, "step": step})
    forwarder.add("b", people[0], {"contact": people[0], "step": 9})
    assert forwarder.full
    await forwarder.send(forwarder.take())
    assert not forwarder.full and forwarder.take() == {}
    sent_a = outputs.sent["topic-a"]
    assert sum(len(value["events"]) for _, value in sent_a) == 6
    for partition, value in sent_a:
        assert {partition_of(e["contact"], 4) for e in value["events"]} == {partition}
        steps = {}
        for envelope in value["events"]:  # each contact's events keep their order
            steps.setdefault(envelope["contact"], []).append(envelope["step"])
        assert all(s == sorted(s) for s in steps.values())
    assert outputs.sent["topic-b"] == [
        (partition_of(people[0], 4), {"events": [{"contact": people[0], "step": 9}]})
    ]
