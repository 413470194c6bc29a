"""The event debugger's memory: the last N outcomes per integration, and how to query them.

``RecentOutcomes`` keeps one bounded ring buffer (a ``deque`` with ``maxlen``) per
integration, so a chatty integration cannot push a quiet one's outcomes out. Every entry
gets a sequence number when it is recorded; queries merge the integrations' buffers
newest first by that number. Everything here is in memory, per worker process, and lost
on restart: it is for confirming deliveries while watching, not an audit log (that is
``signal.deliveries``).

Entries are stored as given: the caller (``debugger.install``) redacts them first.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CAPACITY = 200
"""Outcomes kept per integration unless configured otherwise."""

STATUSES = ("delivered", "dropped", "failed", "invalid")
"""Every outcome status, in the order the page lists them."""

_HEX = re.compile(r"^[0-9a-f]{1,64}$")
MIN_CONTACT_PREFIX = 6
"""A contact filter shorter than this would match almost everyone; it is refused."""


class FilterError(ValueError):
    """A query parameter the API cannot use; the message is shown to the caller (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What to return: outcomes of one integration, some statuses, one contact, N per integration.

    ``contact`` is a contact_id (sha256 hex of the normalized email) or a prefix of one of
    at least ``MIN_CONTACT_PREFIX`` characters. Plaintext emails are not accepted so they
    never travel in URLs or access logs: the page hashes them in the browser.
    """

    integration: str | None = None
    statuses: frozenset[str] | None = None
    contact: str | None = None
    limit: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, max_limit: int) -> Filters:
        """Parse ``integration``, ``status`` (comma-separated), ``contact`` and ``limit``.

        Empty values mean "no filter"; ``limit`` is per integration, 1..``max_limit``.
        Raises ``FilterError`` with a message meant for the user.
        """
        integration = (query.get("integration") or "").strip() or None

        statuses: frozenset[str] | None = None
        raw_status = (query.get("status") or "").strip().lower()
        if raw_status:
            wanted = {part.strip() for part in raw_status.split(",") if part.strip()}
            unknown = sorted(wanted - set(STATUSES))
            if unknown:
                raise FilterError(f"unknown status {', '.join(unknown)}; use one of {', '.join(STATUSES)}")
            statuses = frozenset(wanted) or None

        contact = (query.get("contact") or "").strip().lower() or None
        if contact is not None:
            if "@" in contact:
                raise FilterError(
                    "contact must be a contact_id (sha256 hex of the lowercased, trimmed email), "
                    "not an email; the debugger page hashes emails for you"
                )
            if not _HEX.match(contact):
                raise FilterError("contact must be a contact_id: hexadecimal, up to 64 characters")
            if len(contact) < MIN_CONTACT_PREFIX:
                raise FilterError(f"contact must have at least {MIN_CONTACT_PREFIX} hex characters")

        limit: int | None = None
        raw_limit = (query.get("limit") or "").strip()
        if raw_limit:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise FilterError("limit must be a whole number") from None
            if limit < 1:
                raise FilterError("limit must be at least 1")
            limit = min(limit, max_limit)
        return cls(integration=integration, statuses=statuses, contact=contact, limit=limit)

    def matches(self, outcome: Mapping[str, Any]) -> bool:
        """Whether one outcome passes the integration, status and contact filters (not the limit)."""
        if self.integration is not None and outcome.get("integration") != self.integration:
            return False
        if self.statuses is not None and outcome.get("status") not in self.statuses:
            return False
        if self.contact is not None:
            contact_id = outcome.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id.startswith(self.contact):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded outcome with the request behind it, as the worker wrote them (not redacted:
    they stay in memory, and the debugger redacts what it shows); ``seq`` orders entries."""

    seq: int
    outcome: Mapping[str, Any]
    request: Any


class RecentOutcomes:
    """Bounded per-integration ring buffers of recent outcomes; safe to use from several threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._buffers: dict[str, deque[Entry]] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(buffer) for buffer in self._buffers.values())

    @property
    def recorded(self) -> int:
        """How many outcomes were ever recorded (including those since pushed out)."""
        return self._seq

    def record(self, outcome: Mapping[str, Any], request: Any = None) -> Entry:
        """Keep an outcome; the oldest of its integration is dropped once ``capacity`` is reached."""
        integration = str(outcome.get("integration") or "")
        with self._lock:
            self._seq += 1
            entry = Entry(self._seq, outcome, request)
            buffer = self._buffers.get(integration)
            if buffer is None:
                buffer = self._buffers[integration] = deque(maxlen=self.capacity)
            buffer.append(entry)
        return entry

    def integrations(self) -> list[str]:
        """Integrations that have recorded at least one outcome, sorted."""
        with self._lock:
            return sorted(self._buffers)

    def query(self, filters: Filters | None = None) -> list[Entry]:
        """Matching entries, newest first; at most ``filters.limit`` per integration."""
        filters = filters or Filters()
        with self._lock:
            snapshot = {name: list(buffer) for name, buffer in self._buffers.items()}
        selected: list[Entry] = []
        for name, entries in snapshot.items():
            if filters.integration is not None and name != filters.integration:
                continue
            kept = 0
            for entry in reversed(entries):  # newest first within the integration
                if filters.limit is not None and kept >= filters.limit:
                    break
                if filters.matches(entry.outcome):
                    selected.append(entry)
                    kept += 1
        selected.sort(key=lambda entry: entry.seq, reverse=True)
        return selected

    def counts(self) -> dict[str, dict[str, int]]:
        """Outcomes held now, per integration and status (every status present, zeros included)."""
        with self._lock:
            snapshot = {name: list(buffer) for name, buffer in self._buffers.items()}
        return {name: _count_statuses(e.outcome for e in entries) for name, entries in snapshot.items()}

    def forget(self, contact_id: str) -> int:
        """Drop every entry of this contact (its outcome ``contact_id``: an erased person's rows
        and the requests behind them); returns how many were dropped."""
        dropped = 0
        with self._lock:
            for name, buffer in self._buffers.items():
                kept = [entry for entry in buffer if entry.outcome.get("contact_id") != contact_id]
                dropped += len(buffer) - len(kept)
                if len(kept) < len(buffer):
                    self._buffers[name] = deque(kept, maxlen=self.capacity)
        return dropped

    def clear(self) -> None:
        """Forget every entry (sequence numbers keep increasing)."""
        with self._lock:
            self._buffers.clear()


def _count_statuses(outcomes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for outcome in outcomes:
        status = str(outcome.get("status"))
        counts[status] = counts.get(status, 0) + 1
    return counts
