"""The ingest stage's forwarder: records per integration and partition, bounded in bytes, in order."""

from __future__ import annotations

import hashlib

import orjson
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.engine.forwarder import FRAMING_BYTES, Forwarder, TooLarge, partition_of
from tests.property.profiles import PROFILE


def contact(n: int) -> str:
    return hashlib.sha256(b"person-%d@example.com" % n).hexdigest()


class RecordingOutputs:
    """Stands in for the OutputProducer: its record limit, and what was sent, per topic."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.default_limit = limit
        self.sent: dict[str, list[tuple[int, bytes]]] = {"topic-a": [], "topic-b": []}

    def record_limit(self, topic: str) -> int:
        return self.default_limit

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int = -1) -> None:
        assert len(value) <= self.default_limit
        assert key is None
        self.sent[topic].append((partition, value))

    def events(self, topic: str) -> list[tuple[int, dict]]:
        return [(partition, orjson.loads(value)) for partition, value in self.sent[topic]]


async def send_all(forwarder: Forwarder) -> list[TooLarge]:
    records, refused = forwarder.encode(forwarder.take())
    await forwarder.send(records)
    return refused


def forwarder_for(outputs: RecordingOutputs, max_items: int = 500, partitions: int = 4) -> Forwarder:
    return Forwarder(outputs, {"a": "topic-a", "b": "topic-b"}, partitions=partitions, max_items=max_items)  # type: ignore[arg-type]


def test_a_contact_always_maps_to_one_partition_and_contacts_spread() -> None:
    assert all(partition_of(contact(n), 12) == partition_of(contact(n), 12) for n in range(50))
    assert {partition_of(contact(n), 12) for n in range(500)} == set(range(12))
    assert all(0 <= partition_of(contact(n), 5) < 5 for n in range(100))


async def test_envelopes_are_grouped_per_integration_and_partition_in_arrival_order() -> None:
    outputs = RecordingOutputs()
    forwarder = forwarder_for(outputs, max_items=5)
    people = [contact(n) for n in range(3)]
    for step in range(2):
        for person in people:
            forwarder.add(["a"], person, {"contact": person, "step": step})
    forwarder.add(["b"], people[0], {"contact": people[0], "step": 9})
    assert forwarder.full
    await send_all(forwarder)
    assert not forwarder.full and forwarder.take() == {}
    sent_a = outputs.events("topic-a")
    assert sum(len(value["events"]) for _, value in sent_a) == 6
    for partition, value in sent_a:
        assert {partition_of(e["contact"], 4) for e in value["events"]} == {partition}
        steps = {}
        for envelope in value["events"]:  # each contact's events keep their order
            steps.setdefault(envelope["contact"], []).append(envelope["step"])
        assert all(s == sorted(s) for s in steps.values())
    assert outputs.events("topic-b") == [
        (partition_of(people[0], 4), {"events": [{"contact": people[0], "step": 9}]})
    ]


async def test_integrations_whose_group_holds_the_same_envelopes_share_one_serialization() -> None:
    outputs = RecordingOutputs()
    forwarder = forwarder_for(outputs, partitions=1)
    forwarder.add(["a", "b"], contact(1), {"contact": contact(1), "raw": "é"})
    forwarder.add(["a"], contact(2), {"contact": contact(2), "raw": "only a"})
    forwarder.add(["a", "b"], contact(3), {"contact": contact(3), "raw": "both"})
    records, refused = forwarder.encode(forwarder.take())
    assert refused == []
    assert [orjson.loads(value) for _, _, value in records] == [
        {
            "events": [
                {"contact": contact(n), "raw": raw} for n, raw in ((1, "é"), (2, "only a"), (3, "both"))
            ]
        },
        {"events": [{"contact": contact(n), "raw": raw} for n, raw in ((1, "é"), (3, "both"))]},
    ]
    forwarder.add(["a", "b"], contact(1), {"contact": contact(1)})
    (_, _, first), (_, _, second) = forwarder.encode(forwarder.take())[0]
    assert first is second


async def test_an_envelope_that_cannot_fit_a_record_alone_is_left_out_and_its_neighbours_go() -> None:
    outputs = RecordingOutputs(limit=300)
    forwarder = forwarder_for(outputs, partitions=1)
    big = {"contact": contact(1), "raw": "x" * 300}
    forwarder.add(["a", "b"], contact(2), {"contact": contact(2), "seq": 1})
    forwarder.add(["a", "b"], contact(1), big)
    forwarder.add(["a", "b"], contact(3), {"contact": contact(3), "seq": 3})
    refused = await send_all(forwarder)

    assert [(left.integration_id, left.envelope) for left in refused] == [("a", big), ("b", big)]
    error = refused[0].error
    assert error.size == len(orjson.dumps(big)) and error.limit == 300 - FRAMING_BYTES
    assert "bytes" in str(error) and "limit" in str(error)
    for topic in ("topic-a", "topic-b"):
        seqs = [e["seq"] for _, record in outputs.events(topic) for e in record["events"]]
        assert seqs == [1, 3]


def test_large_input_makes_the_forwarder_full_before_max_items() -> None:
    forwarder = forwarder_for(RecordingOutputs(), max_items=10_000)
    for n in range(9):
        forwarder.add(["a"], contact(n), {}, size_hint=900_000)
        assert not forwarder.full
    forwarder.add(["a"], contact(9), {}, size_hint=900_000)
    assert forwarder.full


@PROFILE
@given(
    limit=st.integers(min_value=40, max_value=2_000),
    events=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=7),
            st.integers(min_value=0, max_value=400),
            st.sampled_from([("a",), ("b",), ("a", "b")]),
        ),
        max_size=60,
    ),
)
async def test_records_never_exceed_the_limit_and_keep_every_envelope_once_in_order(
    limit: int, events: list[tuple[int, int, tuple[str, ...]]]
) -> None:
    outputs = RecordingOutputs(limit=limit)
    forwarder = forwarder_for(outputs, partitions=3)
    for seq, (person, padding, takers) in enumerate(events):
        forwarder.add(takers, contact(person), {"contact": contact(person), "seq": seq, "pad": "é" * padding})
    refused = await send_all(forwarder)

    for integration, topic in (("a", "topic-a"), ("b", "topic-b")):
        assert all(len(value) <= limit for _, value in outputs.sent[topic])
        received = [(p, e) for p, record in outputs.events(topic) for e in record["events"]]
        assert all(partition == partition_of(e["contact"], 3) for partition, e in received)
        left_out = {left.envelope["seq"] for left in refused if left.integration_id == integration}
        assert all(len(orjson.dumps(left.envelope)) > limit - FRAMING_BYTES for left in refused)
        wanted = [seq for seq, (_, _, takers) in enumerate(events) if integration in takers]
        assert sorted(e["seq"] for _, e in received) == [seq for seq in wanted if seq not in left_out]
        for partition in range(3):  # a partition's records, read in order, give its events in order
            seqs = [e["seq"] for p, e in received if p == partition]
            assert seqs == sorted(seqs)
