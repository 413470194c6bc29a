"""The worker's C allocator settings: fixed mmap threshold and shared arenas on glibc, the
environment's own values respected, nothing done elsewhere."""

from __future__ import annotations

import platform

import pytest

from signal_sync import allocator
from signal_sync.allocator import (
    ARENA_MAX,
    M_ARENA_MAX,
    M_MMAP_THRESHOLD,
    MMAP_THRESHOLD_BYTES,
    glibc_mallopt,
    tune_allocator,
)


class RecordingMallopt:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.answer


def test_both_settings_are_applied_when_the_environment_sets_neither() -> None:
    mallopt = RecordingMallopt()
    applied = tune_allocator(mallopt, environ={})
    assert mallopt.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_ARENA_MAX, ARENA_MAX)]
    assert applied == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"]


def test_a_value_set_through_glibcs_environment_variable_is_left_alone() -> None:
    mallopt = RecordingMallopt()
    applied = tune_allocator(mallopt, environ={"MALLOC_ARENA_MAX": "4"})
    assert mallopt.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)]
    assert applied == ["MALLOC_MMAP_THRESHOLD_"]


def test_a_refused_setting_is_logged_and_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    applied = tune_allocator(RecordingMallopt(answer=0), environ={})
    assert applied == []
    assert "mallopt refused MALLOC_ARENA_MAX=2" in caplog.text


def test_another_c_library_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert glibc_mallopt() is None
    assert tune_allocator(environ={}) == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_settings() -> None:
    assert tune_allocator(environ={}) == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"]


def test_the_worker_command_tunes_the_allocator_before_the_kafka_clients_start() -> None:
    import inspect

    from signal_sync.cli import worker

    source = inspect.getsource(worker.register)
    assert source.index("tune_allocator()") < source.index("check_topics(")
