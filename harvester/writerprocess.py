"""The crawl's record writer in a process of its own (HARVESTER_WRITER_PROCESS).

Why a process and not the writer thread it replaces: the writer's Python (building the rows
and the history of a batch, and binding every row of each ``executemany``, which lets go of
the GIL around each SQLite step and takes it back) competes with the reactor thread for the
crawl process's one GIL. Measured on the benchmark site (docs/performance.md), a crawl that
wrote nothing fetched and judged 436 records/s, and the same crawl writing in a thread 303:
the reactor thread was waiting for the GIL. In its own process the writer has its own GIL
and its own connection; the crawl's process only hands each batch over (one pickle, in the
pool's feeder thread) and reads back what the batch did.

The process runs the same ``RecordWriter._write`` a writer thread runs, so retries, the
one-by-one fallback, quarantine and fatal errors behave the same; what its writer learns that
the crawl must know (the database refuses writes, when a batch last committed) comes back with
each batch's counts, and its log records are relayed to the crawl's logging. A writer process
that dies (killed, out of memory) loses nothing: the crawl keeps every batch until its answer
comes, and writes the batch it held, and the rest of the run, in a thread of its own.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from harvester.processes import leave_signals_to_the_crawl, name_this_process

if TYPE_CHECKING:
    from harvester.items import FetchedPage, PageVisit, Record
    from harvester.store import RecordWriter, WriteCounts

# What ``ps``/``top`` call the writer process (Linux): told apart from the judging processes.
PROCESS_NAME = "harvester-write"

logger = logging.getLogger(__name__)

# In the writer process: the writer its batches go to (set by ``_writer_process_started``).
_writer: RecordWriter | None = None


def _writer_process_started(
    crawl_pid: int,
    database_url: str,
    options: dict[str, Any],
    logs: multiprocessing.Queue[logging.LogRecord],
    log_level: int,
) -> None:
    global _writer
    leave_signals_to_the_crawl(crawl_pid)
    name_this_process(PROCESS_NAME)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    root.setLevel(log_level)
    from harvester.db import create_engine_for
    from harvester.store import RecordWriter

    engine = create_engine_for(database_url)
    # Exit handlers run last registered first: the connections close before the quick exit.
    atexit.register(engine.dispose)
    _writer = RecordWriter(engine, **options)


def _ready() -> int:
    return os.getpid()


def _write_batch(
    records: list[tuple[Record, str]],
    quarantined: list[dict[str, Any]],
    visits: list[PageVisit],
    pages: dict[int, FetchedPage],
) -> tuple[WriteCounts, str | None, float]:
    """In the writer process: write one batch; its counts, why the database takes no more
    writes (or None), and when a batch last committed."""
    assert _writer is not None, "the writer process was not started by WriterProcess"
    counts = _writer._write(records, quarantined, visits, pages)
    return counts, _writer.fatal, _writer.last_written


class _Relay(logging.Handler):
    """In the crawl's process: a log record of the writer process, through the crawl's own
    logging (its handlers, levels, Scrapy's log counts), as if logged here."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _least_handled_level() -> int:
    """The lowest level any of the crawl's log handlers takes: the writer process need not
    send what would be thrown away here."""
    levels = [handler.level for handler in logging.getLogger().handlers]
    return min(levels, default=logging.WARNING) or logging.DEBUG


class WriterProcess:
    """The process a crawl's ``RecordWriter`` hands its batches to (one at a time)."""

    def __init__(self, database_url: str, options: dict[str, Any]) -> None:
        # Spawned, not forked: a fork would copy the reactor, its threads and the open
        # database connections into the child.
        context = multiprocessing.get_context("spawn")
        self._logs: multiprocessing.Queue[logging.LogRecord] = context.Queue()
        self._relay = logging.handlers.QueueListener(self._logs, _Relay())
        self._relay.start()
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=context,
            initializer=_writer_process_started,
            initargs=(os.getpid(), database_url, options, self._logs, _least_handled_level()),
        )
        self.broken = False
        # Started now, while the crawl starts, rather than when the first batch is full.
        self._pool.submit(_ready)

    def submit(
        self,
        records: list[tuple[Record, str]],
        quarantined: list[dict[str, Any]],
        visits: list[PageVisit],
        pages: dict[int, FetchedPage],
    ) -> Future[tuple[WriteCounts, str | None, float]]:
        """Raises BrokenProcessPool when the process has died."""
        return self._pool.submit(_write_batch, records, quarantined, visits, pages)

    def died(self) -> None:
        """The process is gone: no more batches go to it."""
        if not self.broken:
            self.broken = True
            self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Wait for the process to finish (it has no batch left by now) and stop relaying."""
        try:
            self._pool.shutdown(wait=True)
        finally:
            self._relay.stop()
            self._logs.close()
