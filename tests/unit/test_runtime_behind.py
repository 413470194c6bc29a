"""When the worker counts as behind its input: what makes the output producer hold records."""

from __future__ import annotations

import time

from signal_sync.runtime import BEHIND_FOR_S, DELIVERY_BEHIND_S, create_runtime
from tests.unit.factories import settings


def test_the_worker_is_behind_while_its_reader_is_or_for_a_while_after_an_old_internal_record() -> None:
    runtime = create_runtime(settings(), partitions=1)
    assert runtime.outputs.behind == runtime.behind  # what the output producer asks
    assert not runtime.behind()

    runtime.note_delivery_lag(time.time())  # a live stream's internal record
    assert not runtime.behind()
    runtime.note_delivery_lag(time.time() - DELIVERY_BEHIND_S - 0.05)
    assert runtime.behind()
    assert 0 < runtime.delivery_behind_until - time.monotonic() <= BEHIND_FOR_S
    runtime.note_delivery_lag(time.time())  # a fresh record does not end it: the time does
    assert runtime.behind()

    runtime.delivery_behind_until = time.monotonic() - 0.001
    assert not runtime.behind()
    runtime.source_reader.behind = True
    assert runtime.behind()
