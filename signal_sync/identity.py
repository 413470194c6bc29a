"""Who an event is about: email normalization, contact ids and identity stitching.

A ``track`` often carries no traits (the seed's Signed Up example), yet the upsert needs
the email and names from an earlier ``identify``. Stitching merges the latest traits we
know for the event's ``user_id`` and ``anonymous_id`` under the event's own traits (the
event wins). This module is pure: the Faust table that remembers traits lives in the
agents, and preview keeps the same state in a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signal_sync.streams.records import TRAIT_ALIASES, SignalEvent

EVENT_NAMES = {"identify": "Identified", "page": "page"}


def normalize_email(value: Any) -> str | None:
    """Lowercase and trim; anything that is not a non-empty string has no email."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email or None


def contact_id(email: str) -> str:
    """sha256 of the normalized email: a stable key that is not the plaintext address."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


def event_name(event: SignalEvent) -> str:
    """identify → Identified, page → page, track → its ``event``."""
    return EVENT_NAMES.get(event.type) or event.event or ""


def normalize_traits(traits: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase trait keys become snake_case; a snake_case key given too wins."""
    result = {TRAIT_ALIASES.get(key, key): value for key, value in traits.items() if key not in TRAIT_ALIASES}
    for camel, snake in TRAIT_ALIASES.items():
        if camel in traits and snake not in traits:
            result[snake] = traits[camel]
    return result


def identity_keys(event: SignalEvent) -> list[str]:
    """Table keys this event's traits are remembered under."""
    keys = []
    if event.user_id:
        keys.append(f"u:{event.user_id}")
    if event.anonymous_id:
        keys.append(f"a:{event.anonymous_id}")
    return keys


@dataclass(frozen=True, slots=True)
class ResolvedEvent:
    """An event with its stitched traits and normalized email; what mapping works on."""

    event: SignalEvent
    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = field(init=False)
    contact_id: str | None = field(init=False)
    """sha256 of ``email``; both are read several times per event, so they are computed once."""

    def __post_init__(self) -> None:
        email = normalize_email(self.traits.get("email"))
        object.__setattr__(self, "email", email)
        object.__setattr__(self, "contact_id", contact_id(email) if email else None)

    @property
    def name(self) -> str:
        return event_name(self.event)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def own_traits(event: SignalEvent) -> dict[str, Any]:
    """The traits the event itself carries: ``context.traits`` under ``traits``.

    Null and blank values are left out: an event that says ``email: null`` has no email of
    its own, and must neither hide nor erase the one we know.
    """
    merged = {**normalize_traits(event.context.traits), **normalize_traits(event.traits)}
    return {key: value for key, value in merged.items() if _present(value)}


def stitch(
    event: SignalEvent, remembered: Mapping[str, Mapping[str, Any]]
) -> tuple[ResolvedEvent, dict[str, Any]]:
    """Resolve an event against remembered traits.

    ``remembered`` maps identity keys (see :func:`identity_keys`) to their latest traits.
    Returns the resolved event and the traits to remember under each of the event's
    identity keys (empty when the event taught us nothing new).
    """
    keys = identity_keys(event)
    known: dict[str, Any] = {}
    for key in reversed(keys):  # anonymous first, so user-level traits win
        known.update(remembered.get(key) or {})
    own = own_traits(event)
    merged = {**known, **own}
    resolved = ResolvedEvent(event=event, traits=merged)
    learned = merged if own and keys and any(remembered.get(k) != merged for k in keys) else {}
    return resolved, learned
