"""Batch the ingest stage's envelopes into few internal-topic records, each bounded in bytes.

Each record an agent consumes or produces costs Faust and aiokafka far more CPU than the
work on it, so the ingest agent does not send one internal record per event and
integration: it collects envelopes per (integration, partition) and sends each group as a
record ``{"events": [envelope, ...]}`` when ``max_items`` have piled up or the linger ends.
The records go through the worker's librdkafka producer (``streams/output_producer.py``,
flushed before every commit), whose own threads write them: aiokafka wrote them from the
event loop's thread (3% of the worker's CPU in its socket writes alone).
The partition comes from the contact id (a sha256 in hex, so already uniform): every
event of a contact lands in the same partition, in order, as key-based partitioning would
give, and the destination-state table stays co-partitioned with it.

A record may not exceed what the internal topics accept (``OutputProducer.record_limit``).
``encode`` serializes each group in one call (orjson's cost is mostly per call, so one call
per group is cheaper than one per envelope) and shares the bytes between the integrations
whose group in a partition holds the same envelopes. A group too large for one record is
serialized envelope by envelope and packed into as many records as it needs, in order, on
the same partition; an envelope that cannot fit a record even alone is returned as
``TooLarge`` instead, and the ingest stage gives that event an ``invalid`` outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from signal_sync.streams.output_producer import OutputProducer

RECORD_HEAD = b'{"events":['
RECORD_TAIL = b"]}"
FRAMING_BYTES = len(RECORD_HEAD) + len(RECORD_TAIL)
MAX_PENDING_BYTES = 8 * 1024 * 1024
"""Input bytes the forwarder holds before it counts as full, whatever ``max_items`` says: bounds
its memory when large events come in a burst."""

Groups = dict[tuple[str, int], list[dict[str, Any]]]
"""Envelopes per (integration id, partition), in the order added."""
Records = list[tuple[str, int, bytes]]
"""Internal records to send: integration id, partition, value."""


def partition_of(contact_id: str, partitions: int) -> int:
    """The internal partition of a contact: stable across workers and restarts."""
    return int(contact_id[:15], 16) % partitions


class EventTooLargeError(ValueError):
    """An envelope that does not fit an internal record even alone."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the event's envelope (its record and stitched traits) is {size} bytes, "
            f"over the {limit}-byte limit of an internal record"
        )
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TooLarge:
    """An envelope left out of the records of one integration: it cannot fit one alone."""

    integration_id: str
    envelope: dict[str, Any]
    error: EventTooLargeError


@dataclass
class Forwarder:
    """Envelopes waiting to be sent to the integrations' internal topics."""

    outputs: OutputProducer
    topics: dict[str, str]
    """Internal topic name per integration."""
    partitions: int
    max_items: int
    max_record_bytes: int = field(init=False)
    """The largest record every internal topic accepts (read from ``outputs``)."""
    _groups: Groups = field(default_factory=dict, init=False)
    _count: int = field(default=0, init=False)
    _bytes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.max_record_bytes = min(
            (self.outputs.record_limit(topic) for topic in self.topics.values()),
            default=self.outputs.default_limit,
        )

    @property
    def max_envelope_bytes(self) -> int:
        """The largest serialized envelope that fits a record alone."""
        return self.max_record_bytes - FRAMING_BYTES

    def add(
        self, integration_ids: Sequence[str], contact_id: str, envelope: dict[str, Any], size_hint: int = 0
    ) -> None:
        """Queue one event's envelope for each of ``integration_ids`` (never changed afterwards: the
        groups share it). ``size_hint``: the bytes of the record it was made from."""
        partition = partition_of(contact_id, self.partitions)
        groups = self._groups
        for integration_id in integration_ids:
            envelopes = groups.get((integration_id, partition))
            if envelopes is None:
                groups[(integration_id, partition)] = [envelope]
            else:
                envelopes.append(envelope)
        self._count += len(integration_ids)
        self._bytes += size_hint

    @property
    def full(self) -> bool:
        return self._count >= self.max_items or self._bytes >= MAX_PENDING_BYTES

    def take(self) -> Groups:
        """Everything added so far, one group per (integration, partition); empties the forwarder."""
        groups, self._groups, self._count, self._bytes = self._groups, {}, 0, 0
        return groups

    def encode(self, groups: Groups) -> tuple[Records, list[TooLarge]]:
        """The records that carry ``groups``, each within ``max_record_bytes``, in order per
        (integration, partition); and the envelopes that cannot fit one alone (left out)."""
        records: Records = []
        refused: list[TooLarge] = []
        shared: dict[int, tuple[list[dict[str, Any]], bytes]] = {}
        for (integration_id, partition), envelopes in groups.items():
            same = shared.get(partition)
            if same is not None and same[0] == envelopes:  # identical objects compare without a walk
                value = same[1]
            else:
                value = orjson.dumps({"events": envelopes})
                shared[partition] = (envelopes, value)
            if len(value) <= self.max_record_bytes:
                records.append((integration_id, partition, value))
                continue
            for packed in self._pack(integration_id, envelopes, refused):
                records.append((integration_id, partition, packed))
        return records, refused

    def _pack(
        self, integration_id: str, envelopes: list[dict[str, Any]], refused: list[TooLarge]
    ) -> list[bytes]:
        """A group too large for one record, as consecutive records that each fit."""
        packed: list[bytes] = []
        run: list[bytes] = []
        size = FRAMING_BYTES - 1  # a record: its framing, and per envelope the envelope and a comma, less one
        for envelope in envelopes:
            encoded = orjson.dumps(envelope)
            if len(encoded) > self.max_envelope_bytes:
                refused.append(
                    TooLarge(
                        integration_id, envelope, EventTooLargeError(len(encoded), self.max_envelope_bytes)
                    )
                )
                continue
            if run and size + 1 + len(encoded) > self.max_record_bytes:
                packed.append(RECORD_HEAD + b",".join(run) + RECORD_TAIL)
                run, size = [], FRAMING_BYTES - 1
            run.append(encoded)
            size += 1 + len(encoded)
        if run:
            packed.append(RECORD_HEAD + b",".join(run) + RECORD_TAIL)
        return packed

    async def send(self, records: Records) -> None:
        """Hand each record to the producer (flushed before any commit), as JSON: the delivery
        agents read the internal topics with the orjson codec."""
        for integration_id, partition, value in records:
            await self.outputs.send(self.topics[integration_id], None, value, partition)
