"""`harvester reparse`: re-derive every stored record from its stored page, with no request.

After a parser fix (and a bump of ``harvester.parsing.PARSER_VERSION``), each record that has a
stored page (``records.raw_page_sha256``) is read again exactly as the crawl read it:
``harvester.judge.judge_page`` rebuilds the response the downloader built and judges it with the
crawl's own function, then the record goes through the conflict rule to the record writer, as
the crawl's records do. The writer compares with what is stored, so only records whose content
changed are rewritten and get a version; every record gets the new parser version. It runs as a
crawl run of its own (``crawl_runs.spider = 'reparse'``, no pages fetched), so its versions name
it.

What a re-parse never does: fetch anything, touch ``last_seen_at`` (nothing was seen on the
site), or lose a stored record. A page that no longer gives a valid record goes to quarantine
(with its page) and the stored record stays as it was; a page that is no longer a record page
(or a stored body that is not HTML, "not_html") is counted and left alone. Records without a
stored page are counted and left alone.

On every core: ``jobs`` processes decompress and judge the stored pages (``harvester reparse
--jobs``, the cores by default); this process reads the compressed pages from the database,
hands them out and writes what comes back, in the order it read them, through one record
writer; they are forked from this process where that is safe, in milliseconds, and else come
from a fork server, and this process judges only while they start (``JudgingPool.map``). What
comes back refers to each page by its key (``rawpages.stored_reference``), not its body. The
conflict rule therefore sees the pages in the same order whatever ``jobs`` is, and the
records, versions and quarantine rows written are the same. ``jobs=1`` judges in this
process, with no pool. A judging process that dies stops the run with
``JudgingProcessDied`` (what was judged before is written; running it again finishes the
job); Ctrl-C reaches the judging processes too, which leave it to this one: it stops handing
out pages, writes what was judged and finishes the run as ``shutdown``. It stops between two
tasks (``CtrlC``), never inside a database query; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select

from harvester import settings as defaults
from harvester.conflicts import RunSightings
from harvester.db import chunks
from harvester.history import RecordHistory, versions_of_run
from harvester.items import FetchedPage
from harvester.judge import Judgement, Parser, judge_page
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.processes import ctrl_c_held, fork_is_safe, pickle_judgements_by_init
from harvester.rawpages import DICTIONARIES, RAW_PAGES, decoded_page, stored_reference
from harvester.store import (
    RECORDS,
    RecordWriter,
    WriteCounts,
    finish_run,
    now_utc,
    start_run,
    written_figures,
)

try:  # Python >= 3.14; the backport before, as in harvester.rawpages
    # mypy checks as 3.11 (pyproject.toml), whose standard library has no compression package
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

logger = logging.getLogger(__name__)

# Records per transaction, as in the crawl.
BATCH_SIZE: int = defaults.HARVESTER_BATCH_SIZE
# Pages per task handed to a judging process: about a tenth of a second of work, so handing
# over costs little against it and every process has work until the end.
PAGES_PER_TASK = 50
# Tasks handed out and not taken back yet, per judging process: enough that none waits for
# work while this process writes, few enough that memory stays flat whatever the database.
TASKS_AHEAD_PER_JOB = 3

# A ``raw_pages`` row as stored, its body still compressed: what a judging process is sent.
StoredRow = dict[str, Any]
Task = TypeVar("Task")
Result = TypeVar("Result")
Key = TypeVar("Key")


class JudgingProcessDied(RuntimeError):
    """A process judging pages for ``reparse`` or ``quarantine.replay`` died (killed, out of
    memory). Raised by ``JudgingPool.map``; the caller writes what was judged before, finishes
    its run as ``judging_process_died`` and re-raises; the CLI prints it. Running the command
    again finishes the job: a re-parse judges every page again, a replay every row still open.
    """


def default_jobs() -> int:
    """The cores this process may run on (a CPU affinity or cpuset counts)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class PageJudge:
    """Decompresses stored pages and judges them: in the re-parse's own process (one job), or
    one in each judging process, which learns the zstd dictionaries stored when it starts,
    and any trained since from the tasks it gets."""

    def __init__(self, parse: Parser) -> None:
        self.parse = parse
        self._dictionaries: dict[int, Any] = {}

    def learn(self, dictionaries: Mapping[int, bytes]) -> None:
        for dictionary_id, content in dictionaries.items():
            if dictionary_id not in self._dictionaries:
                self._dictionaries[dictionary_id] = zstd.ZstdDict(content)

    def page(self, row: StoredRow) -> FetchedPage:
        """The stored page decompressed and checked (``rawpages.decoded_page``)."""
        return decoded_page(row, self._dictionaries)

    def judge(self, row: StoredRow) -> Judgement:
        """The page judged; the judgement refers to the page without its body (it is stored
        already: ``rawpages.stored_reference``), so sending it back costs little."""
        judgement = judge_page(self.page(row), parse=self.parse)
        if judgement.page is not None:
            judgement.page = stored_reference(judgement.page)
            if judgement.record is not None and judgement.record.raw is not None:
                judgement.record.raw.fetched_page = judgement.page
        return judgement


