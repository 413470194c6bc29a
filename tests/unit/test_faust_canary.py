"""Canaries: the faust-streaming internals signal-sync patches or reads are still there and used.

At-least-once rests on names Faust does not promise to keep (``streams/faust_fixes.py``,
``streams/output_producer.flush_with_faust``, ``streams/tail_watch.handed_out``,
``streams/sequence.acknowledge``). A patch of a name Faust no longer calls installs without error
and does nothing, so these tests run Faust's own fetch loop (``Consumer._drain_messages``) and
commit path (``Consumer.force_commit``) on a real Faust consumer, fed records by a stand-in for
aiokafka's ``getmany``, and check that each patched name is called and its effect holds. An
upgrade of faust-streaming (pinned in pyproject.toml) that moves any of them fails here. The
worker's start without Faust's one-second wait for late tables (``PromptTableManager``) replaces
``TableManager.on_start``; its canary checks the steps of Faust's own.
tests/integration/test_faust_canary.py checks the same on the real broker.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from faust.tables import TableManager
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import ConsumerRebalanceListener
from faust.types import TP, Message
from mode import Service

from signal_sync.runtime import create_runtime
from signal_sync.streams.faust_fixes import (
    AppLoopConsumer,
    AppLoopConsumerService,
    ConsumerSettings,
    GroupMembershipError,
    PromptTableManager,
    _never_skip,
    _wait_first_eagerly,
    consume_on_app_loop,
    deliver_fetched_records_eagerly,
    membership_lost,
    never_commit_past_unread_offsets,
    watch_membership,
)
from signal_sync.streams.output_producer import flush_with_faust
from signal_sync.streams.partition_reader import RawRecord
from signal_sync.streams.sequence import acknowledge
from signal_sync.streams.tail_watch import handed_out
from tests.unit.factories import settings

TOPIC = "canary-events"
TP0 = TP(TOPIC, 0)
SETTINGS = ConsumerSettings(fetch_min_bytes=4_096, fetch_max_wait_ms=80)


def offline_app(name: str, **options: Any) -> faust.App:
    """A Faust app that is never started: no broker behind it, no web server."""
    return faust.App(name, broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False, **options)


class Fetcher(Service):
    """Stands in for Faust's fetcher service: the fetch loop runs until it is stopped."""


@pytest.fixture
async def consumer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Consumer]:
    """A real, unstarted Faust consumer of an app that acks ``TOPIC``, with the worker's patches."""
    monkeypatch.setattr(Consumer, "_add_gap", Consumer._add_gap)  # restored after the test
    monkeypatch.setattr(Consumer, "wait_first", Consumer.wait_first)
    never_commit_past_unread_offsets()
    deliver_fetched_records_eagerly()
    app = offline_app("canary")
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: topic == TOPIC)
    yield app.consumer


def record(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"{}", None)


async def fetch(consumer: Consumer, offsets: list[int]) -> list[int]:
    """Run Faust's fetch loop over one fetch of ``offsets``; the offsets it handed to the agents."""
    handed: list[int] = []
    fetcher = Fetcher()

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        for offset in offsets:
            yield TP0, record(offset)
        fetcher._stopped.set()  # one fetch, then the loop ends

    async def callback(message: Message) -> None:
        handed.append(message.offset)

    consumer.getmany = getmany  # type: ignore[method-assign]
    consumer.callback = callback
    await asyncio.wait_for(consumer._drain_messages(fetcher), 5)
    return handed


