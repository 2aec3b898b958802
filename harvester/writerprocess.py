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

A batch goes over the pipe as one message, pickled, and then its pages' bodies, each as it
is (pickle's out-of-band buffers): a copy of 8 MiB of pages inside the message would be held
in both processes while the batch is written, on top of the batch itself.

The process is forked as the run opens, before the crawl's process has a second thread, a
database connection or a lock (``harvester.processes``); elsewhere it is spawned.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import io
import logging
import multiprocessing
import os
import pickle
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from multiprocessing.util import Finalize
from typing import TYPE_CHECKING, Any

from harvester.allocator import keep_large_blocks_out_of_the_heap
from harvester.items import FetchedPage
from harvester.processes import (
    ctrl_c_held,
    fork_is_safe,
    leave_signals_to_the_crawl,
    name_this_process,
)

if TYPE_CHECKING:
    from harvester.items import PageVisit, Record
    from harvester.store import RecordWriter, WriteCounts

    Batch = tuple[
        list[tuple[Record, str]], list[dict[str, Any]], list[PageVisit], dict[int, FetchedPage]
    ]

# What ``ps``/``top`` call the writer process (Linux): told apart from the judging processes.
PROCESS_NAME = "harvester-write"

logger = logging.getLogger(__name__)


class _MessagePickler(pickle.Pickler):
    """ForkingPickler's reducers (the dataclasses' among them: harvester.processes), with
    pages' bodies out of band. Not a ForkingPickler: that passes on positional arguments
    only, and the buffer callback is a keyword."""

    def __init__(self, file: io.BytesIO, buffer_callback: Any) -> None:
        super().__init__(file, 5, buffer_callback=buffer_callback)
        self.dispatch_table = copyreg.dispatch_table.copy()
        self.dispatch_table.update(getattr(ForkingPickler, "_extra_reducers", {}))
        self.dispatch_table[FetchedPage] = _page_with_its_body_apart


def _page_with_its_body_apart(page: FetchedPage) -> tuple[Any, ...]:
    values = [getattr(page, name) for name in _PAGE_FIELDS]
    values[_BODY_AT] = pickle.PickleBuffer(page.body)
    return FetchedPage, tuple(values)


_PAGE_FIELDS = [field.name for field in dataclasses.fields(FetchedPage)]
_BODY_AT = _PAGE_FIELDS.index("body")


def _send(connection: Connection, message: tuple[Any, ...]) -> None:
    """The message's count of bodies, the message, then each body as it is (no copy).
    Raises NotSendable before anything is sent if it cannot be pickled."""
    bodies: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    try:
        _MessagePickler(stream, bodies.append).dump(message)
    except Exception as error:
        raise NotSendable(str(error)) from error
    connection.send_bytes(len(bodies).to_bytes(4, "big"))
    connection.send_bytes(stream.getbuffer())
    del stream  # the process has it: not held here while it writes
    for body in bodies:
        connection.send_bytes(body.raw())


def _receive(connection: Connection) -> Any:
    count = int.from_bytes(connection.recv_bytes(), "big")
    message = connection.recv_bytes()
    bodies = [connection.recv_bytes() for _ in range(count)]
    return pickle.loads(message, buffers=bodies)


class WriterProcessDied(Exception):
    """The writer process is gone (killed, out of memory): whether the batch it held was
    committed is unknown."""


class NotSendable(Exception):
    """A batch that cannot be pickled to the writer process (a thread would write it)."""


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
    or when the crawl is gone. Each answer is ("ok", value, log records) or, when the writer
    raised (a bug, not a database error: those it handles itself), ("raised", trace, log
    records), which the courier raises in the crawl as a writer thread's exception would be."""
    if crawl_end is not None:
        crawl_end.close()  # a forked copy: only the crawl's end may keep the pipe open
    leave_signals_to_the_crawl(crawl_pid)
    name_this_process(PROCESS_NAME)
    keep_large_blocks_out_of_the_heap()  # inherited when forked
    kept = _Kept()
    writer: RecordWriter | None = None
    while True:
        try:
            message = _receive(connection)
        except (EOFError, OSError):  # the crawl is gone
            os._exit(0)
        if message[0] == "close":
            if writer is not None:
                writer.engine.dispose()
            connection.send(("ok", None, kept.taken()))
            return
        try:
            if message[0] == "open":
                _, database_url, options, log_level = message
                root = logging.getLogger()
                root.handlers[:] = [kept]
                root.setLevel(log_level)
                from harvester.db import create_engine_for
                from harvester.store import RecordWriter

                writer = RecordWriter(create_engine_for(database_url), **options)
                answer: Any = None
            else:  # "write"
                assert writer is not None, "a batch before the writer was opened"
                counts = writer._write(*message[1])
                answer = (counts, writer.fatal, writer.last_written)
        except Exception:
            connection.send(("raised", traceback.format_exc(), kept.taken()))
        else:
            connection.send(("ok", answer, kept.taken()))


def _least_handled_level() -> int:
    """The lowest level any of the crawl's log handlers takes: the writer process need not
    send what would be thrown away here."""
    levels = [handler.level for handler in logging.getLogger().handlers]
    return min(levels, default=logging.WARNING) or logging.DEBUG


class WriterProcess:
    """The process a crawl's ``RecordWriter`` has its batches written by, one at a time.

    Started at once (forked when ``harvester.processes.fork_is_safe``, else spawned); the
    writer's options come with ``open``. ``open`` and ``write`` are called by one thread (the
    writer's courier thread), ``close`` once that thread is done. A crawl that ends without
    closing it (one that failed to start after its run was made) ends it at exit.
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
        # Before multiprocessing's own exit handler, which would SIGTERM it (ignored: it leaves
        # the signals to the crawl) and then wait for it forever, the pipe still open.
        self._end = Finalize(
            self, _end_process, args=(self._connection, self._process), exitpriority=10
        )
        logger.debug("Writer process %s, %s", self._process.pid, "forked" if forked else "spawned")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _ask(self, message: tuple[Any, ...], timeout: float | None = None) -> Any:
        if self.broken:
            raise WriterProcessDied
        try:
            _send(self._connection, message)
            if timeout is not None and not self._connection.poll(timeout):
                raise TimeoutError(f"no answer from the writer process in {timeout:.0f} s")
            outcome, value, records = self._connection.recv()
        except (EOFError, OSError) as error:  # OSError: BrokenPipeError, TimeoutError
            self.broken = True
            self._end()  # it must not write on while the crawl writes the batch itself
            raise WriterProcessDied from error
        _relay(records)
        if outcome == "raised":
            raise RuntimeError(f"the writer process raised:\n{value}")
        return value

    def open(self, database_url: str, options: dict[str, Any]) -> None:
        self._ask(("open", database_url, options, _least_handled_level()))

    def write(self, batch: Batch) -> tuple[WriteCounts, str | None, float]:
        """The batch written there: its counts, why the database takes no more writes (or
        None), and when a batch last committed. Raises WriterProcessDied, NotSendable, or
        RuntimeError (the writer raised)."""
        answer: tuple[WriteCounts, str | None, float] = self._ask(("write", batch))
        return answer

    def close(self) -> None:
        """Tell the process to end and wait for it (its connections close first); one that
        does not answer in 30 s is killed. It takes no batch after this."""
        if not self.broken:
            with contextlib.suppress(WriterProcessDied, RuntimeError):
                self._ask(("close",), timeout=30)
        self.broken = True
        self._end()


def _end_process(connection: Connection, process: BaseProcess) -> None:
    """Close the crawl's end of the pipe (the process ends on it) and wait for the process,
    killing it if it does not end."""
    connection.close()
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()


def _relay(records: list[logging.LogRecord]) -> None:
    """The writer process's log records, through the crawl's own logging (its handlers,
    levels, and Scrapy's log counts), as if logged here."""
    for record in records:
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
