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
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
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


@dataclass
class KeyOrderedScheduler:
    """Run ``handler(event)`` per event: concurrent across keys, sequential within a key.

    ``submit`` waits while ``max_in_flight`` events are running, which stops the agent
    from reading further and lets Faust pause fetching for this topic alone.
    """

    ack: Ack
    max_in_flight: int = 64
    fail: Fail | None = None
    halt: Halt | None = None
    _slots: asyncio.Semaphore = field(init=False)
    _tails: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _pending: dict[Hashable, deque[_Pending]] = field(default_factory=dict, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _ack_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)

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
    ) -> None:
        """Queue one event; returns once it is scheduled (not finished)."""
        await self._slots.acquire()
        pending = _Pending(offset, event)
        self._pending.setdefault(partition, deque()).append(pending)
        previous = self._tails.get(key)
        task = asyncio.create_task(self._run(partition, key, pending, previous, handler))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        partition: Hashable,
        key: Hashable,
        pending: _Pending,
        previous: asyncio.Task[None] | None,
        handler: Callable[[Any], Awaitable[None]],
    ) -> None:
        try:  # cancelled (abandoned at shutdown): never acked, so delivered again
            finished = await self._handle(pending, previous, handler)
        finally:
            self._release(key)
        if finished:
            pending.done = True
            await self._ack_prefix(partition)

    async def _handle(
        self,
        pending: _Pending,
        previous: asyncio.Task[None] | None,
        handler: Callable[[Any], Awaitable[None]],
    ) -> bool:
        """Run the handler after the key's previous event; True once the event has its outcome."""
        if previous is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(previous)
        try:
            await handler(pending.event)
        except Exception as exc:  # handlers turn failures into outcomes; this is a bug to see
            log.error(
                "event handler raised at offset %s; recording it as failed", pending.offset, exc_info=exc
            )
            return await self._failed(pending, exc)
        return True

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

    def _release(self, key: Hashable) -> None:
        if self._tails.get(key) is asyncio.current_task():
            del self._tails[key]
        self._slots.release()

    async def _ack_prefix(self, partition: Hashable) -> None:
        """Ack the contiguous completed head of the partition, in offset order."""
        async with self._ack_lock:
            queue = self._pending.get(partition)
            while queue and queue[0].done:
                await self.ack(queue.popleft().event)

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
