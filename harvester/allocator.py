"""Giving the C allocator's free memory back to the system during a long crawl.

glibc's malloc keeps memory that was freed (by SQLite's page caches and statements, by lxml,
by the buffers of a written batch) for reuse instead of returning it, most of all in the
separate arena each thread allocates from (the writer thread's). In a crawl that is 20–40 MiB
on top of what is in use, varying from moment to moment, so the process's RSS, and its peak,
grew with the length of the crawl although nothing it kept did. ``release_free_memory`` calls
glibc's ``malloc_trim(0)``, which returns the free pages of every arena; elsewhere (musl,
macOS, Windows) there is no such call and it does nothing.

``keep_large_blocks_out_of_the_heap`` fixes glibc's mmap threshold. By default it moves: each
time a block mapped on its own is freed, blocks up to that size (up to 32 MiB) are carved from
the heap from then on. A batch's buffers (its pickled form, the pages it carries: 8-10 MiB)
then landed in the heap, and what they left free between the blocks still in use stayed in
the process: in a 30,000-record crawl the crawl's process grew by 7 MiB (fragments, no live
objects: tracemalloc saw none) and the writer process swung by 25-35 MiB a batch. With the
threshold fixed at 256 KiB, a large block is mapped when it is made and unmapped when it is
freed: the crawl's process swung without that trend and the writer's highest swing fell by
10 MiB (docs/performance.md, "Memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections.abc import Callable
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    # not glibc (musl has no malloc_trim)
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None) if libc else None
    return trim


# mallopt's parameter number for the threshold, and the threshold: above the bodies of record
# pages (37 KiB on the live site, a few hundred KiB at worst), below a batch's buffers.
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK_BYTES = 256 * 1024


def keep_large_blocks_out_of_the_heap() -> bool:
    """Every block of ``LARGE_BLOCK_BYTES`` or more gets memory of its own, given back when it
    is freed (see above); inherited by processes forked after it. False where that cannot be
    set (not glibc)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class PeriodicRelease:
    """``release_free_memory`` at most once every ``interval`` seconds, from any thread.

    A trim walks every arena (a few milliseconds for a crawl's heap), so it is not worth
    doing after every small write; every few seconds keeps the free memory bounded.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return False
            self._last = now
        return release_free_memory()
