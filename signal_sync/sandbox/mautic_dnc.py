"""Mautic's do-not-contact (DNC) entries, with the rules of ``LeadBundle/Model/DoNotContact``.

A contact holds a list of entries ``{id, dateAdded, reason, comments, channel, channelId}``;
reasons are ``1`` unsubscribed, ``2`` bounced, ``3`` manual (``0`` means contactable). What an
*add* does depends on what is already there for the channel, exactly as ``addDncForContact``:

* no entry (or only reason-0 ones) → a new entry;
* an entry with the requested reason → nothing changes (not even comments or date);
* an entry with another reason → the first entry of that channel whose reason is not
  ``1`` is rewritten in place (reason, comments, date; id and channelId stay), so a bounce
  entry becomes the caller's entry; an unsubscribed (``1``) entry is never rewritten;
* with a ``channelId`` an existing entry is never rewritten (Mautic compares the channel
  array with the entry's channel string, which never matches).

A *remove* (``removeDncForContact``) deletes the first entry of the channel, whatever its
reason or origin, and reports whether there was one.

The helpers below reproduce the PHP input handling the API applies on the way in: ``(int)``
casts, ``InputHelper::clean`` (``FILTER_SANITIZE_SPECIAL_CHARS``) and ``InputHelper::string``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IS_CONTACTABLE = 0
UNSUBSCRIBED = 1
BOUNCED = 2
MANUAL = 3

_PHP_LEADING_NUMBER = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")
_SPECIAL_CHARS = {ord(c): f"&#{ord(c)};" for c in "'\"<>&"} | {i: f"&#{i};" for i in range(32)}
_TAGS = re.compile(r"\x00|<[^>]*>?")


class NonScalarInput(ValueError):
    """Symfony's ``InputBag::get`` refuses an array or object where a scalar is expected (400)."""

    def __init__(self, name: str) -> None:
        super().__init__(f'Input value "{name}" contains a non-scalar value.')


def php_int(value: Any) -> int:
    """``(int) $value`` for a scalar from a request: numeric prefix of a string, else 0."""
    if value is None or value is False:
        return 0
    if value is True:
        return 1
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) != float("inf") else 0
    if isinstance(value, dict | list):  # (int) of a PHP array: 1 when it has elements
        return 1 if value else 0
    match = _PHP_LEADING_NUMBER.match(str(value))
    if match is None:
        return 0
    number = match.group(1)
    if any(c in number for c in ".eE"):
        return int(float(number))
    return int(number)


def php_string(value: Any) -> str:
    """``(string) $value`` for a scalar from a request."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sanitize_special_chars(value: str) -> str:
    """PHP's ``FILTER_SANITIZE_SPECIAL_CHARS``: ``'"<>&`` and ASCII below 32 as ``&#NN;``."""
    return value.translate(_SPECIAL_CHARS)


def strip_tags(value: str) -> str:
    """``InputHelper::string``: NUL bytes and anything that looks like a tag removed."""
    return _TAGS.sub("", value)


def scalar(body: dict[str, Any], name: str) -> Any:
    """``$request->request->get(name)``: the value, None when absent; non-scalars refused."""
    value = body.get(name)
    if isinstance(value, dict | list):
        raise NonScalarInput(name)
    return value


@dataclass
class DncEntry:
    """One ``lead_donotcontact`` row."""

    id: int
    date_added: str
    reason: int
    comments: str
    channel: str
    channel_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """As the API serializes it (group ``doNotContactList``)."""
        return {
            "id": self.id,
            "dateAdded": self.date_added,
            "reason": self.reason,
            "comments": self.comments,
            "channel": self.channel,
            "channelId": self.channel_id,
        }


def contactable_reason(entries: list[DncEntry], channel: str) -> int:
    """``isContactable``: the reason of the channel's first non-zero entry, else 0."""
    for entry in entries:
        if entry.channel == channel and entry.reason != IS_CONTACTABLE:
            return entry.reason
    return IS_CONTACTABLE


def add_entry(
    entries: list[DncEntry],
    *,
    channel: str,
    reason: int,
    comments: str,
    channel_id: int | None,
    new_id: int,
    now: str,
) -> tuple[str, DncEntry | None]:
    """``addDncForContact``: returns ``("added" | "updated" | "unchanged", the entry touched)``."""
    current = contactable_reason(entries, channel)
    if current == IS_CONTACTABLE:
        entry = DncEntry(new_id, now, reason, comments, channel, channel_id)
        entries.append(entry)
        return "added", entry
    if current == reason or channel_id:
        return "unchanged", None
    for entry in entries:
        if entry.reason != UNSUBSCRIBED and entry.channel == channel:
            entry.reason, entry.comments, entry.date_added = reason, comments, now
            return "updated", entry
    return "unchanged", None


def create_entry(
    entries: list[DncEntry], *, channel: str, reason: int, comments: str, new_id: int, now: str
) -> DncEntry:
    """``createDncRecord``: an entry for a contact being created, whatever is there."""
    entry = DncEntry(new_id, now, reason, comments, channel)
    entries.append(entry)
    return entry


def remove_entry(entries: list[DncEntry], channel: str) -> DncEntry | None:
    """``removeDncForContact`` without a reason: the channel's first entry, removed."""
    for entry in entries:
        if entry.channel == channel:
            entries.remove(entry)
            return entry
    return None