def stored_row(row: Mapping[Any, Any]) -> StoredRow:
    """A ``raw_pages`` row as plain values that pickle (PostgreSQL gives memoryviews)."""
    return {
        name: row[name]
        for name in (
            "sha256",
            "codec",
            "dictionary_id",
            "url",
            "status",
            "content_type",
            "encoding",
            "fetched_at",
            "redirect_urls",
        )
    } | {"body": bytes(row["body"])}


def stored_rows_by_key(connection: Connection, keys: Iterable[str]) -> dict[str, StoredRow]:
    """The stored pages with these keys, still compressed (missing ones are left out)."""
    found: dict[str, StoredRow] = {}
    for chunk in chunks(list(dict.fromkeys(keys))):
        query = select(RAW_PAGES).where(RAW_PAGES.c.sha256.in_(chunk))
        for row in connection.execute(query).mappings():
            found[row["sha256"]] = stored_row(row)
    return found


def stored_dictionaries(
    connection: Connection, ids: Iterable[int] | None = None
) -> dict[int, bytes]:
    """The zstd dictionaries of the raw pages (those with these ids, if given)."""
    query = select(DICTIONARIES.c.id, DICTIONARIES.c.dictionary)
    if ids is not None:
        query = query.where(DICTIONARIES.c.id.in_(list(ids)))
    return {int(i): bytes(content) for i, content in connection.execute(query)}


