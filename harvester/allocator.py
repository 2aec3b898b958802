"""Giving the C allocator's free memory back to the system during a long crawl.

glibc's malloc keeps memory that was freed (by SQLite's page caches and statements, by lxml,
by the buffers of a written batch) for reuse instead of returning it, most of all in the
separate arena each thread allocates from (the writer thread's). In a crawl that is 20–40 MiB
on top of what is in use, varying from moment to moment, so the process's RSS, and its peak,
grew with the length of the crawl although nothing it kept did. ``release_free_memory`` calls
glibc's ``malloc_trim(0)``, which returns the free pages of every arena; elsewhere (musl,
macOS, Windows) there is no such call and it does nothing.
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
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


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
