"""Key-ordered scheduling: concurrent across keys, sequential within a key, acks in offset order."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from signal_sync.engine.ordered import KeyOrderedScheduler, Slots


async def test_events_of_one_key_run_in_order_and_other_keys_overlap() -> None:
    acked: list[int] = []
    started: dict[str, list[int]] = {}
    running = 0
    peak = 0

    async def ack(event: tuple[str, int]) -> None:
        acked.append(event[1])

    async def handler(event: tuple[str, int]) -> None:
        nonlocal running, peak
        key, offset = event
        started.setdefault(key, []).append(offset)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(random.uniform(0, 0.005))
        running -= 1

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=16)
    rng = random.Random(3)
    events = [(f"k{rng.randrange(8)}", offset) for offset in range(200)]
    for key, offset in events:
        await scheduler.submit("p0", offset, key, (key, offset), handler)
    assert await scheduler.drain(5)

    for key, offsets in started.items():
        assert offsets == sorted(offsets), f"{key} ran out of order"
    assert acked == list(range(200)), "acks must follow offset order exactly"
    assert peak > 1, "different keys should run concurrently"


async def test_a_slow_key_holds_back_only_the_commit_point_not_other_keys() -> None:
    acked: list[int] = []
    release = asyncio.Event()
    finished: list[int] = []

    async def ack(event: tuple[str, int]) -> None:
        acked.append(event[1])

    async def handler(event: tuple[str, int]) -> None:
        if event[0] == "slow":
            await release.wait()
        finished.append(event[1])

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=8)
    await scheduler.submit("p0", 0, "slow", ("slow", 0), handler)
    for offset in range(1, 5):
        await scheduler.submit("p0", offset, f"fast{offset}", (f"fast{offset}", offset), handler)
    await asyncio.wait_for(_until(lambda: len(finished) == 4), 2)
    assert finished == [1, 2, 3, 4] and acked == [], "nothing may be acked past the unfinished offset 0"
    release.set()
    assert await scheduler.drain(2)
    assert acked == [0, 1, 2, 3, 4]


async def test_partitions_commit_independently() -> None:
    acked: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def ack(event: tuple[str, int]) -> None:
        acked.append(event)

    async def handler(event: tuple[str, int]) -> None:
        if event[0] == "p0":
            await release.wait()

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=8)
    await scheduler.submit("p0", 10, "a", ("p0", 10), handler)
    await scheduler.submit("p1", 20, "b", ("p1", 20), handler)
    await asyncio.wait_for(_until(lambda: ("p1", 20) in acked), 2)
    assert ("p0", 10) not in acked
    release.set()
    assert await scheduler.drain(2)


async def test_submit_waits_when_max_in_flight_is_reached_and_drain_times_out() -> None:
    release = asyncio.Event()

    async def ack(_: object) -> None:
        return None

    async def handler(_: object) -> None:
        await release.wait()

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=2)
    await scheduler.submit("p", 0, "a", 0, handler)
    await scheduler.submit("p", 1, "b", 1, handler)
    third = asyncio.create_task(scheduler.submit("p", 2, "c", 2, handler))
    await asyncio.sleep(0.01)
    assert not third.done() and scheduler.in_flight == 2
    assert not await scheduler.drain(0.01)
    release.set()
    await asyncio.wait_for(third, 1)
    assert await scheduler.drain(1)


async def test_a_handler_that_raises_gets_its_failure_recorded_then_the_ack_in_order() -> None:
    order: list[int] = []
    acked: list[int] = []
    failed: list[tuple[int, str]] = []

    async def ack(event: int) -> None:
        acked.append(event)

    async def fail(event: int, exc: Exception) -> None:
        assert event not in acked, "the failure is recorded before the ack"
        failed.append((event, str(exc)))

    async def handler(event: int) -> None:
        order.append(event)
        if event == 0:
            raise RuntimeError("boom")

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=4, fail=fail)
    await scheduler.submit("p", 0, "k", 0, handler)
    await scheduler.submit("p", 1, "k", 1, handler)
    assert await scheduler.drain(1)
    assert order == [0, 1], "a failing event does not stall its key"
    assert failed == [(0, "boom")] and acked == [0, 1]


async def test_an_event_whose_failure_cannot_be_recorded_is_never_acked_nor_anything_after_it() -> None:
    acked: list[int] = []
    halted: list[BaseException] = []

    async def ack(event: int) -> None:
        acked.append(event)

    async def fail(event: int, exc: Exception) -> None:
        raise OSError("the outcome producer is gone")

    async def halt(reason: BaseException) -> None:
        halted.append(reason)

    async def handler(event: int) -> None:
        if event == 1:
            raise RuntimeError("boom")

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=4, fail=fail, halt=halt)
    for offset in range(4):
        await scheduler.submit("p", offset, f"k{offset}", offset, handler)
    assert await scheduler.drain(1)
    assert acked == [0], "the commit point stays before the event without an outcome"
    assert [type(reason) for reason in halted] == [OSError]
    assert scheduler.in_flight == 0


async def test_without_a_failure_recorder_a_raising_handler_halts_and_is_not_acked() -> None:
    acked: list[int] = []
    halted: list[BaseException] = []

    async def ack(event: int) -> None:
        acked.append(event)

    async def halt(reason: BaseException) -> None:
        halted.append(reason)

    async def handler(event: int) -> None:
        raise ValueError("bug")

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=4, halt=halt)
    await scheduler.submit("p", 0, "k", 0, handler)
    assert await scheduler.drain(1)
    assert acked == [] and [str(reason) for reason in halted] == ["bug"]


async def test_events_that_complete_while_an_ack_waits_are_acked_in_order_by_it() -> None:
    acked: list[int] = []
    slow_ack = asyncio.Event()
    gates = {offset: asyncio.Event() for offset in range(4)}

    async def ack(event: int) -> None:
        if event == 0:
            await slow_ack.wait()
        acked.append(event)

    finished: list[int] = []

    async def handler(event: int) -> None:
        await gates[event].wait()
        finished.append(event)

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=8)
    for offset in range(4):
        await scheduler.submit("p", offset, f"k{offset}", offset, handler)
    gates[0].set()
    await asyncio.wait_for(_until(lambda: finished == [0]), 2)  # its ack waits
    for offset in (2, 1, 3):
        gates[offset].set()
    await asyncio.wait_for(_until(lambda: scheduler.in_flight == 1), 2)  # only the acking task is left
    assert acked == []
    slow_ack.set()
    assert await scheduler.drain(2)
    assert acked == [0, 1, 2, 3]


async def test_a_submitter_cancelled_while_waiting_for_room_leaves_its_slot_to_the_next() -> None:
    release = asyncio.Event()
    ran: list[int] = []
    submitters: list[asyncio.Task[None]] = []

    async def ack(event: int) -> None:
        if event == 0:  # its slot was just handed to the first submitter waiting, which has not run yet
            submitters[0].cancel()

    async def handler(event: int) -> None:
        ran.append(event)
        if event == 0:
            await release.wait()

    scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=1)
    await scheduler.submit("p", 0, "a", 0, handler)
    submitters.append(asyncio.create_task(scheduler.submit("p", 1, "b", 1, handler)))
    submitters.append(asyncio.create_task(scheduler.submit("p", 2, "c", 2, handler)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(submitters[1], 1)
    assert submitters[0].cancelled()
    assert await scheduler.drain(1)
    await asyncio.wait_for(scheduler.submit("p", 3, "d", 3, handler), 1)
    assert await scheduler.drain(1)
    assert ran == [0, 2, 3]


@settings(max_examples=200, deadline=None)
@given(
    max_in_flight=st.integers(1, 16),
    weights=st.lists(st.integers(1, 20), min_size=1, max_size=25),
    gives_back=st.booleans(),
    data=st.data(),
)
def test_items_take_as_many_slots_as_they_hold_events(max_in_flight, weights, gives_back, data) -> None:
    """Items of several events (an internal record's) take one slot per event, and an item whose
    handler gives slots back (``Slots``: its events finishing one by one) holds only the rest: what
    runs never holds more than ``max_in_flight`` slots unless one item alone does, items start in
    the order submitted, the next one starts as soon as it fits the slots still held, and acks
    follow offset order."""

    async def scenario() -> None:
        acked: list[int] = []
        started: list[int] = []
        finish = {offset: asyncio.Event() for offset in range(len(weights))}
        slots = [Slots(weight) for weight in weights]

        async def ack(offset: int) -> None:
            acked.append(offset)

        async def handler(offset: int) -> None:
            started.append(offset)
            await finish[offset].wait()

        scheduler = KeyOrderedScheduler(ack=ack, max_in_flight=max_in_flight)

        async def submit_all() -> None:
            for offset, weight in enumerate(weights):
                await scheduler.submit(
                    "p", offset, offset, offset, handler, slots[offset] if gives_back else weight
                )

        def held(offset: int) -> int:
            return slots[offset].held if gives_back else weights[offset]

        submitter = asyncio.create_task(submit_all())
        finished: set[int] = set()
        while len(finished) < len(weights):
            for _ in range(5):  # let the submitter and the handlers run as far as they can
                await asyncio.sleep(0)
            running = [offset for offset in started if offset not in finished]
            holding = sum(held(offset) for offset in running)
            assert started == list(range(len(started))), "items start in the order submitted"
            assert holding <= max_in_flight or len(running) == 1, (running, holding)
            if len(started) < len(weights):
                assert running, "with nothing running the next item starts, whatever its weight"
                assert holding + weights[len(started)] > max_in_flight, "the next item fits, yet waits"
            which = data.draw(st.sampled_from(running))
            if gives_back and slots[which].held > 1 and data.draw(st.booleans()):
                slots[which].give_back()  # one of its events finished
            else:
                finish[which].set()
                finished.add(which)
        await submitter
        assert await scheduler.drain(1)
        assert acked == list(range(len(weights)))
        assert scheduler._running == 0
        slots[0].give_back()  # after its item ended (or never submitted as Slots): nothing to give
        assert scheduler._running == 0

    asyncio.run(scenario())


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.001)