def check_jobs(jobs: int, parse: Parser) -> None:
    """Refuse, before anything starts, what a pool of ``jobs`` processes could not do."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if jobs == 1:
        return
    try:
        pickle.dumps(parse)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(
            f"judging in {jobs} processes needs a parser they can import "
            f"(a module-level function), not {parse!r}: {error}"
        ) from error


class JudgingPool:
    """Judges stored pages in the order they are read: in this process (``jobs=1``), or in
    ``jobs`` processes (``_started_pool``) with a bounded number of tasks handed out ahead.

    A context manager: leaving it stops the processes (the tasks they hold are finished,
    those waiting are dropped).
    """

    def __init__(
        self, jobs: int, parse: Parser, dictionaries: Mapping[int, bytes] | None = None
    ) -> None:
        """``dictionaries``: the zstd dictionaries stored when the run starts (a database has
        one: harvester.rawpages trains one only when there is none), which every judging
        process learns when it starts."""
        check_jobs(jobs, parse)
        self.jobs = jobs
        self._judge = PageJudge(parse)  # one job: this process judges
        self._dictionaries: dict[int, bytes] = dict(dictionaries or {})
        self._judge.learn(self._dictionaries)
        # One trained later (by a crawl writing to the same database) is sent with every task
        # instead, as the judging processes know only those they started with.
        self._known_at_start = frozenset(self._dictionaries)
        self._executor: ProcessPoolExecutor | None = None
        self._started: Future[None] = _done(None)  # once the judging processes are forked
        self._children_before: set[Any] = set()
        if jobs > 1:
            self._children_before = set(multiprocessing.active_children())
            self._executor, self._started = _started_pool(jobs, parse, self._dictionaries)

    def __enter__(self) -> JudgingPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._executor is not None:
            self._started.exception()  # waits: no process is started after the shutdown
            self._executor.shutdown(wait=True, cancel_futures=True)

    def learn(self, connection: Connection, rows: Iterable[StoredRow]) -> None:
        """Load the dictionaries of these rows not known yet, before they are handed out."""
        wanted = {r["dictionary_id"] for r in rows if r["dictionary_id"] is not None}
        wanted -= set(self._dictionaries)
        if not wanted:
            return
        loaded = stored_dictionaries(connection, wanted)
        self._judge.learn(loaded)
        self._dictionaries.update(loaded)

    def map(
        self,
        function: Callable[[PageJudge, Task], Result],
        tasks: Iterable[tuple[Key, Task]],
    ) -> Iterator[tuple[Key, Result]]:
        """``function(judge, task)`` for each task, in order, with the key that came with the
        task (kept in this process). ``function`` must be a module-level function."""
        if self._executor is None:
            for key, task in tasks:
                yield key, function(self._judge, task)
            return
        # Each with whether the pool judges it (else it was judged here, and is done).
        pending: deque[tuple[Key, Future[Result], bool]] = deque()
        ahead = self.jobs * TASKS_AHEAD_PER_JOB
        in_pool = 0
        remaining = iter(tasks)
        try:
            # While the judging processes start (the fork server imports the parser: a second
            # of one core), the first tasks are held for them and this process judges the next
            # ones, instead of leaving a core idle. A run of a few tasks is all theirs.
            held: list[tuple[Key, Task]] = []
            here: list[tuple[Key, Result]] = []
            while not self._started.done():
                if (item := next(remaining, None)) is None:
                    break
                if len(held) < ahead:
                    held.append(item)
                else:
                    here.append((item[0], function(self._judge, item[1])))
            self._started.result()  # the pool could not start: why
            for key, task in held:
                pending.append((key, self._submit(function, task), True))
                in_pool += 1
            pending.extend((key, _done(result), False) for key, result in here)
            del held, here
            for key, task in remaining:
                pending.append((key, self._submit(function, task), True))
                in_pool += 1
                while pending and (pending[0][1].done() or in_pool >= ahead):
                    key, future, pooled = pending.popleft()
                    in_pool -= pooled
                    yield key, future.result()
            while pending:
                key, future, _ = pending.popleft()
                yield key, future.result()
        except BrokenProcessPool as error:
            self._kill_the_others()
            raise JudgingProcessDied(
                "a judging process died (killed, out of memory?): what was judged before it "
                "is written; run the command again to finish"
            ) from error

    def _submit(self, function: Callable[[PageJudge, Task], Result], task: Task) -> Future[Result]:
        assert self._executor is not None
        later = {i: d for i, d in self._dictionaries.items() if i not in self._known_at_start}
        return self._executor.submit(_in_worker, function, task, later)

    def _kill_the_others(self) -> None:
        """After one judging process died: end the others now. The pool sends them SIGTERM
        and waits for them; Python 3.11's pool was seen waiting forever on one that lived on
        (a run stuck for good instead of an error), so they are not left to it."""
        for child in set(multiprocessing.active_children()) - self._children_before:
            child.kill()


def _started_pool(
    jobs: int, parse: Parser, dictionaries: Mapping[int, bytes]
) -> tuple[ProcessPoolExecutor, Future[None]]:
    """``jobs`` judging processes, started with Ctrl-C ignored (or, forked from here, held
    back) from their first instruction: one pressed while they start would otherwise print
    their tracebacks. (An ignored signal stays ignored across fork and exec, and Python keeps
    it so; a blocked one stays blocked across fork.) The future is done once they are forked.

    Where it is safe, they are forked from this process (``_start_method``): they start at
    once with the parser imported and warm, and share this process's memory until they write
    to it. On the benchmark that is 1.35 ms of CPU per page over all processes instead of
    1.66 from a fork server (``docs/performance.md``), the difference between 1.5x and 1.8x
    the one-core rate on two cores.

    Otherwise they are forked from a fork server, a fresh process that imports the parser
    once (most of a second of CPU), rather than spawned, each importing it again; this
    process judges meanwhile (``JudgingPool.map``). Ctrl-C is ignored here only while the
    fork server itself is forked and executed (milliseconds), and then in it and every
    process it forks: ignored for the whole start, over a second, a Ctrl-C pressed meanwhile
    was lost and the run went on to the end. Where there is no fork server, they are
    spawned, Ctrl-C ignored here until they are.
    """
    method = _start_method()
    logger.debug("Judging processes: %d, started by %s", jobs, method)
    context = multiprocessing.get_context(method)
    if method == "fork":
        with ctrl_c_held():
            # Forked now, by this thread: a pool forks them all at its first task.
            executor, started = _pool(jobs, parse, dictionaries, context, in_thread=False)
        return executor, started
    if method == "spawn":
        with _ctrl_c_ignored():
            executor, started = _pool(jobs, parse, dictionaries, context)
            started.exception()  # waits for them to be spawned
        return executor, started
    from multiprocessing import forkserver  # POSIX only

    # The main module too, as spawned processes import it: a parser may be defined there.
    # And the parser's own module, which every process would import to unpickle it.
    context.set_forkserver_preload(list(dict.fromkeys(["__main__", parse.__module__, __name__])))
    with _ctrl_c_ignored():
        forkserver.ensure_running()  # no wait for its imports
    return _pool(jobs, parse, dictionaries, context)


def _start_method() -> str:
    """How judging processes start: forked from this process when that is safe
    (``harvester.processes.fork_is_safe``: the re-parse and replay commands run
    single-threaded up to here, their writer thread starts with the first write)."""
    if fork_is_safe():
        return "fork"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _pool(
    jobs: int,
    parse: Parser,
    dictionaries: Mapping[int, bytes],
    context: Any,
    *,
    in_thread: bool = True,
) -> tuple[ProcessPoolExecutor, Future[None]]:
    """The pool, and a future done once its processes are started: by a thread
    (``in_thread``), as starting one waits for the fork server to be ready (its imports),
    or here."""
    executor = ProcessPoolExecutor(
        jobs,
        mp_context=context,
        initializer=_judging_process_started,
        initargs=(parse, dict(dictionaries)),
    )
    started: Future[None] = Future()

    def start() -> None:
        try:
            for _ in range(jobs):  # one process is started per task handed out, up to jobs
                executor.submit(int)
        except BaseException as error:
            started.set_exception(error)
        else:
            started.set_result(None)

    if in_thread:
        threading.Thread(target=start, name="judging-pool-start", daemon=True).start()
    else:
        start()
    return executor, started


def _done(result: Result) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_result(result)
    return future


@contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Ctrl-C ignored in this process, and in the processes it starts meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change it; the caller's Ctrl-C is not ours
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# The judging process's own judge, made once when it starts.
_process_judge: PageJudge | None = None


def _judging_process_started(parse: Parser, dictionaries: Mapping[int, bytes]) -> None:
    """In a judging process: leave Ctrl-C to the parent, and end with it.

    Ctrl-C reaches every process of the terminal's group; the parent stops handing out pages,
    writes what came back and stops the pool, so a judging process must not die first. A
    parent killed outright cannot stop the pool, and a process waiting for its next task
    would wait forever: it ends once its parent (the re-parse, or the fork server, which ends
    with the re-parse) is gone. The crawl's judging processes do the same
    (``harvester.crawl_session``, whose import would cost each process half a second).
    """
    global _process_judge
    # SIGTERM stays deadly: a pool whose process died stops the others with it, and waits
    # for them; the parent itself has no handler for it either.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_pid = os.getppid()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    pickle_judgements_by_init()
    _process_judge = PageJudge(parse)
    _process_judge.learn(dictionaries)


def _in_worker(
    function: Callable[[PageJudge, Task], Result], task: Task, dictionaries: dict[int, bytes]
) -> Result:
    assert _process_judge is not None
    _process_judge.learn(dictionaries)
    return function(_process_judge, task)


class CtrlC:
    """Ctrl-C during a re-parse or replay, taken as a request to stop: the run stops where it
    asks (``stop_if_pressed``, between two tasks), so the interruption never lands inside a
    database query, nor in a garbage collector's callback, where Python prints it as
    "Exception ignored" and forgets it (the run went on and exited 0). A second Ctrl-C
    interrupts at once, wherever the run is (the handler before this one is back).

    A context manager; on the main thread only (elsewhere there is no signal to take), and
    only where Ctrl-C is not ignored.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._press)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            self._restore()

    def _press(self, signum: int, frame: Any) -> None:
        self.pressed = True
        self._restore()

    def _restore(self) -> None:
        # None: a handler installed from C, which Python cannot put back; its own instead
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        self._installed = False

    def stop_if_pressed(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt


@dataclass
class ReparseReport:
    run_id: int
    parser_version: int
    jobs: int = 1
    pages: int = 0  # stored pages read
    without_page: int = 0  # records with no stored page, left as they were
    not_records: int = 0  # pages that are no longer record pages, left as they were
    conflicts: int = 0
    new: int = 0  # an NCJ number no stored record had (the page now reads another number)
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    versions: int = 0
    seconds: float = 0.0
    not_record_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"Re-parse run {self.run_id} (parser version {self.parser_version}): "
            f"{self.pages} stored pages, {self.new} new / {self.updated} updated / "
            f"{self.unchanged} unchanged, {self.versions} versions, {self.quarantined} "
            f"quarantined, {self.not_records} no longer records, {self.without_page} records "
            f"without a stored page, {self.seconds:.1f} s ({self.pages_per_second:.0f} pages/s, "
            f"{self.jobs} job{'s' if self.jobs > 1 else ''})"
        )

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


