"""The eager hand-over of fetched records (``streams.faust_fixes``) keeps ``wait_first``'s rules."""

from __future__ import annotations

import asyncio
import sys

import pytest
from faust.transport.consumer import Consumer
from mode import Service

from signal_sync.streams import faust_fixes
from signal_sync.streams.faust_fixes import _wait_first_eagerly

needs_eager_tasks = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks: Python 3.12+")


class FetchLoop(Service):
    """Stands in for Faust's consumer: a mode service with its stopped and crashed events."""


async def handed_over(log: list[str], value: str) -> str:
    log.append(f"handed over {value}")
    return value


async def suspension(log: list[str], suspended: asyncio.Event) -> None:
    log.append("suspension watched")
    await suspended.wait()


@needs_eager_tasks
async def test_a_hand_over_that_does_not_wait_is_the_whole_cost() -> None:
    log: list[str] = []
    watch = suspension(log, asyncio.Event())
    results = await _wait_first_eagerly(FetchLoop(), handed_over(log, "r1"), watch)
    assert (results.results, results.stopped) == (["r1"], False)
    assert log == ["handed over r1"]  # the suspension's wait never started (Faust's would have)
    assert watch.cr_frame is None  # closed: no "never awaited" warning


@needs_eager_tasks
async def test_a_waiting_hand_over_is_given_up_when_the_flow_is_suspended() -> None:
    log: list[str] = []
    suspended, buffer_has_room = asyncio.Event(), asyncio.Event()

    async def blocked_hand_over() -> None:
        log.append("waiting for room")
        await buffer_has_room.wait()
        log.append("handed over")

    watch = suspension(log, suspended)
    asyncio.get_running_loop().call_later(0.01, suspended.set)
    results = await asyncio.wait_for(_wait_first_eagerly(FetchLoop(), blocked_hand_over(), watch), 5)
    assert (results.done, results.stopped) == ([watch], False)  # the suspension won
    buffer_has_room.set()
    await asyncio.sleep(0.01)
    assert "handed over" not in log  # cancelled, as Faust's wait_first cancels the loser


@needs_eager_tasks
async def test_a_hand_over_that_raises_raises() -> None:
    async def broken() -> None:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await _wait_first_eagerly(FetchLoop(), broken(), suspension([], asyncio.Event()))


@needs_eager_tasks
async def test_a_stopped_consumer_reports_stopped() -> None:
    loop = FetchLoop()
    loop._stopped.set()
    results = await _wait_first_eagerly(loop, handed_over([], "r1"), suspension([], asyncio.Event()))
    assert results.stopped is True and results.done == []


async def test_events_are_not_started_eagerly() -> None:
    """``Service.wait(event)`` goes through ``wait_first`` with an event, not a coroutine."""
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    results = await asyncio.wait_for(_wait_first_eagerly(FetchLoop(), event), 5)
    assert results.done == [event] and results.stopped is False


def test_installed_only_where_eager_tasks_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Consumer, "wait_first", Service.wait_first)
    faust_fixes.deliver_fetched_records_eagerly()
    expected = _wait_first_eagerly if sys.version_info >= (3, 12) else Service.wait_first
    assert Consumer.wait_first is expected
