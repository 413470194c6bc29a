"""Batch the ingest stage's envelopes into few internal-topic records.

Each record an agent consumes or produces costs Faust and aiokafka far more CPU than the
work on it, so the ingest agent does not send one internal record per event and
integration: it collects envelopes per (integration, partition) and sends each group as one
record ``{"events": [envelope, ...]}`` when ``max_items`` have piled up or the linger ends.
The partition comes from the contact id (a sha256 in hex, so already uniform): every
event of a contact lands in the same partition, in order, as key-based partitioning would
give, and the destination-state table stays co-partitioned with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust


def partition_of(contact_id: str, partitions: int) -> int:
    """The internal partition of a contact: stable across workers and restarts."""
    return int(contact_id[:15], 16) % partitions


@dataclass
class Forwarder:
    """Envelopes waiting to be sent to the integrations' internal topics."""

    topics: dict[str, faust.TopicT]
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
        """Hand each group to the producer as one record (Faust flushes it before any commit)."""
        for (integration_id, partition), envelopes in groups.items():
            await self.topics[integration_id].send(partition=partition, value={"events": envelopes})
