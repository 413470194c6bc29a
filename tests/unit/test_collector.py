"""The worker's garbage-collector settings: a higher young threshold at start, and the objects
alive once the app has started frozen out of later collections, garbage collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import faust
import pytest

from signal_sync import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """What the test changes in this process's collector, undone."""
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freezing_collects_garbage_first_and_keeps_live_objects_out_of_collections(
    restored_collector,
) -> None:
    garbage = Node()
    collected = weakref.ref(garbage)
    del garbage
    alive = Node()
    frozen = collector.freeze_startup_objects()
    assert collected() is None  # the cycle was freed, not frozen
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects())  # in the permanent generation now
    assert alive.me is alive


async def test_install_raises_the_young_threshold_and_freezes_when_the_app_has_started(
    restored_collector,
) -> None:
    app = faust.App("collector-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
    _, middle, oldest = gc.get_threshold()
    collector.install(app)
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, oldest)
    assert gc.get_freeze_count() == 0
    (startup_task,) = app._app_tasks  # what Faust runs once the tables are recovered
    await startup_task()
    assert gc.get_freeze_count() > 0
