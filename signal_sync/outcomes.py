"""Building outcome records, and the source record that outcomes and dead letters point back to.

Outcomes are built as plain dicts and serialized with orjson on the hot path; the
pydantic ``Outcome`` model in ``streams.records`` is the contract they follow (tests
validate them against it and docs/schemas is generated from it).

An outcome is bounded whatever the input: the texts an input controls are bounded where they
are made (ids and event names at decode, ``streams.records.MAX_ID_CHARS``; error texts by
``destinations.delivery.short_text``), and its dead letter (``signal_sync.dead_letters``) keeps
only as much of the original record as fits its topic. So an outcome can always be written, which
is what lets every event have one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from signal_sync.destinations import Integration
from signal_sync.identity import ResolvedEvent, contact_id
from signal_sync.streams.records import OUTCOME_SCHEMA, SignalEvent

if TYPE_CHECKING:
    from signal_sync.engine.jobs import JobResult

DELIVERY_NAMESPACE = uuid.UUID("6f1c1f0e-52a4-4f0e-9a55-5f1c3c1d2e77")


_NAMESPACE_BYTES = DELIVERY_NAMESPACE.bytes


def delivery_id(message_id: str, integration_id: str) -> str:
    """Same message and integration → same id, so a replayed delivery is recognisable downstream.

    Exactly ``uuid5(DELIVERY_NAMESPACE, message_id NUL integration_id)``, computed without building
    a ``UUID`` object: it runs twice per event and ``uuid.uuid5`` costs five times as much."""
    digest = bytearray(
        hashlib.sha1(
            _NAMESPACE_BYTES + f"{message_id}\x00{integration_id}".encode(), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def iso_utc(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds. Runs for every outcome: the date and time up to the second
    are formatted once per second."""
    second = int(timestamp)
    micros = round((timestamp - second) * 1_000_000)  # as datetime.fromtimestamp rounds
    if micros == 1_000_000:
        second, micros = second + 1, 0
    return f"{_utc_second(second)}.{micros // 1000:03d}Z"


def event_timestamp(event: SignalEvent | None) -> str | None:
    """The event's own timestamp (decoding holds it in UTC), as RFC 3339 with ``Z``."""
    if event is None or event.timestamp is None:
        return None
    return event.timestamp.replace(tzinfo=None).isoformat() + "Z"


class SourceRecord(NamedTuple):
    """An input record: where it came from and what it held. A dead letter is this record, unchanged.

    A named tuple (immutable, compared by value): one is made per source record in the ingest stage
    and per event and integration in the delivery stage, and a tuple is made in a quarter of the
    time a frozen dataclass's seven ``object.__setattr__`` calls take."""

    topic: str
    partition: int | None
    offset: int | None
    timestamp_ms: float | None
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def position(self) -> tuple[str, int | None, int | None]:
        """Topic, partition and offset: what identifies the record (the event hand-off's key)."""
        return (self.topic, self.partition, self.offset)