async def commit_through_faust(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> list[dict[TP, int]]:
    """Run Faust's commit path (``force_commit``) for ``TP0``; the offsets it committed."""
    committed: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:  # aiokafka's commit, through the consumer service
        committed.append(dict(offsets))
        return True

    monkeypatch.setattr(consumer, "assignment", lambda: {TP0})
    monkeypatch.setattr(consumer, "_commit", commit)
    monkeypatch.setattr(consumer.app.producer, "flush", _nothing)  # a started producer's flush
    await consumer.force_commit()
    return committed


async def _nothing() -> None:
    return None


async def test_faust_s_fetch_loop_calls_the_gap_patch_for_an_offset_jump(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Consumer._add_gap is _never_skip
    calls: list[tuple[TP, int, int]] = []

    async def spy(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
        calls.append((tp, offset_from, offset_to))
        await _never_skip(self, tp, offset_from, offset_to)

    monkeypatch.setattr(Consumer, "_add_gap", spy)
    assert await fetch(consumer, [3, 4, 9]) == [3, 4, 9]
    assert calls == [(TP0, 5, 9)]  # Faust still reports the jump through _add_gap
    assert not consumer._gap[TP0]  # and the replacement recorded nothing (Faust's own: 5..9)


async def test_offsets_after_a_jump_are_not_committed(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the gap patch is for: Faust's commit stops at the first offset never handed out."""
    await fetch(consumer, [3, 4, 9])
    for offset in (3, 4, 9):
        consumer.ack(record(offset))
    # With Faust's own gap recording this is {TP0: 10}: past 5..8, which no agent ever saw.
    assert await commit_through_faust(consumer, monkeypatch) == [{TP0: 5}]


async def test_faust_s_fetch_loop_hands_records_over_through_wait_first(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = Consumer.wait_first
    expected = _wait_first_eagerly if sys.version_info >= (3, 12) else Service.wait_first
    assert installed is expected
    handed_over: list[Any] = []

    async def spy(self: Consumer, *coros: Any, timeout: Any = None) -> Any:
        handed_over.append(coros[0])
        return await installed(self, *coros, timeout=timeout)

    monkeypatch.setattr(Consumer, "wait_first", spy)
    assert await fetch(consumer, [0, 1, 2]) == [0, 1, 2]
    assert len(handed_over) == 3 and all(asyncio.iscoroutine(c) for c in handed_over)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks: Python 3.12+")
async def test_the_eager_hand_over_reads_the_events_faust_s_consumer_has(consumer: Consumer) -> None:
    """``_wait_first_eagerly`` starts its task on ``consumer.loop`` and reads ``_stopped`` / ``_crashed``."""
    assert consumer.loop is asyncio.get_running_loop()
    assert consumer._stopped.is_set() is False and consumer._crashed.is_set() is False
    assert (await _wait_first_eagerly(consumer, _nothing())).stopped is False
    consumer._crashed.set()
    assert (await _wait_first_eagerly(consumer, _nothing())).stopped is True


async def test_the_read_offset_the_tail_watch_reads_follows_the_hand_overs(consumer: Consumer) -> None:
    assert not handed_out(consumer, TP0, None)
    await fetch(consumer, [7, 8])
    assert consumer._read_offset[TP0] == 8
    assert handed_out(consumer, TP0, 8) and not handed_out(consumer, TP0, 9)


async def test_a_commit_awaits_the_output_producer_s_flush_before_committing(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []

    async def faust_flush() -> None:
        steps.append("faust producer flushed")

    async def outputs_flush() -> None:
        steps.append("outputs flushed")

    async def commit(offsets: dict[TP, int]) -> bool:
        steps.append(f"committed {offsets[TP0]}")
        return True

    monkeypatch.setattr(consumer.app.producer, "flush", faust_flush)  # a started producer's flush
    flush_with_faust(consumer.app, outputs_flush)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0})
    monkeypatch.setattr(consumer, "_commit", commit)
    await fetch(consumer, [0, 1])
    consumer.ack(record(0))
    consumer.ack(record(1))
    await consumer.commit()
    assert steps == ["faust producer flushed", "outputs flushed", "committed 2"]


async def test_a_record_read_back_by_the_guard_is_acked_into_faust_s_commit_point(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sequence.acknowledge`` builds a Faust ``Message`` for a record Faust never handed out."""
    await fetch(consumer, [0, 3])
    consumer.ack(record(0))
    for offset in (1, 2):  # read back from Kafka by the sequence guard
        await acknowledge(None, consumer, RawRecord(TOPIC, 0, offset, 0, b"k", b"{}", []))  # type: ignore[arg-type]
    consumer.ack(record(3))
    assert await commit_through_faust(consumer, monkeypatch) == [{TP0: 4}]


def test_faust_builds_the_consumer_and_its_service_from_the_replaced_classes() -> None:
    """``consume_on_app_loop`` replaces the transport's ``Consumer``, whose ``_new_consumer_thread``
    builds the service: if Faust built either elsewhere, the consumer would run in its thread again
    (silently slower), so the app's consumer must be the replacement's, with its service."""
    app = offline_app("canary-loop")
    consume_on_app_loop(app, SETTINGS)
    service = app.consumer._thread
    assert type(app.consumer) is AppLoopConsumer
    assert type(service) is AppLoopConsumerService
    assert service.thread_loop is service.parent_loop is app.loop


async def test_the_service_builds_aiokafka_s_consumer_with_its_settings_and_patches_nothing_else() -> None:
    """The fetch settings reach the aiokafka consumer the app's service builds; an app without the
    change still gets Faust's own consumer with Faust's fetch settings (nothing global is patched)."""
    app = offline_app("canary-fetch")
    consume_on_app_loop(app, SETTINGS)
    built = app.consumer._thread._create_worker_consumer(app.transport)
    assert (built._fetch_min_bytes, built._fetch_max_wait_ms) == (4_096, 80)
    other = offline_app("canary-plain")
    plain = other.consumer._thread._create_worker_consumer(other.transport)
    assert plain._fetch_min_bytes == 1


class StandInConsumer:
    """What ``watch_membership`` uses of aiokafka's consumer: ``start``, then the membership task."""

    def __init__(self, membership: Any) -> None:
        self.membership = membership

    async def start(self) -> None:
        self._coordinator = SimpleNamespace(
            _coordination_task=asyncio.ensure_future(self.membership),
            _push_error_to_user=lambda error: asyncio.sleep(0),  # aiokafka's returns an awaitable
        )


async def test_a_failed_group_membership_calls_the_stop_with_its_cause() -> None:
    """The membership task ending with an error calls the app's ``on_membership_lost`` with a
    ``GroupMembershipError`` naming the group and the error; one cancelled by a stop calls nothing."""
    stops: list[BaseException] = []
    stopped = asyncio.Event()

    async def stop(reason: BaseException) -> None:
        stops.append(reason)
        stopped.set()

    app = offline_app("canary-lost")
    lost = functools.partial(membership_lost, app, stop)

    async def fails() -> None:
        raise RuntimeError("fenced by another member")

    cancelled = StandInConsumer(asyncio.Event().wait())
    watch_membership(cancelled, lost)
    await cancelled.start()
    cancelled._coordinator._coordination_task.cancel()
    failing = StandInConsumer(fails())
    watch_membership(failing, lost)
    await failing.start()  # the cancelled task's callback runs before the failing one's
    await asyncio.wait_for(stopped.wait(), 5)
    assert [type(reason) for reason in stops] == [GroupMembershipError]
    assert "'canary-lost'" in str(stops[0]) and "fenced by another member" in str(stops[0])


async def test_an_error_the_membership_hands_to_the_user_calls_the_stop_once() -> None:
    """aiokafka's membership task hands an unexpected SyncGroup answer to ``getmany`` and waits for
    it to be raised there, which Faust never does: the stop is called with it, once, even when the
    task later ends with an error too."""
    stops: list[BaseException] = []

    def lost(error: BaseException) -> None:
        stops.append(error)

    membership = asyncio.Event()

    async def fails_later() -> None:
        await membership.wait()
        raise RuntimeError("coordinator routine failed")

    consumer = StandInConsumer(fails_later())
    watch_membership(consumer, lost)
    await consumer.start()
    await consumer._coordinator._push_error_to_user(RuntimeError("Unexpected error from SyncGroup"))
    assert [str(error) for error in stops] == ["Unexpected error from SyncGroup"]
    membership.set()
    # the watch's done callback was added before gather's, so it has run when gather returns
    await asyncio.gather(consumer._coordinator._coordination_task, return_exceptions=True)
    assert len(stops) == 1


async def test_the_service_watches_the_membership_only_when_the_settings_name_a_stop() -> None:
    async def stop(reason: BaseException) -> None:
        return None

    watched = offline_app("canary-watch")
    consume_on_app_loop(watched, ConsumerSettings(4_096, 80, on_membership_lost=stop))
    plain = offline_app("canary-unwatched")
    consume_on_app_loop(plain, SETTINGS)
    assert watched.consumer._thread._create_worker_consumer(watched.transport).start.__name__ == (
        "start_and_watch"
    )
    assert plain.consumer._thread._create_worker_consumer(plain.transport).start.__name__ == "start"


def test_consume_on_app_loop_refuses_a_transport_that_builds_another_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = offline_app("canary-other")
    monkeypatch.setattr(app.transport, "Consumer", Consumer)
    with pytest.raises(RuntimeError, match="update streams/faust_fixes.py"):
        consume_on_app_loop(app, SETTINGS)


async def test_a_call_into_the_consumer_service_runs_on_the_caller_s_loop_and_returns_its_result() -> None:
    """Faust calls into its consumer service with plain and with async functions (``subscribe`` is
    plain, ``getmany`` async): both return their result, and an error raises in the caller."""
    app = offline_app("canary-call")
    consume_on_app_loop(app, SETTINGS)
    service = app.consumer._thread
    loops: list[asyncio.AbstractEventLoop] = []

    async def fetch(n: int) -> int:
        loops.append(asyncio.get_running_loop())
        return n + 1

    def fail() -> None:
        raise ValueError("refused")

    assert await service.call_thread(fetch, 1) == 2
    assert await service.call_thread(lambda n: n * 3, 2) == 6
    assert loops == [asyncio.get_running_loop()]
    with pytest.raises(ValueError, match="refused"):
        await service.call_thread(fail)


async def test_the_table_manager_starts_as_faust_s_does_without_its_one_second_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's ``TableManager.on_start`` is a one-second sleep, then the tables' channels, then the
    recovery; the worker's does the same without the sleep. A Faust whose ``on_start`` does more or
    something else fails here: the override would leave that out."""

    async def steps(manager_class: type[TableManager]) -> list[str]:
        manager = offline_app(f"canary-{manager_class.__name__}", TableManager=manager_class).tables
        assert type(manager) is manager_class
        calls: list[str] = []

        async def sleep(seconds: float) -> None:
            calls.append(f"sleep {seconds}")

        async def update_channels() -> None:
            calls.append("channels")

        async def start_recovery() -> None:
            calls.append("recovery")

        monkeypatch.setattr(manager, "sleep", sleep)
        monkeypatch.setattr(manager, "_update_channels", update_channels)
        monkeypatch.setattr(manager, "_recovery", SimpleNamespace(start=start_recovery))
        await manager.on_start()
        return calls

    assert await steps(TableManager) == ["sleep 1.0", "channels", "recovery"]
    assert await steps(PromptTableManager) == ["channels", "recovery"]


def test_the_worker_s_app_uses_the_prompt_table_manager() -> None:
    runtime = create_runtime(settings(), partitions=3)
    assert type(runtime.app.tables) is PromptTableManager


class StandInReader:
    """What Faust's consumer calls of the ``SourceReader`` (``ConsumerSettings.source_reader``)."""

    topic = TOPIC

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    def resume(self, tps: set[TP]) -> None:
        self.steps.append(f"reader resumes {sorted(tps)}")

    async def revoke(self, tps: set[TP]) -> None:
        self.steps.append(f"reader revokes {sorted(tps)}")


OTHER = TP("canary-contacts", 0)


def app_with_reader(name: str, steps: list[str]) -> faust.App:
    app = offline_app(name)
    settings = ConsumerSettings(4_096, 80, source_reader=StandInReader(steps))  # type: ignore[arg-type]
    consume_on_app_loop(app, settings)
    return app


class StandInAIOKafka:
    """What the consumer service uses of aiokafka's consumer around an assignment."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        self._coordinator = SimpleNamespace(generation=3)

    def pause(self, *tps: Any) -> None:
        assert all(isinstance(tp, TopicPartition) for tp in tps), "aiokafka refuses other types"
        self.steps.append(f"aiokafka pauses {sorted(tps)}")


async def test_faust_s_rebalance_listener_reaches_the_reader_before_faust_s_own_handling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka calls Faust's ``ConsumerRebalanceListener``, which calls the consumer service's
    ``on_partitions_revoked`` / ``on_partitions_assigned``: the reader finishes the revoked
    partitions before Faust's revocation (which commits), and the reader's topic is paused in
    aiokafka before Faust's assignment goes on (so aiokafka never fetches it)."""
    steps: list[str] = []
    app = app_with_reader("canary-listener", steps)
    service = app.consumer._thread
    service._consumer = StandInAIOKafka(steps)

    async def faust_revokes(loop: Any, revoked: set[TP]) -> None:
        steps.append(f"faust revokes {sorted(revoked)}")

    async def faust_assigns(loop: Any, assigned: set[TP], generation_id: int) -> None:
        steps.append(f"faust assigns {sorted(assigned)} in generation {generation_id}")

    monkeypatch.setattr(app.consumer, "threadsafe_partitions_revoked", faust_revokes)
    monkeypatch.setattr(app.consumer, "threadsafe_partitions_assigned", faust_assigns)
    monkeypatch.setattr(app, "on_rebalance_start", lambda: None)
    listener = ConsumerRebalanceListener(service)
    both = [TopicPartition(TOPIC, 0), TopicPartition(OTHER.topic, 0)]
    await listener.on_partitions_revoked(both)
    await listener.on_partitions_assigned(both)
    tps = sorted({TP0, OTHER})
    assert steps == [
        f"reader revokes {tps}",
        f"faust revokes {tps}",
        f"aiokafka pauses {[TopicPartition(TOPIC, 0)]}",
        f"faust assigns {tps} in generation 3",
    ]


async def test_faust_s_fetch_leaves_the_reader_s_topic_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's consumer fetches through ``Consumer._getmany`` → the service's ``getmany``: the
    reader's topic is left out, and a fetch of only that topic asks aiokafka for nothing."""
    app = app_with_reader("canary-getmany", [])
    service = app.consumer._thread
    service._consumer = StandInAIOKafka([])
    asked: list[set[TP]] = []

    async def fetch_records(consumer: Any, active: set[TP], timeout: float, max_records: int) -> dict:
        asked.append(set(active))
        return {}

    monkeypatch.setattr(service, "_fetch_records", fetch_records)
    service._consumer._max_poll_records = 10
    await app.consumer._getmany(active_partitions={TP0, OTHER}, timeout=0.01)
    await app.consumer._getmany(active_partitions={TP0}, timeout=0.01)
    assert asked == [{OTHER}]


async def test_faust_s_recovery_hands_the_reader_its_partitions_when_it_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's recovery resumes the stream partitions (``Consumer.resume_partitions``) once it is
    complete: that call hands the reader its partitions, after Faust's own resume."""
    steps: list[str] = []
    app = app_with_reader("canary-recovered", steps)
    consumer = app.consumer
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0, OTHER})

    async def seek() -> None:
        steps.append(f"faust active {sorted(consumer._get_active_partitions())}")

    monkeypatch.setattr(consumer, "perform_seek", seek)
    monkeypatch.setattr(app._fetcher, "maybe_start", _nothing)
    app.consumer_generation_id = 0
    await app.tables.recovery.on_recovery_completed(generation_id=0)
    tps = sorted({TP0, OTHER})
    assert steps == [f"reader resumes {tps}", f"faust active {tps}"]


async def test_faust_s_stop_lets_the_reader_finish_before_the_tables_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's stop (``App._stop_consumer``) waits for the consumer (``wait_empty``), then stops the
    tables: the reader finishes its partitions in ``wait_empty``, before Faust's own wait and commit,
    so no source record is handled once the tables are closed."""
    steps: list[str] = []
    app = app_with_reader("canary-stop", steps)
    consumer = app.consumer
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0, OTHER})
    monkeypatch.setattr(Consumer, "wait_empty", lambda self: _step(steps, "faust waits and commits"))
    monkeypatch.setattr(app, "_stop_fetcher", _nothing)
    monkeypatch.setattr(app.tables, "stop", lambda: _step(steps, "tables stop"))
    await app._stop_consumer()
    tps = sorted({TP0, OTHER})
    assert steps == [f"reader revokes {tps}", "faust waits and commits", "tables stop"]


async def _step(steps: list[str], step: str) -> None:
    steps.append(step)
