"""Record headers that route a record: a replayed dead letter is addressed to one integration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REPLAY_HEADER = "signal-sync-replay-integration"


def replay_target(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> str | None:
    """The integration id a replayed record is for, or None for a normal record (all integrations)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == REPLAY_HEADER and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
