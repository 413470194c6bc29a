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
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


def finish_nothing(_results: list[Any]) -> None:
    """A group's ``finish`` outside a batch being sent."""


@dataclass(slots=True)
class Group:
    """The coalesced events of one contact in one batch, in arrival order. ``finish(results)``
    answers the group's items before the rest of the batch is done (set by the ``Batcher`` while
    the batch is being sent; a no-op otherwise)."""

    contact: str
    items: list[Any] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    finish: Callable[[list[Any]], None] = field(default=finish_nothing, repr=False)


SendBatch = Callable[[list[Group]], Awaitable[list[Any]]]


class Again:
    """The result of an item to place into the next batch (``AGAIN``), in its contact's order."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "AGAIN"


AGAIN = Again()


@dataclass(slots=True)
class Placed(Generic[R]):
    """An event's result, and where it stood among its contact's events in the batch (a value, not
    frozen: one is built per event)."""

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
    ``send_batch`` may answer a group early with ``group.finish(results)`` (the same results it
    returns for it): its items get their results and its contact is free for the next batch while
    other contacts of the batch still wait for their calls.
    """

    def __init__(
        self, send_batch: SendBatch, max_items: int, linger_s: float, max_sending: int | None = None
    ) -> None:
        """``max_sending``: batches sent at once (the destination's concurrency); while that many are
        being sent, a linger that ends does not send the open batch: it keeps collecting until one
        of them is answered (or it is full), so a destination that is the bottleneck gets full
        batches rather than a queue of small ones. None: every linger sends."""
        self._send_batch = send_batch
        self.max_items = max_items
        self.linger_s = linger_s
        self.max_sending = max_sending
        self._sending = 0
        self._held = False
        self._open: dict[str, Group] = {}
        self._in_flight: set[str] = set()
        self._waiting: dict[str, deque[tuple[Any, asyncio.Future[Any]]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, contact: str, item: Any) -> asyncio.Future[Placed[Any]]:
        """Queue one item of ``contact``; the future of its share of the result, set once its batch
        is answered."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._place(contact, item, future)
        return future

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
        elif self._timer is None and not self._held:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._linger_ended)

    def _linger_ended(self) -> None:
        self._timer = None
        if self.max_sending is not None and self._sending >= self.max_sending:
            self._held = True  # sent when a batch being sent is answered (``_send``) or once full
            return
        self._flush()

    def _flush(self) -> None:
        self._held = False
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
        finished: set[int] = set()

        def finish(group: Group, results: list[Any]) -> None:
            """The group's results: set its futures (or place its ``AGAIN`` items) and free its contact."""
            if id(group) in finished:
                return
            finished.add(id(group))
            again: list[tuple[Any, asyncio.Future[Any]]] = []
            for position, (item, future, result) in enumerate(
                zip(group.items, group.futures, results, strict=True)
            ):
                if result is AGAIN:
                    again.append((item, future))
                elif not future.done():
                    future.set_result(Placed(result, position, len(group.futures)))
            self._release(group.contact, again)

        for group in groups:
            group.finish = functools.partial(finish, group)
        self._sending += 1
        try:
            results = await self._send_batch(groups)
            for group, group_results in zip(groups, results, strict=True):
                finish(group, group_results)
        except BaseException as exc:
            for group in groups:
                if id(group) in finished:
                    continue
                finished.add(id(group))
                for future in group.futures:
                    if not future.done():
                        future.set_exception(exc)
                self._release(group.contact, [])
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._sending -= 1
            for group in groups:  # ``finish`` refers to its group: a cycle that would keep the batch
                group.finish = finish_nothing
        if self._held:  # a batch is answered: the one held at its linger's end goes now
            self._flush()

    def _release(self, contact: str, again: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        """The contact's batch is answered: its ``again`` items, then those that waited, go on in order."""
        self._in_flight.discard(contact)
        queued = self._waiting.pop(contact, None)
        if not again and not queued:
            return
        # Placing one may fill and send the next batch; the contact's later ones then wait again.
        for item, future in [*again, *(queued or ())]:
            self._place(contact, item, future)
