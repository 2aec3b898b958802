"""A Scrapy extension for finding what grows in the crawl's process (not loaded by default).

Every ``MEMPROBE_EVERY`` items scraped it logs one JSON line: the RSS and the anonymous
memory of the process (``/proc/self/smaps_rollup``), the Python objects by type that grew
since the previous line (``gc.get_objects``), SQLite's own heap (``sqlite3_memory_used``)
and what each open SQLite connection holds (page cache, schema, prepared statements); with
``MEMPROBE_TRACEMALLOC=1`` tracemalloc's top growth by line since the previous line; with
``MEMPROBE_TRIM=1`` the RSS again after ``malloc_trim(0)`` (how much is free memory the
allocator keeps) and how long the trim took. Load it with the crawl's own extensions::

    -s 'EXTENSIONS={"harvester.crawl_session.CrawlRun": 100, ...,
                    "benchmarks.memprobe.MemoryProbe": 900}'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import os
import sqlite3
import threading
import time
import tracemalloc
from collections import Counter
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def _status_kib(name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def _rollup_kib() -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                found[parts[0].rstrip(":")] = int(parts[1])
    return found


def _sqlite_library() -> Any:
    name = ctypes.util.find_library("sqlite3")
    return ctypes.CDLL(name) if name is not None else None


def _sqlite_heap() -> int | None:
    library = _sqlite_library()
    if library is None:
        return None
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


# sqlite3_db_status verbs: what one connection holds (SQLite's sqlite3.h).
_DB_STATUS = {"cache": 1, "schema": 2, "statements": 3}


def _connections_kib() -> list[dict[str, int]] | None:
    """Per open sqlite3 connection of the process: its page cache, schema and prepared
    statements in KiB (``connection_kib``)."""
    if _sqlite_library() is None:
        return None
    found = []
    for connection in gc.get_objects():
        if isinstance(connection, sqlite3.Connection):
            used = connection_kib(connection)
            if used is not None:
                found.append(used)
    return found


def connection_kib(connection: sqlite3.Connection) -> dict[str, int] | None:
    """One sqlite3 connection's page cache, schema and prepared statements in KiB
    (``sqlite3_db_status``); None when closed, or no libsqlite3 is found.

    CPython does not expose a connection's ``sqlite3 *``: it is the first field after the
    object header of ``pysqlite_Connection`` (Modules/_sqlite/connection.h, 3.11), read here
    with ctypes. Only for this probe, on the libsqlite3 that _sqlite3 links to.
    """
    library = _sqlite_library()
    if library is None:
        return None
    status = library.sqlite3_db_status
    status.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = ctypes.c_void_p.from_address(id(connection) + object.__basicsize__).value
    if not handle:
        return None  # closed
    used: dict[str, int] = {}
    for name, verb in _DB_STATUS.items():
        current, highest = ctypes.c_int(), ctypes.c_int()
        status(handle, verb, ctypes.byref(current), ctypes.byref(highest), 0)
        used[name] = current.value // 1024
    return used


class MemoryProbe:
    def __init__(self, every: int) -> None:
        self.every = every
        self.items = 0
        self.types: Counter[str] = Counter()
        self.trace = os.environ.get("MEMPROBE_TRACEMALLOC") == "1"
        self.trim = os.environ.get("MEMPROBE_TRIM") == "1"
        self.snapshot: Any = None
        self.crawler: Crawler | None = None
        if self.trace:
            tracemalloc.start(5)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> MemoryProbe:
        probe = cls(crawler.settings.getint("MEMPROBE_EVERY", 5000))
        probe.crawler = crawler
        crawler.signals.connect(probe.item_scraped, signal=signals.item_scraped)
        return probe

    def item_scraped(self, item: Any, response: Any, spider: Any) -> None:
        self.items += 1
        if self.items % self.every == 0:
            self.report()

    def _pool_status(self) -> str | None:
        from harvester.crawl_session import run_of

        run = run_of(self.crawler) if self.crawler is not None else None
        engine = getattr(run, "engine", None)
        return engine.pool.status() if engine is not None else None

    def report(self) -> None:
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        grown = {t: n - self.types[t] for t, n in types.items() if n - self.types[t] > 200}
        self.types = types
        line: dict[str, Any] = {
            "items": self.items,
            "rss_kib": _status_kib("VmRSS"),
            "anonymous_kib": _rollup_kib().get("Anonymous"),
            "sqlite_heap": _sqlite_heap(),
            "sqlite_connections_kib": _connections_kib(),
            "objects": len(gc.get_objects()),
            "threads": threading.active_count(),
            "pool": self._pool_status(),
            "grown_types": dict(sorted(grown.items(), key=lambda kv: -kv[1])[:15]),
        }
        if self.trace:
            snapshot = tracemalloc.take_snapshot()
            if self.snapshot is not None:
                diff = snapshot.compare_to(self.snapshot, "lineno")[:15]
                line["tracemalloc_top"] = [str(d) for d in diff]
            line["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
            self.snapshot = snapshot
        if self.trim:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            started = time.perf_counter()
            libc.malloc_trim(0)
            line["trim_ms"] = round((time.perf_counter() - started) * 1000, 1)
            line["rss_after_trim_kib"] = _status_kib("VmRSS")
        logger.warning("memprobe %s", json.dumps(line))
