"""The crawl's record writer in a process of its own (HARVESTER_WRITER_PROCESS).

Why a process and not the writer thread it replaces: the writer's Python (building the rows
and the history of a batch, and binding every row of each ``executemany``, which lets go of
the GIL around each SQLite step and takes it back) competes with the reactor thread for the
crawl process's one GIL. Measured on the benchmark site (docs/performance.md), a crawl that
wrote nothing fetched and judged 436 records/s, the same crawl writing in a thread 303: the
reactor thread was waiting for the GIL. In its own process the writer has its own GIL and its
own connection.

The process runs the same ``RecordWriter._write`` a writer thread runs, so retries, the
one-by-one fallback, quarantine and fatal errors behave the same. The crawl's writer thread
stays, as the courier: it hands a batch over, waits for its answer (the counts, why the
database takes no more writes, when a batch last committed, and the log records the batch
made, logged again in the crawl's process) and writes the batch itself if the process died
with it, and every batch after it: nothing is lost.

The process is forked as the run opens, before the crawl's process has a second thread, a
database connection or a lock (``harvester.processes``); elsewhere it is spawned.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from harvester.processes import (
    ctrl_c_held,
    fork_is_safe,
    leave_signals_to_the_crawl,
    name_this_process,
)

if TYPE_CHECKING:
    from harvester.items import FetchedPage, PageVisit, Record
    from harvester.store import RecordWriter, WriteCounts

    Batch = tuple[
        list[tuple[Record, str]], list[dict[str, Any]], list[PageVisit], dict[int, FetchedPage]
    ]

# What ``ps``/``top`` call the writer process (Linux): told apart from the judging processes.
PROCESS_NAME = "harvester-write"

logger = logging.getLogger(__name__)


class WriterProcessDied(Exception):
    """The writer process is gone (killed, out of memory): whether the batch it held was
    committed is unknown."""


class _Kept(logging.Handler):
    """In the writer process: the log records of the batch under way, sent with its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # As logging.handlers.QueueHandler.prepare: the message made here, nothing unpicklable.
        record.msg = self.format(record) if record.exc_info else record.getMessage()
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        self.records.append(record)

    def taken(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


def _serve(connection: Connection, crawl_end: Connection | None, crawl_pid: int) -> None:
    """The writer process: open a writer when told, write batch after batch, end when told
    or when the crawl is gone."""
    if crawl_end is not None:
        crawl_end.close()  # a forked copy: only the crawl's end may keep the pipe open
    leave_signals_to_the_crawl(crawl_pid)
    name_this_process(PROCESS_NAME)
    kept = _Kept()
    writer: RecordWriter | None = None
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the crawl is gone
            os._exit(0)
        if message[0] == "open":
            _, database_url, options, log_level = message
            root = logging.getLogger()
            root.handlers[:] = [kept]
            root.setLevel(log_level)
            from harvester.db import create_engine_for
            from harvester.store import RecordWriter

            engine = create_engine_for(database_url)
            # Exit handlers run last registered first: the connections close before the
            # quick exit of leave_signals_to_the_crawl.
            atexit.register(engine.dispose)
            writer = RecordWriter(engine, **options)
            connection.send(kept.taken())
        elif message[0] == "write":
            assert writer is not None, "a batch before the writer was opened"
            counts = writer._write(*message[1])
            connection.send((counts, writer.fatal, writer.last_written, kept.taken()))
        else:  # "close"
            if writer is not None:
                writer.engine.dispose()
            connection.send(None)
            return


def _least_handled_level() -> int:
    """The lowest level any of the crawl's log handlers takes: the writer process need not
    send what would be thrown away here."""
    levels = [handler.level for handler in logging.getLogger().handlers]
    return min(levels, default=logging.WARNING) or logging.DEBUG


class WriterProcess:
    """The process a crawl's ``RecordWriter`` has its batches written by, one at a time.

    Started at once (forked when ``harvester.processes.fork_is_safe``, else spawned); the
    writer's options come with ``open``. ``write`` and ``open`` are called by one thread (the
    writer's courier thread), ``close`` once that thread is done.
    """

    def __init__(self) -> None:
        forked = fork_is_safe()
        context = (
            multiprocessing.get_context("fork") if forked else multiprocessing.get_context("spawn")
        )
        self._connection, child_end = context.Pipe()
        crawl_end = self._connection if forked else None
        self._process = context.Process(
            target=_serve,
            args=(child_end, crawl_end, os.getpid()),
            name=PROCESS_NAME,
            daemon=True,
        )
        with ctrl_c_held():
            self._process.start()
        child_end.close()
        self.broken = False
        logger.debug("Writer process %s, %s", self._process.pid, "forked" if forked else "spawned")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _ask(self, message: tuple[Any, ...]) -> Any:
        if self.broken:
            raise WriterProcessDied
        try:
            self._connection.send(message)
            answer = self._connection.recv()
        except (EOFError, OSError) as error:
            self.broken = True
            self._connection.close()
            raise WriterProcessDied from error
        return answer

    def open(self, database_url: str, options: dict[str, Any]) -> None:
        _relay(self._ask(("open", database_url, options, _least_handled_level())))

    def write(self, batch: Batch) -> tuple[WriteCounts, str | None, float]:
        """The batch written there: its counts, why the database takes no more writes (or
        None), and when a batch last committed. Raises WriterProcessDied."""
        counts, fatal, last_written, records = self._ask(("write", batch))
        _relay(records)
        return counts, fatal, last_written

    def close(self) -> None:
        """Tell the process to end, and wait for it (its connections close first)."""
        if not self.broken:
            with contextlib.suppress(WriterProcessDied):  # gone already: nothing to wait for
                self._ask(("close",))
            self._connection.close()
        self._process.join(timeout=30)
        if self._process.is_alive():  # stuck: it holds nothing the crawl still needs
            self._process.kill()
            self._process.join()


def _relay(records: list[logging.LogRecord]) -> None:
    """The writer process's log records, through the crawl's own logging (its handlers,
    levels, and Scrapy's log counts), as if logged here."""
    for record in records:
        logging.getLogger(record.name).handle(record)
