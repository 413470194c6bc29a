"""Key-ordered concurrency with commits only for the completed prefix of each partition.

The model is Confluent's Parallel Consumer: many contacts are in flight at once, events of
one contact run strictly one after another, and a partition's offset advances only over
the contiguous run of completed events, so a crash never skips an unfinished one. Faust
commits past holes when acks arrive out of offset order (faust-streaming #606) and
``agent(concurrency>1)`` shares one queue across partitions, so the agent reads with
``stream.noack()`` in one coroutine and this scheduler acks strictly in offset order.

One slow contact holds back only its own later events (and the commit point of its
partition), never the other contacts.

No event is acked without an outcome. Handlers turn every expected failure into one; a handler
that raises anyway has its event passed to ``fail``, which records an ``internal_error`` outcome,
and only then is the event acked. When that fails too (or there is no ``fail``), the event is
not acked, so its partition's commit point stays before it, and ``halt`` is called: the worker
stops loudly and reads the event again after its restart, rather than stalling in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any

Ack = Callable[[Any], Awaitable[Any]]
Fail = Callable[[Any, Exception], Awaitable[None]]
"""Record the outcome of an event whose handler raised this exception."""
Halt = Callable[[BaseException], Awaitable[None]]
"""Stop the worker: an event could not be given an outcome."""
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    offset: int
    event: Any
    done: bool = False


class _Partition(deque[_Pending]):
    """A partition's unacknowledged events in offset order; ``acking``: a task is acknowledging its
    completed head, and acknowledges every event that completes meanwhile too."""

    __slots__ = ("acking",)

    def __init__(self) -> None:
        super().__init__()
        self.acking = False


if sys.version_info >= (3, 12):

    def _start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run the task's first step now, inside ``submit``, rather than in a later turn of the loop: an
        event's handler goes as far as its first wait (a batch's answer) without a round of the loop."""
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]

else:

    def _start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Python 3.11 has no eager tasks: the first step runs in the loop's next turn."""
        return loop.create_task(coro)


class Slots:
    """The slots of ``max_in_flight`` one item holds: one per event it carries. Its handler gives one
    back as each event finishes (``give_back``), so a record whose other events are done holds
    only the slots of those still running (a contact's event waiting behind the contact's batch in
    flight, say); the rest go when the item ends. Given back before the item started: ignored."""

    __slots__ = ("_scheduler", "held")

    def __init__(self, count: int) -> None:
        self.held = count
        self._scheduler: KeyOrderedScheduler | None = None

    def give_back(self) -> None:
        """One event finished: its slot goes to the next item waiting (none left: nothing)."""
        if self.held > 0 and self._scheduler is not None:
            self.held -= 1
            self._scheduler._release_slots(1)


