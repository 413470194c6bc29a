"""The pure pipeline: decode → stitch → gate → plan, shared by the worker and ``preview``.

Nothing here does I/O or reads the clock. The worker keeps the two kinds of state in
Faust tables (identities, destination state); preview keeps them in dicts. Both call the
same functions, so preview shows exactly what the worker would send.

Two stages decide. ``decide`` (stage 1, and again in stage 2, which recomputes it from the
envelope) tells per integration a drop reason or an operation: ``withdraw_consent`` when a
consent category the integration requires is explicitly false, the email is valid and the
integration propagates withdrawals (whatever the event's name: any event that says "withdrawn"
for a known address counts), else the contract's gate and ``upsert``. ``plan_delivery`` (stage 2,
with the contact's destination state) turns that into the destination's work: a withdrawal of a
person already withdrawn is dropped, an upsert of a withdrawn person whose consent is granted
again becomes ``restore_consent``. An erasure (``erase``, from the erasures topic, never from an
event) is the destination's erase steps.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.base import DropReason, Operation, Request, consent_withdrawn, gate
from signal_sync.destinations.operations import Calls, Drop, State, Work
from signal_sync.identity import ResolvedEvent, identity_keys, stitch
from signal_sync.streams.records import SignalEvent

Decision = tuple[DropReason, None] | tuple[None, Operation]
"""A drop reason, or the operation to send."""


def decide(resolved: ResolvedEvent, integration: Integration) -> Decision:
    """Whether this integration takes the event, and as which operation."""
    if (
        resolved.email
        and integration.on_consent_withdrawn == "propagate"
        and consent_withdrawn(resolved, integration.consent)
    ):
        return None, "withdraw_consent"
    reason = gate(resolved, integration.field_mapping.events, integration.consent)
    return (reason, None) if reason is not None else (None, "upsert")


@dataclass(frozen=True, slots=True)
class Plan:
    """Per integration, in config order: a drop reason, or None for 'send' (``operations`` says as
    what, in the same order)."""

    resolved: ResolvedEvent
    decisions: tuple[tuple[Integration, DropReason | None], ...]
    learned: dict[str, Any]
    operations: tuple[Operation | None, ...] = ()

    @property
    def to_send(self) -> list[Integration]:
        return [integration for integration, reason in self.decisions if reason is None]


def plan_event(
    event: SignalEvent,
    integrations: Sequence[Integration],
    remembered: Mapping[str, Mapping[str, Any]],
) -> Plan:
    """Stitch the event and decide, per integration, whether it is sent (as which operation) or
    why it is dropped."""
    resolved, learned = stitch(event, remembered)
    decisions = []
    operations = []
    for integration in integrations:
        reason, operation = decide(resolved, integration)
        decisions.append((integration, reason))
        operations.append(operation)
    return Plan(resolved, tuple(decisions), learned, tuple(operations))


def plan_delivery(
    resolved: ResolvedEvent, integration: Integration, operation: Operation, state: State
) -> Work:
    """The destination's work for an event stage 1 decided to send, given the contact's state."""
    destination = destination_of(integration)
    if operation == "erase":
        return Calls(operation, destination.erase(resolved, integration, state))
    if operation == "withdraw_consent":
        if state.get("withdrawn"):  # already sent: a withdrawn person's page views send nothing
            return Drop(operation, "consent_denied")
        return Calls(operation, destination.withdraw(resolved, integration, state))
    if state.get("withdrawn") and integration.consent:  # every required category is true again
        return Calls("restore_consent", destination.restore(resolved, integration, state))
    return destination.upsert(resolved, integration, state)


def remembered_for(event: SignalEvent, lookup: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The stored traits for this event's identity keys, read from a table or dict."""
    return {key: value for key in identity_keys(event) if (value := lookup.get(key))}


REMEMBERED_MAX_BYTES = 16 * 1024
"""Most JSON bytes of traits remembered per identity key. Stitching needs the email and a few
names; a larger value would make every identity's changelog record (and the worker's memory)
as large as the largest trait any producer sends."""


def bounded_traits(traits: Mapping[str, Any], max_bytes: int = REMEMBERED_MAX_BYTES) -> dict[str, Any]:
    """``traits`` as a new dict whose JSON is at most ``max_bytes``: the largest values are left
    out first, so what stitching needs most (the email, names) stays."""
    value = dict(traits)
    if len(orjson.dumps(value)) <= max_bytes:
        return value
    # Compact JSON is "{" + the members joined by "," + "}": each member's size is exact on its own.
    sizes = {name: len(orjson.dumps({name: item})) - 2 for name, item in value.items()}
    total = 1 + sum(sizes.values()) + len(sizes)
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= max_bytes:
            break
        del value[name]
        total -= sizes[name] + 1
    return value


def remember(store: MutableMapping[str, Any], event: SignalEvent, learned: Mapping[str, Any]) -> None:
    """Keep what the event taught us under each of its identity keys (nothing when it taught nothing),
    at most ``REMEMBERED_MAX_BYTES`` of it (``bounded_traits``).

    The keys share one value: values are only ever read and replaced, never changed in place (the
    worker's ``JsonValues`` then encodes it once and stores one bytes object under every key)."""
    if learned:
        value = bounded_traits(learned)
        for key in identity_keys(event):
            store[key] = value


def state_key(integration: Integration, contact: str) -> str:
    """Key of per-contact destination state (Mautic ids, Mailgun vars, withdrawals) for one integration."""
    return f"{integration.id}:{contact}"


def build_request(
    resolved: ResolvedEvent, integration: Integration, state: Mapping[str, Any] | None
) -> Request:
    """The request for an event that passed the gate."""
    return destination_of(integration).build(resolved, integration, state)
