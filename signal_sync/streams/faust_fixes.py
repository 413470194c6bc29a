"""Seven deliberate changes to faust-streaming 0.15.3's consumer and table manager.

**Never commit past unread offsets.** When Faust's fetch loop sees offsets jump (say 85 then
98), it records 86..97 as a "gap" and later commits past it, treating those offsets as if they
did not exist. That is right for transaction markers, but around a rebalance's seek the records
86..97 do exist and were simply not handed to the agent (our chaos suite reproduced it):
committing past them loses them for good. We turn gap recording off, so the commit point only
moves over offsets the agents acknowledged: records skipped that way are read again after the
next restart or rebalance (duplicates and late, out-of-order deliveries; never loss). The cost,
for a source topic written by a *transactional* producer: offsets without records (transaction
markers) are never acknowledged; Faust's commit passes a single one right after its commit
point, a longer run holds it (duplicates on restart, never loss) — see docs/design.md.

**Fetch settings.** Faust builds its aiokafka consumer with Kafka's ``fetch.min.bytes`` of 1 (and
a fixed ``fetch.max.wait.ms``), so the broker answers each fetch as soon as one record arrives. The
worker reads some 36 partitions; at a few hundred events per second every produced batch then
costs a fetch round trip through aiokafka and Faust's fetch loop, about 40% of the
worker's CPU at 150 events/s (measured: docs/performance-history.md, fifth release). The app's
consumer service sets both from its ``ConsumerSettings`` (below).

**Stop when the group membership fails.** aiokafka runs the consumer group's membership (joins,
heartbeats, assignments) in a task of its own; when that task fails, or meets an error it cannot
handle (an unexpected SyncGroup answer), aiokafka raises the error only from
``AIOKafkaConsumer.getmany``, which Faust's fetch loop does not call (it reads the fetcher
directly), and the task waits for that call. The worker would run on, ready and healthy to every
probe, with no partitions and no way to get any. A second worker joining with the same
``kafka.group_instance_id`` does exactly that to one of the two (Faust's assignor refuses an
assignment computed for the other's metadata). A ``ConsumerSettings.on_membership_lost`` makes the
failure stop the worker, with its cause, instead.

**Hand fetched records to the agents without four tasks each.** Faust's fetch loop hands over
each record with ``wait_first(callback(message), suspend_flow.wait())``, so that a hand-over
blocked on a full agent buffer is given up when a rebalance suspends the flow. ``wait_first``
makes a task of the hand-over, of the suspension and of the consumer's stopped and crashed
events, waits for the first and cancels the other three: some ten event-loop steps per record,
though the hand-over almost never waits. On Python 3.12+ ``deliver_fetched_records_eagerly``
starts the hand-over eagerly (``asyncio.Task(eager_start=True)``): when it finishes without
waiting, that was the whole cost; when it waits, Faust's ``wait_first`` takes over with that
task, as before. Measured side by side: README, Performance (eighth release; then
docs/performance-history.md).

**Run the consumer on the app's event loop.** Faust runs its aiokafka consumer as a service in a
thread of its own, with an event loop of its own, and reaches it through a method queue: every
fetch, commit and seek is a call handed to that thread and its result handed back
(``call_soon_threadsafe`` both ways), and the two threads pass the GIL back and forth at each step.
The thread runs no Python in parallel with the worker's loop (the GIL), so it buys nothing here;
``consume_on_app_loop`` starts the same consumer service on the app's loop instead, where a call
into it is a plain ``await``. aiokafka is built for one loop shared with its caller; its group
membership (heartbeats) then runs on the app's loop, whose steps take milliseconds, against a
session timeout of seconds. Measured side by side: docs/performance-history.md (6 Dec). The
service also builds the aiokafka consumer with the fetch settings and the membership watch above,
so nothing of Faust's is patched for the whole process beyond the first and fourth changes
(the source reader's hooks below are methods of the same service and consumer classes).

**Leave the source topic to the source reader.** The ingest agent reads the source through
``streams.source_reader`` (librdkafka, in batches) while Faust keeps the group, the tables and the
commits. With ``ConsumerSettings.source_reader`` the consumer service pauses the reader's topic in
aiokafka when an assignment arrives (``on_partitions_assigned``, before Faust's own handling),
leaves it out of Faust's fetches (``getmany``), and lets the reader finish a revocation before
Faust's own handling commits (``on_partitions_revoked``) and before a stop closes the tables
(``wait_empty``); the consumer hands the reader its partitions when Faust's table recovery resumes
the stream partitions (``resume_partitions``), so no event is stitched before the identity table
is current.

**Start without waiting a second for late tables.** Faust's ``TableManager.on_start`` sleeps one
second before it registers the tables' changelog channels and starts recovery, so that tables
declared while the app starts are included; the consumer subscribes only after that. The worker
declares every table before the app starts (``runtime.create_runtime``), so the second is start-up
time and nothing else: about 40% of a worker's start to ready (``PromptTableManager``, the app's
``TableManager`` setting; a table declared after the start still fails, as in Faust, with "Too
late to add tables").
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.tables import TableManager
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP
from mode.services import WaitArgT, WaitResults
from mode.utils.futures import maybe_async
from mode.utils.times import Seconds

from signal_sync.streams.source_reader import SourceReader


async def _never_skip(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
    """Replacement for ``Consumer._add_gap``: unread offsets are never treated as done."""
    return None


def never_commit_past_unread_offsets() -> None:
    """Install the change (idempotent); raises if this Faust has no ``Consumer._add_gap`` to replace
    (an upgrade must fail at start, not lose records: tests/*/test_faust_canary.py)."""
    if not callable(getattr(Consumer, "_add_gap", None)):
        raise RuntimeError("this faust-streaming has no Consumer._add_gap: update streams/faust_fixes.py")
    Consumer._add_gap = _never_skip  # type: ignore[method-assign]


Stop = Callable[[BaseException], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSettings:
    """What the app's aiokafka consumer is built with beyond Faust's own settings: Kafka's
    ``fetch.min.bytes`` and ``fetch.max.wait.ms``, the ``stop`` to call with a
    ``GroupMembershipError`` when its group membership fails (None: not watched), and the
    ``SourceReader`` that reads one topic in Faust's stead (None: Faust reads every topic)."""

    fetch_min_bytes: int
    fetch_max_wait_ms: int
    on_membership_lost: Stop | None = None
    source_reader: SourceReader | None = None


def coordination_task(consumer: Any) -> asyncio.Task[None]:
    """The task of a started aiokafka consumer that keeps its group membership."""
    task = getattr(getattr(consumer, "_coordinator", None), "_coordination_task", None)
    if not isinstance(task, asyncio.Task):
        raise RuntimeError(
            "this aiokafka keeps its group coordination elsewhere: update streams/faust_fixes.py"
        )
    return task


def watch_membership(consumer: Any, lost: Callable[[BaseException], None]) -> None:
    """Call ``lost(error)`` once (on the consumer's loop) when the started ``consumer``'s group
    membership fails: its task ends with an error (a stop cancels it, which is not a loss), or it
    hands an error to the user. aiokafka's membership task hands an error it cannot handle (an
    unexpected SyncGroup or JoinGroup answer, a failed heartbeat task) to ``getmany`` and waits until
    a ``getmany`` has raised it, which Faust's fetch loop never calls: the membership would stay
    stalled, without partitions, for good."""
    start = consumer.start
    reported: list[BaseException] = []

    def report(error: BaseException) -> None:
        if not reported:
            reported.append(error)
            lost(error)

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            report(task.exception())  # type: ignore[arg-type]

    async def start_and_watch() -> None:
        await start()
        task = coordination_task(consumer)
        coordinator = consumer._coordinator
        push = getattr(coordinator, "_push_error_to_user", None)
        if not callable(push):
            raise RuntimeError(
                "this aiokafka hands membership errors to the user elsewhere: update streams/faust_fixes.py"
            )

        def push_and_report(error: BaseException) -> Any:
            report(error)
            return push(error)

        coordinator._push_error_to_user = push_and_report
        task.add_done_callback(ended)

    consumer.start = start_and_watch


class GroupMembershipError(RuntimeError):
    """The consumer's group membership failed: the worker has no partitions and gets none."""


def membership_lost(app: faust.App, stop: Stop, error: BaseException) -> None:
    """Hand ``stop`` the failure of the group membership (on the app's loop, where the consumer's
    membership task runs and ends)."""
    instance = app.conf.consumer_group_instance_id
    cause = (
        f" It uses kafka.group_instance_id {instance!r}: the usual cause is a second worker with "
        f"the same id in this group (another deployment with the same app_id and worker names, "
        f"say in another Kubernetes cluster): give each deployment its own app_id, or each worker "
        f"its own group_instance_id."
        if instance
        else ""
    )
    failure = GroupMembershipError(
        f"the consumer's membership of group {app.conf.id!r} failed ({error}); it would get no "
        f"partitions until restarted.{cause}"
    )
    asyncio.ensure_future(stop(failure), loop=app.loop)


_faust_wait_first = Consumer.wait_first


async def _wait_first_eagerly(
    self: Consumer, *coros: WaitArgT, timeout: Seconds | None = None
) -> WaitResults:
    """``Consumer.wait_first`` with its first awaitable, when a coroutine, started eagerly."""
    first, *others = coros
    if not asyncio.iscoroutine(first):
        return await _faust_wait_first(self, *coros, timeout=timeout)
    task = asyncio.Task(first, loop=self.loop, eager_start=True)  # type: ignore[call-arg]
    if not task.done():
        return await _faust_wait_first(self, task, *others, timeout=timeout)
    for other in others:  # never started, so never awaited: close it
        if asyncio.iscoroutine(other):
            other.close()
    result = task.result()  # raises what the hand-over raised, as wait_first does
    if self._stopped.is_set() or self._crashed.is_set():
        return WaitResults([], [], True)
    return WaitResults([first], [result], False)


def deliver_fetched_records_eagerly() -> None:
    """Install the change (idempotent); Python 3.11 has no eager tasks and keeps Faust's own."""
    if sys.version_info >= (3, 12):
        Consumer.wait_first = _wait_first_eagerly  # type: ignore[method-assign]


class AppLoopConsumerService(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer service, started, called and stopped on the app's loop: what
    ``mode.threads.ServiceThread`` does in its thread (start the service, then at the stop
    ``_shutdown_thread``: stop aiokafka's consumer, the children, futures and exit stacks), done
    where the app runs, with no thread, thread loop or method queue."""

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        self._thread_started.set()
        await self._default_start()

    async def stop(self) -> None:
        if self._started.is_set() and not self._stopped.is_set():
            self._stopped.set()
            await self.on_stop()
            await self._shutdown_thread()
            await self.on_shutdown()

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's handling of an assignment, with the source reader's topic paused in aiokafka
        first: its partitions are assigned to this worker (the group and the tables keep them),
        and never fetched by aiokafka (``AppLoopConsumer.resume_partitions`` hands them on)."""
        reader = self.consumer.settings.source_reader
        if reader is not None:
            read_elsewhere = [
                TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic == reader.topic
            ]
            if read_elsewhere:
                self._ensure_consumer().pause(*read_elsewhere)
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust's handling of a revocation (which commits), after the source reader stopped
        handing out the revoked partitions and the records it handed out were acknowledged."""
        reader = self.consumer.settings.source_reader
        if reader is not None:
            await reader.revoke(revoked)
        await super().on_partitions_revoked(revoked)

    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Faust's fetch, never of the source reader's topic (paused in aiokafka as well)."""
        reader = self.consumer.settings.source_reader
        if reader is not None and active_partitions:
            active_partitions = {tp for tp in active_partitions if tp.topic != reader.topic}
            if not active_partitions:
                await asyncio.sleep(timeout)
                return {}
        return await super().getmany(active_partitions, timeout)

    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's aiokafka consumer, with the app's fetch settings and its group membership
        watched when the settings name a ``stop``."""
        consumer = super()._create_worker_consumer(transport)
        settings: ConsumerSettings = self.consumer.settings
        if not hasattr(consumer, "_fetch_min_bytes") or not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError(
                "this aiokafka keeps its fetch settings elsewhere: update streams/faust_fixes.py"
            )
        # AIOKafkaConsumer hands these to its fetcher in start(), which has not run yet.
        consumer._fetch_min_bytes = settings.fetch_min_bytes
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        if settings.on_membership_lost is not None:
            lost = functools.partial(membership_lost, self.app, settings.on_membership_lost)
            watch_membership(consumer, lost)
        return consumer


class AppLoopConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer, with its service on the app's loop (``AppLoopConsumerService``),
    built with ``settings``."""

    def __init__(self, *args: Any, settings: ConsumerSettings, **kwargs: Any) -> None:
        self.settings = settings  # before Faust's __init__, which builds the service
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self) -> AppLoopConsumerService:
        return AppLoopConsumerService(self, loop=self.loop, beacon=self.beacon)

    async def wait_empty(self) -> None:
        """Faust's wait for the records it handed out (then a commit), after the source reader
        finished its partitions as at a revocation: at a stop Faust closes the tables right after
        this, and no source record may be handled, nor acknowledged, once they are closed."""
        reader = self.settings.source_reader
        if reader is not None:
            await reader.revoke(self.assignment())
        await super().wait_empty()

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Faust's resume; the source reader's partitions among them (resumed once the tables'
        recovery for the assignment is done) are the reader's to start reading."""
        tpset = set(tps)
        super().resume_partitions(tpset)
        reader = self.settings.source_reader
        if reader is not None:
            reader.resume(tpset)


class PromptTableManager(TableManager):
    """Faust's table manager without the one-second wait in ``on_start`` (module docstring)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def consume_on_app_loop(app: faust.App, settings: ConsumerSettings) -> None:
    """Make ``app`` build its consumer with ``AppLoopConsumer`` and ``settings``; before
    ``app.consumer`` is first used. Raises if the app's transport does not build Faust's aiokafka
    consumer (the class replaced)."""
    transport = app.transport
    if transport.Consumer is not AIOKafkaConsumer:
        raise RuntimeError(
            f"{app.conf.broker} builds {transport.Consumer!r}, not faust's aiokafka consumer: "
            "update streams/faust_fixes.py"
        )
    transport.Consumer = functools.partial(AppLoopConsumer, settings=settings)
