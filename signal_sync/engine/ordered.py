"""Key-ordered concurrency with commits only for the completed prefix of each partition.

The model is Confluent's Parallel Consumer: many contacts are in flight at once, events of
one contact run strictly one after another, and a partition's offset advances only over
the contiguous run of completed events, so a crash never skips an unfinished one. Faust
commits past holes when acks arrive out of offset order (faust-streaming #606) and
``agent(concurrency>1)`` shares one queue across partitions, so the agent reads with
``stream.noack()`` in one coroutine and this scheduler acks strictly in offset order.

One slow contact holds back only its own later events (and the commit point of its
partition), never the other contacts.
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
        try:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(previous)
            await handler(pending.event)
        except asyncio.CancelledError:  # abandoned at shutdown: never acked, so delivered again
            self._release(key)
            raise
        except Exception:  # handlers turn failures into outcomes; anything else is a bug to see
            log.exception("event handler raised at offset %s; acked without an outcome", pending.offset)
        pending.done = True
        self._release(key)
        await self._ack_prefix(partition)

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
