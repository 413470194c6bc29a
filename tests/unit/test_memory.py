"""The glibc memory knobs: applied where glibc is present, refused when switched off."""

from __future__ import annotations

import os
import platform

import pytest

from signal_sync import memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt/malloc_trim are glibc's")


def test_zero_arenas_means_glibcs_default_and_changes_nothing():
    assert memory.limit_arenas(0) is False


@glibc
def test_arena_cap_is_accepted_by_glibc():
    assert memory.limit_arenas(8) is True  # 8 per core is glibc's own default: harmless here


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@glibc
def test_free_pages_in_the_middle_of_the_heap_are_given_back():
    # Blocks above pymalloc's 512-byte limit come from malloc; keeping every 16th leaves the freed
    # runs as whole pages between live blocks, which glibc keeps resident until malloc_trim.
    blocks = [bytes(4000) for _ in range(20_000)]  # ~80 MB
    kept = blocks[::16]
    del blocks
    before = resident_mb()
    assert memory.release_free_memory() is True
    assert before - resident_mb() > 40
    assert len(kept) == 1_250
