"""The C allocator's settings for the worker process: memory freed after a burst goes back to the system.

With glibc's defaults a worker's resident memory climbs with the work it has done rather than
with what it holds (measured on the many-contacts benchmark: 40 MB of free memory kept in the
heap after 100k events, and growing). Two defaults cause it:

* The mmap threshold is dynamic: each time a block above it is freed (a fetch response, a
  record of ~1 MB, an encoded batch), glibc raises it to that block's size, up to 32 MiB, so
  later large blocks come from the heap, where the small long-lived allocations around them
  (RocksDB's cache blocks, librdkafka's messages) keep the freed space from being returned.
  A fixed threshold keeps every block of ``MMAP_THRESHOLD_BYTES`` or more in a mapping of its own,
  unmapped when freed.
* Every thread that allocates can get an arena of its own (up to 8 per core: RocksDB's flush
  and compaction threads, librdkafka's broker threads), each keeping its own free memory.
  ``ARENA_MAX`` arenas are shared by all threads instead.

``tune_allocator`` sets both with ``mallopt`` at the start of ``signal-sync worker``, before the
Kafka clients and RocksDB start their threads. glibc's own environment variables
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``) win: a value set there is left alone. On
another C library (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""``mallopt`` parameter numbers (glibc's malloc.h)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's initial threshold, kept fixed: blocks this large are mapped and unmapped on their own."""
ARENA_MAX = 2
"""Arenas shared by every thread: the event loop's and the client libraries' threads."""

SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
)
"""(glibc's environment variable for it, ``mallopt`` parameter, value)."""

Mallopt = Callable[[int, int], int]


def glibc_mallopt() -> Mallopt | None:
    """glibc's ``mallopt``, or None when the process runs on another C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]


def tune_allocator(mallopt: Mallopt | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Apply ``SETTINGS`` not already set through glibc's environment variables; returns the names
    of those applied (none on another C library)."""
    mallopt = mallopt if mallopt is not None else glibc_mallopt()
    environ = os.environ if environ is None else environ
    applied: list[str] = []
    if mallopt is None:
        return applied
    for variable, parameter, value in SETTINGS:
        if variable in environ:
            continue
        if mallopt(parameter, value) == 1:
            applied.append(variable)
        else:
            log.warning("mallopt refused %s=%d; the allocator keeps its default", variable, value)
    return applied
