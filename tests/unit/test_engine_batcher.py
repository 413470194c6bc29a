"""Batching and coalescing: per-contact order across batches, flush on size and linger."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

from signal_sync.engine.batcher import AGAIN, Batcher, Group


async def turns_until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let the loop run until ``condition`` holds; fails after ``turns`` turns."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_events_of_one_contact_coalesce_and_later_ones_wait_for_the_in_flight_batch() -> None:
    sent: list[list[tuple[str, list[int]]]] = []
    release = asyncio.Event()

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        sent.append([(g.contact, list(g.items)) for g in groups])
        if len(sent) == 1:
            await release.wait()
        return [[f"ok-{g.contact}-{item}" for item in g.items] for g in groups]

    batcher = Batcher(send_batch, max_items=10, linger_s=0.01)
    first = [batcher.put("a", n) for n in (1, 2)]
    other = batcher.put("b", 1)
    await asyncio.sleep(0.03)  # the first batch is now in flight
    late = batcher.put("a", 3)
    await asyncio.sleep(0.03)
    assert sent == [[("a", [1, 2]), ("b", [1])]], "a's 3 must wait: a's batch is in flight"
    release.set()
    placed = await asyncio.gather(*first, other, late)
    assert sent[1] == [("a", [3])]
    assert [(p.result, p.position, p.group_size) for p in placed] == [
        ("ok-a-1", 0, 2),
        ("ok-a-2", 1, 2),
        ("ok-b-1", 0, 1),
        ("ok-a-3", 0, 1),
    ]
    assert placed[0].first and placed[1].last


async def test_a_full_batch_is_sent_without_waiting_for_the_linger() -> None:
    sizes: list[int] = []

    async def send_batch(groups: list[Group]) -> list[list[None]]:
        sizes.append(len(groups))
        return [[None] * len(g.items) for g in groups]

    batcher = Batcher(send_batch, max_items=3, linger_s=60)
    await asyncio.wait_for(asyncio.gather(*(batcher.put(f"c{n}", n) for n in range(6))), 1)
    assert sizes == [3, 3]


async def test_a_failing_batch_fails_its_events_and_frees_the_contact() -> None:
    calls = 0

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return [["ok"] * len(g.items) for g in groups]

    batcher = Batcher(send_batch, max_items=5, linger_s=0.001)
    try:
        await batcher.put("a", 1)
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the batch's exception must reach the event")
    assert (await batcher.put("a", 2)).result == "ok"


async def test_a_contact_is_never_in_two_batches_at_once_when_a_flush_splits_its_waiting_events() -> None:
    """Waiting events are put back when their contact's batch ends; if that fills the next batch, the
    rest of the contact's waiting events must wait again (not open a second batch that could
    overtake the first one while it is retried)."""
    in_flight: list[set[str]] = []
    overlaps: list[str] = []
    sent: list[list[tuple[str, list[int]]]] = []
    release_first = asyncio.Event()

    async def send_batch(groups: list[Group]) -> list[list[None]]:
        contacts = {g.contact for g in groups}
        overlaps.extend(c for batch in in_flight for c in contacts & batch)
        in_flight.append(contacts)
        sent.append([(g.contact, list(g.items)) for g in groups])
        try:
            await (release_first.wait() if len(sent) == 1 else asyncio.sleep(0.05))
            return [[None] * len(g.items) for g in groups]
        finally:
            in_flight.remove(contacts)

    batcher = Batcher(send_batch, max_items=2, linger_s=0.01)
    tasks = [batcher.put(c, n) for c, n in (("a", 1), ("b", 1))]
    await asyncio.sleep(0)  # batch 1 {a, b} is in flight
    tasks += [batcher.put(c, n) for c, n in (("a", 2), ("a", 3), ("c", 1))]
    await asyncio.sleep(0.001)
    release_first.set()  # a's 2 joins c in a full batch; a's 3 must wait for that batch
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert not overlaps, f"contact(s) {overlaps} were in two batches at once: {sent}"
    assert [items for batch in sent for contact, items in batch if contact == "a"] == [[1], [2], [3]]


async def test_items_answered_again_go_into_the_next_batch_ahead_of_the_contacts_later_ones() -> None:
    sent: list[list[tuple[str, list[int]]]] = []
    release = asyncio.Event()

    async def send_batch(groups: list[Group]) -> list[list[object]]:
        sent.append([(g.contact, list(g.items)) for g in groups])
        if len(sent) == 1:
            await release.wait()
        # the first item of a group is done; the rest are placed again
        return [[f"ok-{g.items[0]}", *[AGAIN] * (len(g.items) - 1)] for g in groups]

    batcher = Batcher(send_batch, max_items=10, linger_s=0)
    first = [batcher.put("a", n) for n in (1, 2, 3)]
    await turns_until(lambda: bool(sent))
    late = batcher.put("a", 4)  # arrives while a's batch is in flight
    await asyncio.sleep(0)
    release.set()
    placed = await asyncio.wait_for(asyncio.gather(*first, late), 5)
    assert sent == [[("a", [1, 2, 3])], [("a", [2, 3, 4])], [("a", [3, 4])], [("a", [4])]]
    assert [p.result for p in placed] == ["ok-1", "ok-2", "ok-3", "ok-4"]


async def test_a_group_finished_early_has_its_results_and_frees_its_contact_while_the_batch_runs() -> None:
    slow = asyncio.Event()
    sent: list[list[str]] = []

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        sent.append([g.contact for g in groups])
        quick = [g for g in groups if g.contact == "quick"]
        for group in quick:
            group.finish([f"ok-{item}" for item in group.items])
        if any(g.contact == "slow" for g in groups):
            await slow.wait()
        return [[f"ok-{item}" for item in g.items] for g in groups]

    batcher = Batcher(send_batch, max_items=10, linger_s=0)
    quick = batcher.put("quick", 1)
    waits = batcher.put("slow", 2)
    assert (await asyncio.wait_for(quick, 5)).result == "ok-1", "answered before the slow group is"
    again = await asyncio.wait_for(batcher.put("quick", 3), 5)  # its contact is free: a new batch
    assert again.result == "ok-3" and not waits.done()
    slow.set()
    assert (await asyncio.wait_for(waits, 5)).result == "ok-2"
    assert sent == [["quick", "slow"], ["quick"]]


async def test_a_linger_ending_while_every_slot_is_busy_keeps_collecting_until_one_is_answered() -> None:
    sent: list[list[str]] = []
    answers: list[asyncio.Event] = []

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        sent.append([g.contact for g in groups])
        answer = asyncio.Event()
        answers.append(answer)
        await answer.wait()
        return [["ok"] * len(g.items) for g in groups]

    batcher = Batcher(send_batch, max_items=10, linger_s=0, max_sending=1)
    first = batcher.put("a", 1)
    await turns_until(lambda: bool(sent))  # the first linger sends {a}: a slot is free
    later = [batcher.put(contact, 1) for contact in ("b", "c")]
    for _ in range(20):  # many lingers end meanwhile; the only slot is busy
        await asyncio.sleep(0)
    more = batcher.put("d", 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert sent == [["a"]], "nothing more is sent while the one slot is busy"
    answers[0].set()
    await first
    await turns_until(lambda: len(sent) == 2)
    assert sent[1] == ["b", "c", "d"], "the held batch goes whole once the slot is free"
    answers[1].set()
    await asyncio.gather(*later, more)


async def test_a_full_batch_goes_even_while_every_sending_slot_is_busy() -> None:
    sent: list[list[str]] = []
    answer = asyncio.Event()

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        sent.append([g.contact for g in groups])
        await answer.wait()
        return [["ok"] * len(g.items) for g in groups]

    batcher = Batcher(send_batch, max_items=2, linger_s=0, max_sending=1)
    tasks = [batcher.put("a", 1)]
    await turns_until(lambda: bool(sent))
    tasks += [batcher.put(contact, 1) for contact in ("b", "c")]
    await turns_until(lambda: len(sent) == 2)
    assert sent == [["a"], ["b", "c"]]
    answer.set()
    await asyncio.gather(*tasks)


class Item:
    """An item a weak reference can follow."""


async def test_an_answered_batch_leaves_no_reference_cycle_behind() -> None:
    """A sent group's ``finish`` refers to the group: it is reset once the batch is answered, so the
    batch's items are freed as soon as nothing uses them, not at a later garbage collection."""

    async def send_batch(groups: list[Group]) -> list[list[str]]:
        return [["ok"] * len(group.items) for group in groups]

    batcher = Batcher(send_batch, max_items=10, linger_s=0)
    item = Item()
    freed = weakref.ref(item)
    gc.disable()
    try:
        future = batcher.put("a", item)
        del item
        assert (await asyncio.wait_for(future, 1)).result == "ok"
        for _ in range(3):  # the send task ends and its done callback runs
            await asyncio.sleep(0)
        assert freed() is None
    finally:
        gc.enable()