def stop_reason(error: BaseException) -> str:
    """A run's ``finish_reason`` when it stopped on this exception."""
    if isinstance(error, KeyboardInterrupt):
        return "shutdown"  # Scrapy's word for a crawl stopped by Ctrl-C
    if isinstance(error, JudgingProcessDied):
        return "judging_process_died"
    return "failed"


def reparse(
    engine: Engine,
    *,
    parse: Parser = parse_page,
    parser_version: int = PARSER_VERSION,
    batch_size: int = BATCH_SIZE,
    jobs: int = 1,
) -> ReparseReport:
    """Re-derive every record that has a stored page; see the module docstring.

    ``jobs``: processes that judge pages (1: this one, no pool); ``parse`` must then be a
    module-level function, which they import.
    """
    check_jobs(jobs, parse)
    with CtrlC() as ctrl_c:
        return _reparse(engine, parse, parser_version, batch_size, jobs, ctrl_c)


def _reparse(
    engine: Engine,
    parse: Parser,
    parser_version: int,
    batch_size: int,
    jobs: int,
    ctrl_c: CtrlC,
) -> ReparseReport:
    started = time.monotonic()
    run_id = start_run(engine, "reparse", {"parser_version": parser_version, "jobs": jobs})
    report = ReparseReport(run_id=run_id, parser_version=parser_version, jobs=jobs)
    history = RecordHistory(parser_version=parser_version, sighting=False)
    writer = RecordWriter(
        engine, run_id=run_id, batch_size=batch_size, batch_seconds=float("inf"), history=history
    )
    sightings = RunSightings()
    try:
        with engine.connect() as connection:
            report.without_page = int(
                connection.scalar(
                    select(func.count())
                    .select_from(RECORDS)
                    .where(RECORDS.c.raw_page_sha256.is_(None))
                )
                or 0
            )
            dictionaries = stored_dictionaries(connection)
        with JudgingPool(jobs, parse, dictionaries) as pool:
            for _, judgements in pool.map(_judge_rows, _stored_pages(engine, pool, batch_size)):
                ctrl_c.stop_if_pressed()
                for judgement in judgements:
                    report.pages += 1
                    if _offer(writer, sightings, report, judgement):
                        writer.flush_blocking()
    except BaseException as error:
        _finish(engine, report, writer, started, stop_reason(error))
        raise
    _finish(engine, report, writer, started, "finished")
    return report


