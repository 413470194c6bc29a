"""Mailgun's per-domain unsubscribe suppression list, as ``/v3/{domain}/unsubscribes`` keeps it.

An address on a domain's list is never sent to from that domain (for the tag ``*``) or for
messages with one of its tags, whatever mailing list it belongs to. One record per address
and domain: ``{"address", "tags", "created_at"}`` (RFC 2822 date). Adding an address that is
already there adds the new tags to the record and moves ``created_at`` to the new event (the
documentation does not say; the emulator keeps one record per address, as the single-record
lookup implies). Addresses match case-insensitively and keep the form first sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

ALL_TAGS = "*"
CREATED_AT_FORMAT = "%a, %d %b %Y %H:%M:%S UTC"


class BadDate(ValueError):
    """A ``created_at`` that is not an RFC 2822 date."""


def rfc2822(value: str | None) -> str:
    """``created_at`` as Mailgun writes it; the current time when None."""
    if value is None or value.strip() == "":
        when = datetime.now(UTC)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise BadDate(value) from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime(CREATED_AT_FORMAT)


@dataclass
class Unsubscribe:
    """One address on a domain's unsubscribe list."""

    address: str
    created_at: str
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "tags": list(self.tags), "created_at": self.created_at}


class UnsubscribeStore:
    """The unsubscribe lists of the account's sending domains (only those given at creation)."""

    def __init__(self, domains: tuple[str, ...]) -> None:
        self.domains = domains
        self.clear()

    def clear(self) -> None:
        self.tables: dict[str, dict[str, Unsubscribe]] = {d.lower(): {} for d in self.domains}

    def table(self, domain: str) -> dict[str, Unsubscribe] | None:
        return self.tables.get(domain.lower())

    @staticmethod
    def add(table: dict[str, Unsubscribe], address: str, tags: list[str], created_at: str) -> Unsubscribe:
        """Put ``address`` on the list for ``tags`` (``*`` when empty); returns the record."""
        record = table.get(address.lower())
        if record is None:
            record = table[address.lower()] = Unsubscribe(address=address, created_at=created_at)
        record.created_at = created_at
        for tag in tags or [ALL_TAGS]:
            if tag not in record.tags:
                record.tags.append(tag)
        return record

    @staticmethod
    def remove(table: dict[str, Unsubscribe], address: str, tag: str | None) -> Unsubscribe | None:
        """Take ``address`` off the list (only ``tag`` when given; the record goes with its last
        tag); None when it is not there (or not for ``tag``)."""
        record = table.get(address.lower())
        if record is None or (tag is not None and tag not in record.tags):
            return None
        if tag is not None:
            record.tags.remove(tag)
        if tag is None or not record.tags:
            del table[address.lower()]
        return record

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every domain's records, alphabetically (as Mailgun lists them)."""
        return {
            domain: [table[key].to_json() for key in sorted(table)]
            for domain, table in zip(self.domains, self.tables.values(), strict=True)
        }