@dataclass
class KeyOrderedScheduler:
    """Run ``handler(event)`` per event: concurrent across keys, sequential within a key.

    ``submit`` waits while ``max_in_flight`` events are running, which stops the agent
    from reading further and lets Faust pause fetching for this topic alone. An item may hold
    several events (``weight``: a record's events handled by one task, as a count or as ``Slots``
    its handler gives back one by one); it takes that many slots, and one heavier than
    ``max_in_flight`` runs when nothing else does. An item's task starts at once (eagerly, on
    Python 3.12+): it runs inside ``submit`` until its first wait.
    """

    ack: Ack
    max_in_flight: int = 64
    fail: Fail | None = None
    halt: Halt | None = None
    _running: int = field(default=0, init=False)
    """Events submitted and not yet released (the slots ``max_in_flight`` bounds)."""
    _room: deque[tuple[int, asyncio.Future[None]]] = field(default_factory=deque, init=False)
    """Submitters waiting for slots (how many, and the future that hands them over), first come first
    served: released slots pass to the first once it fits."""
    _tails: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _pending: dict[Hashable, _Partition] = field(default_factory=dict, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(
        self,
        partition: Hashable,
        offset: int,
        key: Hashable,
        event: Any,
        handler: Callable[[Any], Awaitable[None]],
        weight: int | Slots = 1,
    ) -> None:
        """Queue one item of ``weight`` events; returns once it is scheduled (not finished)."""
        slots = weight if isinstance(weight, Slots) else Slots(weight)
        if not self._room and self._fits(slots.held):
            self._running += slots.held
        else:
            await self._wait_for_room(slots.held)
        slots._scheduler = self
        pending = _Pending(offset, event)
        queue = self._pending.get(partition)
        if queue is None:
            queue = self._pending[partition] = _Partition()
        queue.append(pending)
        previous = self._tails.get(key)
        task = _start(
            asyncio.get_running_loop(), self._run(partition, key, pending, previous, handler, slots)
        )
        if not task.done():  # a task that ended in its first step has released its key and slot
            self._tails[key] = task
            self._tasks.add(task)  # until its ``_run`` ends (no done callback: one turn of the loop less)

    def _fits(self, weight: int) -> bool:
        return self._running == 0 or self._running + weight <= self.max_in_flight

    async def _wait_for_room(self, weight: int) -> None:
        """Wait for slots: the task that releases enough hands them over (``_release_slots``)."""
        room = asyncio.get_running_loop().create_future()
        waiting = (weight, room)
        self._room.append(waiting)
        try:
            await room
        except asyncio.CancelledError:
            if room.done() and not room.cancelled():
                self._release_slots(weight)  # handed over, but this submitter is gone: pass them on
            else:  # still waiting, unless a release already dropped it as cancelled
                with contextlib.suppress(ValueError):
                    self._room.remove(waiting)
            raise

    def _release_slots(self, weight: int) -> None:
        self._running -= weight
        while self._room:
            wanted, room = self._room[0]
            if room.done():  # its submitter was cancelled
                self._room.popleft()
            elif self._fits(wanted):
                self._room.popleft()
                self._running += wanted
                room.set_result(None)  # the slots go to the first submitter waiting
            else:
                return

    async def _run(
        self,
        partition: Hashable,
        key: Hashable,
        pending: _Pending,
        previous: asyncio.Task[None] | None,
        handler: Callable[[Any], Awaitable[None]],
        slots: Slots,
    ) -> None:
        """Run the handler after the key's previous event; once the event has its outcome, mark it
        done and acknowledge its partition's completed head."""
        try:
            try:  # cancelled (abandoned at shutdown): never acked, so delivered again
                if previous is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(previous)
                try:
                    await handler(pending.event)
                    finished = True
                except Exception as exc:  # handlers turn failures into outcomes; this is a bug to see
                    log.error(
                        "event handler raised at offset %s; recording it as failed",
                        pending.offset,
                        exc_info=exc,
                    )
                    finished = await self._failed(pending, exc)
            finally:
                self._release(key, slots)
            if finished:
                pending.done = True
                await self._ack_prefix(partition)
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _failed(self, pending: _Pending, exc: Exception) -> bool:
        """Record the failure of an event whose handler raised; False when it cannot be recorded
        (then the event is not acked and ``halt`` stops the worker)."""
        if self.fail is not None:
            try:
                await self.fail(pending.event, exc)
                return True
            except Exception as again:
                exc = again
        log.critical(
            "the event at offset %s has no outcome and is not acknowledged: its partition commits no "
            "further; stopping the worker (the event is read again after the restart)",
            pending.offset,
            exc_info=exc,
        )
        if self.halt is not None:
            await self.halt(exc)
        return False

    def _release(self, key: Hashable, slots: Slots) -> None:
        if self._tails.get(key) is asyncio.current_task():
            del self._tails[key]
        held, slots.held = slots.held, 0
        slots._scheduler = None
        self._release_slots(held)

    async def _ack_prefix(self, partition: Hashable) -> None:
        """Ack the contiguous completed head of the partition, in offset order. One task at a time
        acknowledges a partition: while an ack waits, events that complete are left to it (it looks
        at the head again after each ack)."""
        queue = self._pending.get(partition)
        if queue is None or queue.acking:
            return
        queue.acking = True
        try:
            while queue and queue[0].done:
                await self.ack(queue.popleft().event)
        finally:
            queue.acking = False

    def forget(self, partitions: set[Hashable]) -> None:
        """Partitions were revoked: their unacked events belong to the next owner now."""
        for partition in partitions:
            self._pending.pop(partition, None)

    async def drain(self, timeout: float) -> bool:
        """Wait for in-flight events to finish; False if some were still running at the deadline."""
        tasks = set(self._tasks)
        if not tasks:
            return True
        _, still_running = await asyncio.wait(tasks, timeout=timeout)
        return not still_running
