"""One integration's deliveries as jobs, each planned in its contact's order against the contact's
destination state and carried out.

A ``Job`` is one event with the operation stage 1 decided. ``Jobs`` plans it
(``planner.plan_delivery``) with the contact's state at the moment it is the contact's turn, sends
what the plan says, reads the answers into the state and writes that to the ``destination-state``
table (``ContactStates``): the destination modules say what the state is, this module only keeps it.

* Alone (``run``): a drop sends nothing; an upsert is one request; an operation of several calls
  runs its steps one after another, each through the integration's gate (retries, pause, hold),
  and a step that fails ends it as that failure.
* In a batch (``send_batch``, what the ``Batcher`` calls): each contact's jobs are planned in
  order, chaining the state each upsert leaves; its upserts before its first other operation go
  in the bulk call (``engine.batch_send``), and that operation goes alone once the bulk call was
  answered, planned only then, with the state the earlier ones left, and so do the operations and
  drops right after it. From the contact's next upsert on its jobs are ``AGAIN``: the ``Batcher``
  places them into its next batch, where they are planned with the state the operations left and
  their upserts travel in a bulk call again (one request each would cost a round trip per event).
  A contact whose first job is such an operation does not wait for the bulk call, and each contact's
  results are handed to the ``Batcher`` as soon as its own calls are answered (``Group.finish``), so
  an upsert's outcome never waits for another contact's withdrawal.

With segments (a Mautic integration's ``segments``), a delivered upsert (or a re-grant's upsert)
of an event that has segments adds its contact to them (``engine.segments``) before the job's
result is final: alone, right after its upsert; in a batch, once the bulk call was answered, one
call per segment for all of the batch's contacts, before any of these contacts' later operations
go. A failed add fails the job (its upsert stays done, its state kept); ``segments_added`` says
which segments the contact is now in. Without segments none of this runs.

Nothing here raises for one job's trouble: a plan or step that raises is that job's ``failed`` /
``internal_error`` result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from signal_sync.destinations import Integration, destination_of
from signal_sync.destinations.base import CallLog, Operation, Planned, Request
from signal_sync.destinations.delivery import DeliveryResult, exception_text
from signal_sync.destinations.operations import Calls, Drop, State, Upsert, Work
from signal_sync.engine.batcher import AGAIN, Again, Group
from signal_sync.engine.segments import Added, Wanted, add_to_segments
from signal_sync.identity import ResolvedEvent
from signal_sync.planner import plan_delivery, state_key
from signal_sync.streams.changelog import writes_to_partition
from signal_sync.streams.json_table import ValueTooLargeError

log = logging.getLogger(__name__)

Send = Callable[[Request], Awaitable[DeliveryResult]]
"""One request through the integration's gate; never raises for the request's own trouble."""
SendEntries = Callable[[list[Group]], Awaitable[list[list[DeliveryResult]]]]
"""Groups of upsert entries in bulk calls (``batch_send.make_send_batch``): a result per entry."""
INTERNAL_ERROR = "internal_error"


@dataclass(slots=True)
class Job:
    """One event for one integration, and the operation stage 1 decided for it. ``partition``: the
    internal topic's partition the event came from, where its contact's state changelog goes (the
    batch sends it outside the record's own task, so no Faust event says it); None: Faust's
    current event's."""

    resolved: ResolvedEvent
    operation: Operation
    partition: int | None = None

    @property
    def contact(self) -> str:
        assert self.resolved.contact_id is not None
        return self.resolved.contact_id


@dataclass(slots=True)
class JobResult:
    """What an outcome says about a job: the operation carried out (a re-grant of a withdrawn
    person is ``restore_consent`` whatever stage 1 decided) and how it ended; ``shown``: what was
    sent, for the debugger (``view()``), None when nothing was. Treated as a value (a change is a
    ``dataclasses.replace``); not frozen, as a frozen class's construction costs twice as much, and
    one is built per event and integration."""

    operation: Operation | None
    """None: nothing was planned (stage 2 dropped the event: the config changed since stage 1)."""
    status: Literal["delivered", "dropped", "failed"]
    reason: str | None = None
    http_status: int | None = None
    created: bool | None = None
    attempts: int = 0
    hint: str | None = None
    error: str | None = None
    shown: Any = None
    segments_added: tuple[int, ...] | None = None
    """The segments the contact was added to after its upsert; None: the event has no segments."""


def with_segments(done: JobResult, added: Added) -> JobResult:
    """A delivered upsert's result once its segment adds ended: still delivered, or failed with
    the first failed add's reason and hint (the upsert's ``created`` and state note stay)."""
    attempts = done.attempts + added.attempts
    failure = added.failure
    if failure is None:
        return dataclasses.replace(done, attempts=attempts, segments_added=added.segments)
    error = "; ".join(text for text in (failure.error, done.error) if text) or None
    return dataclasses.replace(
        done,
        status="failed",
        reason=failure.reason,
        http_status=failure.http_status,
        attempts=attempts,
        hint=failure.hint,
        error=error,
        segments_added=added.segments,
    )


def result_of(
    operation: Operation, result: DeliveryResult, shown: Any, *, attempts: int | None = None
) -> JobResult:
    """A job that ended with this call's result (delivered or failed)."""
    status: Literal["delivered", "failed"] = "delivered" if result.status == "delivered" else "failed"
    return JobResult(
        operation,
        status,
        None if status == "delivered" else result.reason,
        result.http_status,
        result.created,
        result.attempts if attempts is None else attempts,
        result.hint,
        result.error,
        shown,
    )


def crashed(job: Job, exc: Exception, shown: Any = None) -> JobResult:
    """A job whose plan or steps raised: a bug to see, and this job's failure only."""
    log.exception("planning a delivery raised: operation=%s", job.operation)
    return JobResult(job.operation, "failed", INTERNAL_ERROR, error=exception_text(exc), shown=shown)


class ContactStates:
    """One integration's per-contact state in the ``destination-state`` table (key
    ``{integration}:{contact}``), read and stored as the destination module says."""

    def __init__(self, integration: Integration, table: MutableMapping[str, Any]) -> None:
        self.integration = integration
        self.table = table
        self.destination = destination_of(integration)

    def get(self, contact: str) -> State:
        return self.destination.load_state(self.table.get(state_key(self.integration, contact)))

    def put(self, contact: str, state: State, partition: int | None = None) -> str | None:
        """Store the state (its changelog record on ``partition``, when given); when it is too large
        for the table's changelog, keep the state stored before and return what the outcome says."""
        key = state_key(self.integration, contact)
        try:
            with writes_to_partition(partition) if partition is not None else contextlib.nullcontext():
                self.table[key] = self.destination.dump_state(state)
        except ValueTooLargeError as exc:
            log.warning("destination state not kept: %s", exc, extra={"state_key": key})
            return (
                f"delivered, but the contact's destination state is not remembered ({exc}): its next "
                "event goes on from the state remembered before"
            )
        return None

    def forget(self, contact: str, partition: int | None = None) -> None:
        """Delete the contact's state (an erasure): a tombstone in the changelog (on ``partition``,
        when given), which compaction then drops with every earlier value of the key."""
        key = state_key(self.integration, contact)
        if self.table.get(key) is None:
            return  # never stored on this partition: nothing in its changelog to drop
        with writes_to_partition(partition) if partition is not None else contextlib.nullcontext():
            del self.table[key]


class Jobs:
    """Plans and carries out one integration's jobs (see the module's docstring)."""

    def __init__(
        self,
        integration: Integration,
        states: ContactStates,
        send: Send,
        send_entries: SendEntries | None = None,
    ) -> None:
        self.integration = integration
        self.states = states
        self.send = send
        self.send_entries = send_entries
        self.destination = destination_of(integration)
        fmt = self.destination.segments
        self.segments = fmt if fmt is not None and getattr(integration, "segment_plan", None) else None
        """The destination's segment calls when this integration adds to segments, else None."""

    def plan(self, job: Job, state: State) -> Work:
        return plan_delivery(job.resolved, self.integration, job.operation, state)

    def shown(self, entry: dict[str, Any]) -> Planned:
        """The single request an upsert entry stands for, built when someone looks."""
        return Planned(functools.partial(self.destination.batch.single_request, self.integration, entry))

    def keep(self, job: Job, before: State, after: State) -> str | None:
        """Store ``after`` for the job's contact unless it is the state read (``before``) itself."""
        return None if after is before else self.states.put(job.contact, after, job.partition)

    async def run(self, job: Job) -> JobResult:
        """Plan the job with the contact's state now and carry it out alone."""
        try:
            state = self.states.get(job.contact)
            work = self.plan(job, state)
        except Exception as exc:
            return crashed(job, exc)
        if isinstance(work, Drop):
            return JobResult(work.operation, "dropped", work.reason)
        if isinstance(work, Upsert):
            return await self._upsert(job, work, state)
        return await self._steps(job, work, state)

    async def _upsert(self, job: Job, work: Upsert, state: State) -> JobResult:
        try:
            request = self.destination.batch.single_request(self.integration, work.entry)
        except Exception as exc:
            return crashed(job, exc)
        result = await self.send(request)
        done = result_of(work.operation, result, request)
        if result.status == "delivered":
            note = self.keep(job, state, self.destination.settle(work.state, result))
            if note is not None:
                done = dataclasses.replace(done, error=note)
            done = await self.add_alone(job, result, done)
        return done

    def wanted(self, job: Job, upserted: DeliveryResult) -> Wanted | None:
        """The segment adds a delivered upsert of the job calls for; None: none."""
        if self.segments is None:
            return None
        segments = self.segments.wanted(self.integration, job.resolved.name)
        return Wanted(self.segments.contact_of(upserted), segments) if segments else None

    async def add_alone(self, job: Job, upserted: DeliveryResult, done: JobResult) -> JobResult:
        """``done`` once the job's contact was added to its event's segments (when it has any)."""
        want = self.wanted(job, upserted)
        if want is None or self.segments is None:
            return done
        (added,) = await add_to_segments(self.integration, self.segments, self.send, [want])
        return with_segments(done, added)

    async def _steps(self, job: Job, work: Calls, state: State) -> JobResult:
        """Each call of the operation through the gate, its answer back to the steps, in order."""
        steps, sent, attempts = work.steps, [], 0
        last: DeliveryResult | None = None
        try:
            request = next(steps)
            while True:
                sent.append(request)
                last = await self.send(request)
                attempts += last.attempts
                if last.status == "failed":
                    steps.close()
                    return result_of(work.operation, last, CallLog(tuple(sent)), attempts=attempts)
                request = steps.send(last)
        except StopIteration as stop:
            finish = stop.value
        except Exception as exc:
            return crashed(job, exc, CallLog(tuple(sent)))
        answer = finish.shown or last
        note = None
        if finish.forget:
            self.states.forget(job.contact, job.partition)
        elif finish.state is not None:
            note = self.keep(job, state, finish.state)
        done = JobResult(
            work.operation,
            finish.status,
            finish.reason,
            answer.http_status if answer is not None else None,
            finish.shown.created if finish.shown is not None else None,  # a re-grant's upsert says
            attempts,
            error=note,
            shown=CallLog(tuple(sent)) if sent else None,
        )
        upserted = finish.shown  # a re-grant's upsert: its contact goes to the event's segments too
        if work.operation == "restore_consent" and upserted is not None and upserted.status == "delivered":
            done = await self.add_alone(job, upserted, done)
        return done

    def _goes_alone(self, job: Job) -> bool:
        """Whether the job, planned with its contact's state now, is carried out alone (an operation of
        several calls, or a drop) rather than in a bulk call (an upsert)."""
        try:
            work = self.plan(job, self.states.get(job.contact))
        except Exception:
            return True  # ``run`` plans it again and records what it raises
        if isinstance(work, Calls):
            work.steps.close()
        return not isinstance(work, Upsert)

    async def send_batch(self, groups: list[Group]) -> list[list[JobResult | Again]]:
        """The ``Batcher``'s function: per group (one contact's jobs in order), one result per job, or
        ``AGAIN`` for the jobs after one carried out alone."""
        results: list[list[JobResult | Again | None]] = [[None] * len(group.items) for group in groups]
        bulk: list[tuple[int, list[tuple[int, Upsert]], State]] = []
        alone: list[tuple[int, int]] = []  # (group, its first job carried out alone)
        for g, group in enumerate(groups):
            start = state = self.states.get(group.contact)
            upserts: list[tuple[int, Upsert]] = []
            for i, job in enumerate(group.items):
                try:
                    work = self.plan(job, state)
                except Exception as exc:
                    results[g][i] = crashed(job, exc)
                    continue
                if isinstance(work, Drop):
                    results[g][i] = JobResult(work.operation, "dropped", work.reason)
                elif isinstance(work, Upsert):
                    upserts.append((i, work))
                    state = work.state
                else:  # planned again when it is its turn, with the state the bulk call left
                    work.steps.close()
                    alone.append((g, i))
                    break
            if upserts:
                bulk.append((g, upserts, start))
        waits = {g for g, _, _ in bulk} | {g for g, _ in alone}
        for g, group in enumerate(groups):
            if g not in waits:  # nothing to send: its contact need not wait for the others' calls
                group.finish(results[g])

        async def send_bulk() -> None:
            entry_groups = [
                Group(groups[g].contact, [work.entry for _, work in upserts]) for g, upserts, _ in bulk
            ]
            sent = await self.send_entries(entry_groups) if self.send_entries else []
            wants: list[tuple[tuple[int, int], Wanted]] = []
            for (g, upserts, start), entry_results in zip(bulk, sent, strict=True):
                kept, last = start, None
                for (i, work), result in zip(upserts, entry_results, strict=True):
                    results[g][i] = result_of(work.operation, result, self.shown(work.entry))
                    if result.status == "delivered":
                        kept, last = self.destination.settle(work.state, result), i
                if last is not None and (note := self.keep(groups[g].items[last], start, kept)) is not None:
                    results[g][last] = dataclasses.replace(results[g][last], error=note)  # type: ignore[arg-type]
                if self.segments is not None:
                    for (i, _), result in zip(upserts, entry_results, strict=True):
                        if result.status == "delivered" and (want := self.wanted(groups[g].items[i], result)):
                            wants.append(((g, i), want))
                elif g not in goes_alone:
                    groups[g].finish(results[g])
            if wants:
                adds = await add_to_segments(
                    self.integration, self.segments, self.send, [want for _, want in wants]
                )
                for ((g, i), _), added in zip(wants, adds, strict=True):
                    results[g][i] = with_segments(results[g][i], added)  # type: ignore[arg-type]
            if self.segments is not None:  # a result is final once its segment adds are answered
                for g, _, _ in bulk:
                    if g not in goes_alone:
                        groups[g].finish(results[g])

        goes_alone = {g for g, _ in alone}
        bulk_call = asyncio.ensure_future(send_bulk()) if bulk else None
        in_bulk = {g for g, _, _ in bulk}

        async def rest_alone(g: int, first: int) -> None:
            if bulk_call is not None and g in in_bulk:
                await asyncio.shield(bulk_call)
            jobs, i = groups[g].items, first
            results[g][i] = await self.run(jobs[i])
            i += 1
            while i < len(jobs) and self._goes_alone(jobs[i]):  # no bulk call to wait for
                results[g][i] = await self.run(jobs[i])
                i += 1
            results[g][i:] = [AGAIN] * (len(jobs) - i)
            groups[g].finish(results[g])

        try:
            await asyncio.gather(*([bulk_call] if bulk_call else []), *(rest_alone(g, i) for g, i in alone))
        finally:
            if bulk_call is not None and not bulk_call.done():
                bulk_call.cancel()
        assert all(result is not None for group in results for result in group)
        return results  # type: ignore[return-value]