def _stored_pages(
    engine: Engine, pool: JudgingPool, batch_size: int
) -> Iterator[tuple[None, list[StoredRow]]]:
    """The stored pages of the records, in NCJ-number order, a task's worth at a time."""
    after: int | None = None
    while True:
        # A short read per chunk: the writer thread writes meanwhile (SQLite WAL).
        with engine.connect() as connection:
            query = (
                select(RECORDS.c.ncj_number, RAW_PAGES)
                .join(RAW_PAGES, RAW_PAGES.c.sha256 == RECORDS.c.raw_page_sha256)
                .order_by(RECORDS.c.ncj_number)
                .limit(batch_size)
            )
            if after is not None:
                query = query.where(RECORDS.c.ncj_number > after)
            rows = connection.execute(query).mappings().all()
            if not rows:
                return
            pages = [stored_row(row) for row in rows]
            pool.learn(connection, pages)
        after = rows[-1]["ncj_number"]
        del rows
        for start in range(0, len(pages), PAGES_PER_TASK):
            yield None, pages[start : start + PAGES_PER_TASK]


def _judge_rows(judge: PageJudge, rows: Sequence[StoredRow]) -> list[Judgement]:
    judgements = [judge.judge(row) for row in rows]
    for judgement in judgements:
        if judgement.verdict == "record" and judgement.record is not None:
            # Only a quarantined record keeps the values as shown: less to send back.
            judgement.record.raw = None
    return judgements


