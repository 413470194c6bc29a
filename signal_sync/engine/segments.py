"""Adding the contacts of delivered upserts to the destination's segments (Mautic's ``segments``).

``add_to_segments`` takes, per delivered upsert, the contact id its answer carried and the
segments its event adds to, and makes one call per segment: the single add for one contact, the
bulk add for several (a contact wanted twice in one segment is sent once). Segments go at once,
each call through the integration's gate (retries, pause, hold), like every other call.

A bulk add accepted as a whole answers per contact id; ``classify_member`` decides: added, this
contact's failure (``false``: deleted since its upsert, or not editable), or sent again alone (no
readable entry). A call that fails as a whole fails every contact it carried, with the reason the
answer gave (``segment_not_found`` for a deleted segment: the event's failure, never a pause).
Nothing here raises for one call's trouble.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from signal_sync.destinations import Integration, SegmentFormat
from signal_sync.destinations.base import Request
from signal_sync.destinations.classify import Verdict, classify_member
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mautic_segments import SEGMENT_NO_CONTACT_ID

Send = Callable[[Request], Awaitable[DeliveryResult]]


@dataclass(frozen=True, slots=True)
class Wanted:
    """One delivered upsert's contact id (None: its answer had none) and its event's segments."""

    contact: int | None
    segments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Added:
    """How one upsert's segment adds ended: the segments the contact is now in (in the order
    wanted), the first add that failed (its hint says what to do), and the attempts they took."""

    segments: tuple[int, ...]
    failure: DeliveryResult | None
    attempts: int


def plan_calls(wants: list[Wanted]) -> dict[int, list[int]]:
    """Per segment, in first-wanted order, the contact ids to add (each once)."""
    calls: dict[int, dict[int, None]] = {}
    for want in wants:
        if want.contact is None:
            continue
        for segment in want.segments:
            calls.setdefault(segment, {})[want.contact] = None
    return {segment: list(contacts) for segment, contacts in calls.items()}


def _refused_member(whole: DeliveryResult, reason: str | None, segment: int, contact: int) -> DeliveryResult:
    error = f"Mautic answered success: false for contact {contact} in segment {segment}"
    return DeliveryResult("failed", whole.http_status, None, whole.attempts, reason, error, None)


async def add_to_segments(
    integration: Integration, fmt: SegmentFormat, send: Send, wants: list[Wanted]
) -> list[Added]:
    """One ``Added`` per ``Wanted``, in order (see the module's docstring)."""
    answers: dict[tuple[int, int], DeliveryResult] = {}

    async def one_segment(segment: int, contacts: list[int]) -> None:
        if len(contacts) == 1:
            answers[(segment, contacts[0])] = await send(
                fmt.single_request(integration, segment, contacts[0])
            )
            return
        whole = await send(fmt.bulk_request(integration, segment, contacts))
        if whole.status != "delivered":
            answers.update(((segment, contact), whole) for contact in contacts)
            return
        again = []
        for contact, flag in zip(contacts, fmt.members_added(whole.reply, contacts), strict=True):
            decision = classify_member(flag)
            if decision.verdict is Verdict.DELIVERED:
                answers[(segment, contact)] = dataclasses.replace(whole, reply=b"")
            elif decision.verdict is Verdict.FAILED:
                answers[(segment, contact)] = _refused_member(whole, decision.reason, segment, contact)
            else:
                again.append(contact)
        for contact in again:  # one at a time: rare, and the gate bounds the calls anyway
            alone = await send(fmt.single_request(integration, segment, contact))
            answers[(segment, contact)] = dataclasses.replace(alone, attempts=alone.attempts + whole.attempts)

    await asyncio.gather(*(one_segment(segment, contacts) for segment, contacts in plan_calls(wants).items()))
    return [_added(fmt, want, answers) for want in wants]


def _added(fmt: SegmentFormat, want: Wanted, answers: dict[tuple[int, int], DeliveryResult]) -> Added:
    if want.contact is None:
        if not want.segments:
            return Added((), None, 0)
        segment = want.segments[0]
        reason = SEGMENT_NO_CONTACT_ID
        failure = DeliveryResult("failed", None, None, 0, reason, None, fmt.hint(reason, segment))
        return Added((), failure, 0)
    added: list[int] = []
    failure: DeliveryResult | None = None
    attempts = 0
    for segment in want.segments:
        answer = answers[(segment, want.contact)]
        attempts += answer.attempts
        if answer.status == "delivered":
            added.append(segment)
        elif failure is None:
            failure = dataclasses.replace(answer, hint=fmt.hint(answer.reason, segment) or answer.hint)
    return Added(tuple(added), failure, attempts)