def keyed_contact_id(key: bytes, email: str) -> str:
    """HMAC-SHA256 of the normalized email under ``key``, in hex: a contact id that only the key's
    holders can compute from an address (``outcomes.contact_id_key``)."""
    return hmac.new(key, email.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class OutcomeBuilder:
    """Makes outcome dicts; knows whether plaintext emails may appear in them and how their
    ``contact_id`` is made (the sha256 of the email, or keyed with ``contact_id_key``)."""

    include_email: bool = False
    contact_id_key: bytes | None = None

    def contact_id_of(self, email: str) -> str:
        """The ``contact_id`` an outcome carries for this normalized email."""
        if self.contact_id_key is None:
            return contact_id(email)
        return keyed_contact_id(self.contact_id_key, email)

    def build(
        self,
        *,
        message_id: str,
        integration: Integration,
        event_name: str | None,
        email: str | None,
        status: str,
        reason: str | None,
        source: SourceRecord,
        now: float,
        event: SignalEvent | None = None,
        http_status: int | None = None,
        created: bool | None = None,
        attempts: int = 0,
        hint: str | None = None,
        error: str | None = None,
        operation: str | None = None,
        segments_added: tuple[int, ...] | list[int] | None = None,
    ) -> dict[str, Any]:
        """One outcome record for (event, integration); ``operation`` for what the delivery stage did,
        ``segments_added`` for an event with segments (the segments its contact was added to)."""
        record: dict[str, Any] = {
            "schema": OUTCOME_SCHEMA,
            "delivery_id": delivery_id(message_id, integration.id),
            "message_id": message_id,
            "integration": integration.id,
            "destination": integration.type,
            "event": event_name,
            "contact_id": self.contact_id_of(email) if email else None,
            "status": status,
            "reason": reason,
            "http_status": http_status,
            "created": created,
            "attempts": attempts,
            "event_timestamp": event_timestamp(event),
            "completed_at": iso_utc(now),
            "latency_ms": round(now * 1000 - source.timestamp_ms, 1) if source.timestamp_ms else None,
            "hint": hint,
            "error": error,
        }
        if operation is not None:
            record["operation"] = operation
        if segments_added is not None:
            record["segments_added"] = list(segments_added)
        if self.include_email and email:
            record["email"] = email
        return record

    def build_each(
        self,
        reasons: Sequence[tuple[Integration, str | None]],
        *,
        message_id: str,
        event_name: str | None,
        email: str | None,
        status: str,
        source: SourceRecord,
        now: float,
        event: SignalEvent | None = None,
        error: str | None = None,
        operation: str | None = None,
    ) -> list[dict[str, Any]]:
        """``build``'s outcomes of one record for several integrations, one per (integration, reason)
        and otherwise alike (the ingest stage's drops and invalid records): the first is built, the
        others are copies of it with their own ids and reason, so the contact id and the timestamps
        are computed once per record (a copy keeps the keys' order: the same JSON as ``build``)."""
        records: list[dict[str, Any]] = []
        for integration, reason in reasons:
            if not records:
                records.append(
                    self.build(
                        message_id=message_id,
                        integration=integration,
                        event_name=event_name,
                        email=email,
                        status=status,
                        reason=reason,
                        source=source,
                        now=now,
                        event=event,
                        error=error,
                        operation=operation,
                    )
                )
                continue
            record = dict(records[0])
            record["delivery_id"] = delivery_id(message_id, integration.id)
            record["integration"] = integration.id
            record["destination"] = integration.type
            record["reason"] = reason
            records.append(record)
        return records

    def dropped(
        self,
        drops: Sequence[tuple[Integration, str | None]],
        resolved: ResolvedEvent,
        source: SourceRecord,
        now: float,
    ) -> list[dict[str, Any]]:
        """The ingest stage's ``dropped`` outcomes of one valid event, one per (integration, reason)."""
        event = resolved.event
        assert event.message_id is not None
        return self.build_each(
            drops,
            message_id=event.message_id,
            event_name=resolved.name,
            email=resolved.email,
            status="dropped",
            source=source,
            now=now,
            event=event,
        )

    def delivery(
        self,
        integration: Integration,
        resolved: ResolvedEvent,
        done: JobResult,
        source: SourceRecord,
        now: float,
        *,
        erasure: bool = False,
    ) -> dict[str, Any]:
        """The outcome of an event's delivery to one integration (the delivery stage's), as its job
        ended; an erasure's names no event."""
        assert resolved.event.message_id is not None
        return self.build(
            message_id=resolved.event.message_id,
            integration=integration,
            event_name=None if erasure else resolved.name,
            email=resolved.email,
            status=done.status,
            reason=done.reason,
            source=source,
            now=now,
            event=None if erasure else resolved.event,
            http_status=done.http_status,
            created=done.created,
            attempts=done.attempts,
            hint=done.hint,
            error=done.error,
            operation=done.operation,
            segments_added=done.segments_added,
        )


def encode(record: dict[str, Any]) -> bytes:
    """Records go on the wire as compact JSON."""
    return orjson.dumps(record)