def _finish(
    engine: Engine, report: ReparseReport, writer: RecordWriter, started: float, reason: str
) -> None:
    """Write what was judged, and finish the run with what it did."""
    counts = writer.close()
    report.new, report.updated = counts.new, counts.updated
    report.unchanged, report.quarantined = counts.unchanged, counts.quarantined
    with engine.connect() as connection:
        report.versions = versions_of_run(connection, report.run_id)
    report.seconds = time.monotonic() - started
    finish_run(engine, report.run_id, _run_figures(report, counts, writer.failed_batches, reason))
    if reason == "finished":
        logger.info("%s", report.summary())
    else:
        logger.warning("Stopped (%s): %s", reason, report.summary())


def _offer(
    writer: RecordWriter,
    sightings: RunSightings,
    report: ReparseReport,
    judgement: Judgement,
) -> bool:
    """Hand a re-derived record to the writer; True when its batch is full."""
    if judgement.verdict == "not_record":
        reason = judgement.not_record or "no_record_fields"
        report.not_records += 1
        report.not_record_reasons[reason] = report.not_record_reasons.get(reason, 0) + 1
        logger.warning("No longer a record page (%s): %s", reason, judgement.url)
        return False
    record = judgement.record
    assert record is not None
    if judgement.rejection is not None:
        logger.warning(
            "Re-parsed page quarantined (%s): %s", judgement.rejection, record.source_url
        )
        return writer.add_quarantined(record, judgement.rejection)
    assert judgement.digest is not None
    verdict = sightings.offer(record, judgement.digest)
    if verdict.conflict is not None:
        report.conflicts += 1
        logger.info("Conflict: %s", verdict.conflict)
    if not verdict.keep:
        return False
    record.raw = None
    return writer.add(record, judgement.page, judgement.digest)


def _run_figures(
    report: ReparseReport, counts: WriteCounts, failed_batches: int, reason: str
) -> dict[str, Any]:
    return {
        "finished_at": now_utc(),
        "finish_reason": reason,
        "pages_fetched": 0,
        **written_figures(counts),
        "errors": failed_batches,
        "conflicts": report.conflicts,
        "stats": {
            "harvester/stored_pages": report.pages,
            "harvester/records_without_page": report.without_page,
            "harvester/non_record": report.not_record_reasons,
            "harvester/versions": report.versions,
            "harvester/seconds": round(report.seconds, 3),
            "harvester/jobs": report.jobs,
        },
    }
