"""What the delivery stage does for one event and integration, decided purely from the event, the
contact's remembered destination state and the config.

``plan_delivery`` gives one of:

* ``Drop``: nothing is sent (a withdrawal for a person already withdrawn);
* ``Upsert``: one item of the destination's upsert (a Mautic contact body, a Mailgun member),
  which the delivery layer sends alone or in a bulk call, and the state the contact has once it
  is delivered (before its answer is read: Mautic's contact id comes from the answer, ``settle``);
* ``Steps``: an operation of several calls that depend on the answers (a lookup, then edits):
  a generator that yields each ``Request``, is sent each call's ``DeliveryResult`` (``delivered``
  or ``absent``; a failed call ends the operation, the delivery layer's business) and returns a
  ``Finish``. The generator does no I/O, so tests drive it with scripted answers.

An erasure is one more ``Steps`` operation, whose ``Finish`` forgets the contact's state.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from signal_sync.destinations.base import DropReason, Operation, Request

if TYPE_CHECKING:
    from signal_sync.destinations.delivery import DeliveryResult

State = dict[str, Any]
"""A contact's destination state as the destination module reads it (``load_state``): small, JSON."""


@dataclass(frozen=True, slots=True)
class Finish:
    """How an operation ended: ``state`` is the contact's state from now on (None: unchanged);
    ``forget``: the contact's state is deleted instead (an erasure: a tombstone in the table's
    changelog); ``shown`` is the answer whose status (and ``created``) the outcome reports
    (default: the last)."""

    status: Literal["delivered", "dropped"]
    reason: DropReason | None = None
    state: State | None = None
    shown: DeliveryResult | None = None
    forget: bool = False


Steps = Generator[Request, "DeliveryResult", Finish]


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing is sent for the event."""

    operation: Operation
    reason: DropReason


@dataclass(frozen=True, slots=True)
class Upsert:
    """One upsert item; ``state``: the contact's state once it is delivered (before ``settle``)."""

    entry: dict[str, Any]
    state: State
    operation: Operation = "upsert"


@dataclass(frozen=True, slots=True)
class Calls:
    """An operation made of calls that depend on each other's answers."""

    operation: Operation
    steps: Steps


Work = Drop | Upsert | Calls
