"""Batch the ingest stage's envelopes into few internal-topic records.

Each record an agent consumes or produces costs Faust and aiokafka far more CPU than the
work on it, so the ingest agent does not send one internal record per event and
integration: it collects envelopes per (integration, partition) and sends each group as one
record ``{"events": [envelope, ...]}`` when ``max_items`` have piled up or the linger ends.
The records go through the worker's librdkafka producer (``streams/output_producer.py``,
flushed before every commit), whose own threads write them: aiokafka wrote them from the
event loop's thread (3% of the worker's CPU in its socket writes alone).
The partition comes from the contact id (a sha256 in hex, so already uniform): every
event of a contact lands in the same partition, in order, as key-based partitioning would
give, and the destination-state table stays co-partitioned with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from signal_sync.streams.output_producer import OutputProducer


def partition_of(contact_id: str, partitions: int) -> int:
    """The internal partition of a contact: stable across workers and restarts."""
    return int(contact_id[:15], 16) % partitions


@dataclass
class Forwarder:
    """Envelopes waiting to be sent to the integrations' internal topics."""

    outputs: OutputProducer
    topics: dict[str, str]
    """Internal topic name per integration."""
    partitions: int
    max_items: int
    _groups: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict, init=False)
    _count: int = field(default=0, init=False)

    def add(self, integration_id: str, contact_id: str, envelope: dict[str, Any]) -> None:
        group = (integration_id, partition_of(contact_id, self.partitions))
        self._groups.setdefault(group, []).append(envelope)
        self._count += 1

    @property
    def full(self) -> bool:
        return self._count >= self.max_items

    def take(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """Everything added so far, as one group per (integration, partition); empties the forwarder."""
        groups, self._groups, self._count = self._groups, {}, 0
        return groups

    async def send(self, groups: dict[tuple[str, int], list[dict[str, Any]]]) -> None:
        """Hand each group to the producer as one record (flushed before any commit), as JSON: the
        delivery agents read the internal topics with the orjson codec."""
        for (integration_id, partition), envelopes in groups.items():
            await self.outputs.send(
                self.topics[integration_id], None, orjson.dumps({"events": envelopes}), partition
            )
