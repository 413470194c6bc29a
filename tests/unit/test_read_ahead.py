"""Delivery topics (``streams.read_ahead``) through Faust's own record hand-over.

Faust's conductor (``ConductorCompiler.build``) hands a fetched record to every channel of its
partition from the one fetch loop. These tests build that handler as Faust does and hand it
records for a channel whose agent takes none (a paused integration): a ``ReadAheadTopic`` takes
them all and pauses the partition, where Faust's own topic holds the handler, and with it the
fetch loop, once its buffer is full. The second test is also the canary: when a faust-streaming
upgrade stops blocking there, it fails and ``ReadAheadTopic`` may go. The last two are canaries
too: ``ReadAheadQueue`` counts events in asyncio's ``Queue._put`` / ``_get`` and hands them to
mode's pressure checks through ``qsize``; when either stops being the way in, they fail.
"""

from __future__ import annotations

import asyncio

import faust
import orjson
from faust.transport.conductor import ConductorCompiler
from faust.types import TP, Message
from hypothesis import given
from hypothesis import strategies as st
from mode.utils.queues import ThrowableQueue

from signal_sync.streams.read_ahead import ReadAheadQueue, ReadAheadTopic
from tests.unit.test_faust_canary import offline_app

TOPIC = "canary-deliver"
TP0 = TP(TOPIC, 0)


def message(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"contact", b"{}", None)


def agent_channel(
    topic_class: type[faust.Topic], maxsize: int, value_serializer: str = "raw"
) -> tuple[faust.App, faust.ChannelT]:
    """An app and the channel an agent of ``topic_class`` iterates (nothing takes from it)."""
    app = offline_app(f"read-ahead-{topic_class.__name__}")
    app.flow_control.resume()  # as after the worker's start (recovery done)
    topic = topic_class(
        app, topics=[TOPIC], maxsize=maxsize, key_serializer="raw", value_serializer=value_serializer
    )
    return app, topic.clone(is_iterator=True)


async def test_a_full_read_ahead_buffer_takes_fetched_records_and_pauses_its_partition() -> None:
    app, channel = agent_channel(ReadAheadTopic, maxsize=5)
    assert isinstance(channel, ReadAheadTopic) and isinstance(channel.queue, ReadAheadQueue)
    app.consumer._active_partitions = {TP0}
    hand_over = ConductorCompiler().build(app.topics, TP0, {channel})
    for offset in range(12):  # more than the buffer holds, from one fetch
        await asyncio.wait_for(hand_over(message(offset)), 5)  # returns: never waits for the agent
    assert channel.queue.qsize() == 12
    assert TP0 in app.consumer._buffered_partitions  # paused: the next fetch leaves it out
    assert TP0 not in app.consumer._active_partitions


async def test_faust_s_own_topic_holds_the_hand_over_once_its_buffer_is_full() -> None:
    app, channel = agent_channel(faust.Topic, maxsize=5)
    app.consumer._active_partitions = {TP0}
    hand_over = ConductorCompiler().build(app.topics, TP0, {channel})
    for offset in range(5):
        await asyncio.wait_for(hand_over(message(offset)), 5)
    blocked = asyncio.create_task(hand_over(message(5)))
    while not channel.queue._putters and not blocked.done():  # the put waits for room, or it returned
        await asyncio.sleep(0)
    assert not blocked.done(), "Faust no longer waits for a full buffer: ReadAheadTopic may go"
    channel.queue.get_nowait()  # the agent takes one: the hand-over finishes
    await asyncio.wait_for(blocked, 5)


def pressure_log(queue: ThrowableQueue, steps: list[bool]) -> list[tuple[str, int]]:
    """Drive ``queue`` as the conductor (a put) and an agent (a get) do; when the pressure calls came."""
    calls: list[tuple[str, int]] = []
    for n, put in enumerate(steps):
        if put:
            queue.put_nowait_enhanced(
                n,
                on_pressure_high=lambda: calls.append(("pause", queue.qsize())),
                on_pressure_drop=lambda: calls.append(("resume", queue.qsize())),
            )
        elif not queue.empty():
            queue.get_nowait()
    return calls


@given(maxsize=st.integers(min_value=1, max_value=100), steps=st.lists(st.booleans(), max_size=300))
def test_pauses_and_resumes_come_as_with_faust_s_own_buffer(maxsize: int, steps: list[bool]) -> None:
    """The same puts and gets give the same pressure calls as Faust's ``ThrowableQueue``; only
    ``full`` differs."""

    async def run() -> None:
        app = offline_app("read-ahead-pressure")
        ours = ReadAheadQueue(maxsize=maxsize, flow_control=app.flow_control, clear_on_resume=True)
        faust_s = ThrowableQueue(maxsize=maxsize, flow_control=app.flow_control, clear_on_resume=True)
        assert pressure_log(ours, steps) == pressure_log(faust_s, steps)
        assert ours.qsize() == faust_s.qsize() and not ours.full()

    asyncio.run(run())


def internal_record(offset: int, events: int) -> Message:
    """An internal record carrying ``events`` events, as its JSON value arrives."""
    value = orjson.dumps({"events": [{"n": n} for n in range(events)]})
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"contact", value, None)


async def test_the_buffer_counts_the_events_its_records_carry() -> None:
    """A live stream's records carry an event or two: they fill the read-ahead only once their
    events do, and a backlog's full records after a few records."""
    for per_record, records_before_pause in ((1, 8), (2, 4), (3, 3), (8, 1)):
        app, channel = agent_channel(ReadAheadTopic, maxsize=10, value_serializer="json")
        app.consumer._active_partitions = {TP0}
        hand_over = ConductorCompiler().build(app.topics, TP0, {channel})
        for offset in range(records_before_pause):  # 80% of 10 events reached by this record
            await hand_over(internal_record(offset, per_record))
            assert TP0 in app.consumer._active_partitions
        await hand_over(internal_record(records_before_pause, per_record))
        assert TP0 not in app.consumer._active_partitions, per_record
        assert channel.queue.qsize() == (records_before_pause + 1) * per_record


class Held:
    """A buffered item with a decoded value, as Faust's ``Event``."""

    def __init__(self, value: object) -> None:
        self.value = value


values = st.one_of(
    st.builds(lambda n: {"events": [{}] * n}, st.integers(0, 20)),
    st.just({"events": "not a list"}),
    st.just({}),
    st.none(),
    st.binary(max_size=4),
)


@given(
    steps=st.lists(
        st.one_of(values.map(lambda v: ("put", v)), st.sampled_from(["get", "clear"])), max_size=80
    )
)
def test_the_size_is_the_events_of_the_records_held(steps: list[object]) -> None:
    """Whatever is put, taken or cleared, the size is the events the held records carry (a record
    without any counts one), and 0 exactly when nothing is held."""

    async def run() -> None:
        app = offline_app("read-ahead-events")
        queue = ReadAheadQueue(maxsize=10, flow_control=app.flow_control, clear_on_resume=True)
        held: list[Held] = []
        for step in steps:
            if step == "clear":
                queue.clear()
                held.clear()
            elif step == "get":
                if held:
                    assert queue.get_nowait() is held.pop(0)
            else:
                item = Held(step[1])
                queue.put_nowait_enhanced(item, on_pressure_high=lambda: None, on_pressure_drop=lambda: None)
                held.append(item)
            expected = sum(
                max(1, len(h.value["events"]))
                if isinstance(h.value, dict) and isinstance(h.value.get("events"), list)
                else 1
                for h in held
            )
            assert queue.qsize() == expected
            assert (queue.qsize() == 0) == queue.empty()

    asyncio.run(run())
