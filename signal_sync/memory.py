"""Keeping the worker's resident memory close to what it actually holds (glibc only).

Python objects come from pymalloc, but record values, fetch buffers and librdkafka's queues
come from malloc, in several threads: Faust's consumer thread, librdkafka's threads, the
executor threads. glibc gives threads their own arenas and keeps freed pages, so while a
backlog drains the worker's RSS grows past its live data. The two glibc knobs many Python
services set for this (``MALLOC_ARENA_MAX``, periodic ``malloc_trim``) are applied here from
the config, because an environment variable would have to be set before the process starts.
Where glibc is absent (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt parameter number of M_ARENA_MAX in glibc's malloc.h."""


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 (glibc only: musl and macOS have no mallopt/malloc_trim)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int) -> bool:
    """Cap malloc arenas for threads created from now on (0 keeps glibc's default); True if applied."""
    libc = _libc()
    if arenas <= 0 or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Give the free pages inside malloc's heaps back to the OS; True if any were released."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))
