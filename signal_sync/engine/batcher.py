"""Batching and coalescing of one integration's upserts.

The bottleneck of this service is waiting on destination round trips, so requests are
grouped per integration and flushed when ``max_items`` contacts are waiting or after a
short linger. Several events of one contact inside one window become one upsert equal
to applying them in order (coalescing), and a contact whose batch is in flight waits for
the next batch, so per-contact order holds. Each event still gets its own result.

``send_batch`` may answer ``AGAIN`` for a contact's later items (those after an operation it
carried out alone): they go into the next batch, ahead of the contact's items that arrived
meanwhile, so they travel in a bulk call again instead of one request each.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass
class Group:
    """The coalesced events of one contact in one batch, in arrival order."""

    contact: str
    items: list[Any] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


SendBatch = Callable[[list[Group]], Awaitable[list[Any]]]


class Again:
    """The result of an item to place into the next batch (``AGAIN``), in its contact's order."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "AGAIN"


AGAIN = Again()


@dataclass(frozen=True, slots=True)
class Placed(Generic[R]):
    """An event's result, and where it stood among its contact's events in the batch."""

    result: R
    position: int
    group_size: int

    @property
    def first(self) -> bool:
        return self.position == 0

    @property
    def last(self) -> bool:
        return self.position == self.group_size - 1


class Batcher:
    """Collects items per contact and sends them in batches through ``send_batch``.

    ``send_batch(groups)`` must return, per group in the same order, one result per item, and
    never raise for a destination's answer (exceptions fail every event of the batch). A result of
    ``AGAIN`` places the item into the next batch; once a group's item is ``AGAIN``, every later
    item of that group must be too (the contact's order), and a group's first item never is.
    """

    def __init__(self, send_batch: SendBatch, max_items: int, linger_s: float) -> None:
        self._send_batch = send_batch
        self.max_items = max_items
        self.linger_s = linger_s
        self._open: dict[str, Group] = {}
        self._in_flight: set[str] = set()
        self._waiting: dict[str, deque[tuple[Any, asyncio.Future[Any]]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, contact: str, item: Any) -> Placed[Any]:
        """Queue one item of ``contact``; returns its share of the result once its batch is answered."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._place(contact, item, future)
        return await future

    def _place(self, contact: str, item: Any, future: asyncio.Future[Any]) -> None:
        """Into the contact's open group, or behind its batch in flight (a contact is never in two)."""
        if contact in self._in_flight:
            self._waiting.setdefault(contact, deque()).append((item, future))
            return
        group = self._open.get(contact)
        if group is None:
            group = self._open[contact] = Group(contact)
        group.items.append(item)
        group.futures.append(future)
        if len(self._open) >= self.max_items:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._open:
            return
        groups = list(self._open.values())
        self._open = {}
        self._in_flight.update(group.contact for group in groups)
        task = asyncio.create_task(self._send(groups))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, groups: list[Group]) -> None:
        again: dict[str, list[tuple[Any, asyncio.Future[Any]]]] = {}
        try:
            results = await self._send_batch(groups)
            for group, group_results in zip(groups, results, strict=True):
                for position, (item, future, result) in enumerate(
                    zip(group.items, group.futures, group_results, strict=True)
                ):
                    if result is AGAIN:
                        again.setdefault(group.contact, []).append((item, future))
                    elif not future.done():
                        future.set_result(Placed(result, position, len(group.futures)))
        except BaseException as exc:
            again.clear()  # every item of the batch fails with it
            for group in groups:
                for future in group.futures:
                    if not future.done():
                        future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            for group in groups:
                self._in_flight.discard(group.contact)
                # Placing one may fill and send the next batch; the contact's later ones then wait again.
                queued = self._waiting.pop(group.contact, deque())
                for item, future in [*again.get(group.contact, ()), *queued]:
                    self._place(group.contact, item, future)
