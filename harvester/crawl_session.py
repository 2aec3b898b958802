"""The owner of one crawl run, from open to close: the database engine, the run lock and its
heartbeat, the ``crawl_runs`` row, the record writer, the progress watchdog, the post-run
checks and the summary line.

It is a Scrapy extension (EXTENSIONS in settings.py), created before the engine starts, so a
database that cannot be opened, one at another schema revision, or one another crawl is
writing stops the crawl before anything is fetched, with a message that says what to do.
The other components find it with ``run_of(crawler)`` (Scrapy's ``crawler.get_extension``):
the item pipelines hand it records, quarantined records and URL states (``store``,
``store_visit``, ``quarantine``, ``note_visit``), none of them owns a writer; the spider opens
the run's frontier (harvester/frontier.py), whose sitemap ledger the run saves at close. It
counts what Scrapy leaves uncounted (field coverage of the stored records, pipeline errors)
for its checks. It closes the writer itself before it finishes the run, so nothing depends on
the order in which Scrapy closes pipelines and extensions.

It stops the crawl itself, each with its own finish reason (never an "ok" one, so the run
fails its checks and exits 3): ``database_error`` when the database refuses all writes,
``lock_lost`` when another crawl took the run lock, ``no_progress`` when nothing was received
or stored for HARVESTER_NO_PROGRESS_TIMEOUT seconds while requests were outstanding. A run
that Scrapy stopped by force (a second SIGTERM/SIGINT) never reaches its close:
``close_after_forced_stop`` records it as ``forced_stop``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url
from twisted.internet.task import LoopingCall

from harvester.allocator import keep_large_blocks_out_of_the_heap
from harvester.config import database_url, redis_url
from harvester.conflicts import RunSightings
from harvester.coverage import still_missing
from harvester.db import create_engine_for, ensure_schema, reachable_from_another_process
from harvester.distributed import (
    ABANDONED,
    QUEUE_LOST,
    Fleet,
    IssuedPage,
    SharedScheduler,
    SharedSightings,
    Snapshot,
    lost_visit,
)
from harvester.entrypoints import Scope
from harvester.errors import (
    CrawlAlreadyRunning,
    DatabaseUnavailable,
    DistributedRunRefused,
    SchemaError,
)
from harvester.frontier import SITEMAPS_AHEAD, Frontier
from harvester.items import FetchedPage, FetchedResponse, PageVisit, Record, Rejection
from harvester.monitoring import (
    COVERAGE_PREFIX,
    COVERAGE_RECORDS,
    OK_FINISH_REASONS,
    PIPELINE_ERROR_GAPS,
    RUN_COVERAGE_RECORDS,
    RUN_RECORDS_ANSWERED,
    Thresholds,
    check_run,
    check_run_integrity,
    coverage_from_stats,
    covered_fields,
)
from harvester.processes import (
    ctrl_c_held,
    fork_is_safe,
    leave_signals_to_the_crawl,
    name_this_process,
    pickle_judgements_by_init,
)
from harvester.runlock import RunLock, acquire_run_lock, acquire_worker_lock, mark_interrupted_runs
from harvester.store import CRAWL_RUNS, RecordWriter, finish_run, jsonable, now_utc, start_run
from harvester.urlstate import GapRetry, Withdrawal, forget_sitemaps, save_sitemaps
from harvester.writerprocess import WriterProcess

logger = logging.getLogger(__name__)

EXIT_CHECKS_FAILED = 3  # harvester.commands.crawl's status for a run that failed its checks
# How long a run that stopped itself waits for Scrapy to close the spider before it closes
# the run itself and stops the reactor.
STOP_GRACE_SECONDS = 30
# Judging processes that died (killed, out of memory) are replaced this often; past that, the
# run judges its pages in its own process.
MAX_JUDGE_POOL_RESTARTS = 3
# What ``ps``/``top`` call a judging process (Linux).
JUDGING_PROCESS_NAME = "harvester-judge"


class CrawlRun:
    """One crawl's run: see the module's docstring."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.judge_processes = settings.getint("HARVESTER_JUDGE_PROCESSES")
        self._judge_pool: ProcessPoolExecutor | None = None
        self._judge_pool_breaks = 0
        self.closed = False
        # Pages go to the judging processes, judgements come back, records go to the writer
        # process: pickled faster, here and in the processes forked below.
        pickle_judgements_by_init()
        # A batch's buffers are mapped and unmapped on their own, here and in the processes
        # forked below, instead of fragmenting the heap for good (harvester.allocator).
        keep_large_blocks_out_of_the_heap()
        self._writer_process: WriterProcess | None = None
        try:
            # The helper processes first of all, while the crawl's process has one thread, and
            # before it has a database connection or a lock that a copy would hold too: forked,
            # they are ready at once; spawned, each imports its modules for a second of CPU
            # (the first pages waited for the judging process's).
            if self._writes_in_a_process(settings):
                self._writer_process = WriterProcess()
            if self.judge_processes > 0 and fork_is_safe():
                self._judge_pool = self._start_judge_pool("fork")
            self._open_database(crawler)
        except BaseException:
            # Not crawling: its processes must not linger.
            if self._judge_pool is not None:
                self._judge_pool.shutdown(wait=True, cancel_futures=True)
            if self._writer_process is not None:
                self._writer_process.close()
            raise
        self.run_id: int | None = None
        self.writer: RecordWriter | None = None
        self.frontier: Frontier | None = None
        self._coverage: Counter[str] = Counter()  # "records" and fields: see item_scraped
        self.stop_reason: str | None = None  # why the run stopped itself
        self.stop_message: str | None = None
        self._timers: list[LoopingCall] = []
        self._beating = False
        self._fleet_beating = False
        self.no_progress_timeout = settings.getfloat("HARVESTER_NO_PROGRESS_TIMEOUT")
        self._progress_mark: tuple[int, ...] = ()
        self._progress_at = time.monotonic()
        self.started = time.monotonic()

    @staticmethod
    def _writes_in_a_process(settings: BaseSettings) -> bool:
        """HARVESTER_WRITER_PROCESS, where another process can reach the database. Not for a
        distributed run: its writer asks the shared sightings, which only the crawl's process
        holds; nor for an in-memory SQLite database: a writer process would open its own."""
        return (
            settings.getbool("HARVESTER_WRITER_PROCESS")
            and redis_url(settings) is None
            and reachable_from_another_process(database_url(settings))
        )

    def _open_database(self, crawler: Crawler) -> None:
        """Connect, check the schema, and take the run's lock (or join a distributed run)."""
        settings = crawler.settings
        self.url = database_url(settings)
        if settings.get("HARVESTER_AUTO_MIGRATE") is None:
            # Zero set-up for SQLite files; production databases are migrated on purpose.
            auto_migrate = make_url(self.url).get_backend_name() == "sqlite"
        else:
            auto_migrate = settings.getbool("HARVESTER_AUTO_MIGRATE")
        self.heartbeat_interval = settings.getfloat("HARVESTER_HEARTBEAT_INTERVAL")
        # A worker of a distributed run (harvester/distributed.py), or None.
        self.fleet: Fleet | None = None
        try:
            self.engine: Engine = create_engine_for(self.url)
            ensure_schema(self.engine, auto_migrate=auto_migrate)
            if (shared := redis_url(settings)) is not None:
                self.fleet = Fleet(
                    self.engine,
                    shared,
                    heartbeat_interval=self.heartbeat_interval,
                    resume_within=settings.getfloat("HARVESTER_REDIS_RESUME_WITHIN"),
                )
                self.lock: RunLock | None = acquire_worker_lock(
                    self.engine, heartbeat_interval=self.heartbeat_interval
                )
                # Scrapy builds the spider before its extensions: its arguments are known.
                spider = crawler.spider
                assert spider is not None
                self.fleet.join(spider.name, getattr(spider, "arguments", {}))
            else:
                self.lock = acquire_run_lock(
                    self.engine, heartbeat_interval=self.heartbeat_interval
                )
        except (
            DatabaseUnavailable,
            SchemaError,
            CrawlAlreadyRunning,
            DistributedRunRefused,
        ) as error:
            logger.critical("Not crawling: %s", error)
            taken: RunLock | None = getattr(self, "lock", None)
            if taken is not None:  # refused after it was taken: not held while exiting
                taken.release()
            raise
        mark_interrupted_runs(self.engine, stale_after=self.lock.stale_after)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlRun:
        run = cls(crawler)
        crawler.signals.connect(run.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(run.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(run.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(run.item_error, signal=signals.item_error)
        return run

    # --- what the spider asks -------------------------------------------------------------

    def sightings(self) -> RunSightings | SharedSightings:
        """Where the run notes the page it keeps of each record (harvester.conflicts): shared
        by all the workers of a distributed run, so the rule holds across them."""
        if self.fleet is not None and self.fleet.sightings is not None:
            return self.fleet.sightings
        return RunSightings()

    def open_frontier(self, scope: Scope, full: bool, since: datetime | None) -> Frontier:
        """The run's URL knowledge, for a spider that collects on ``scope``'s hosts; the run
        saves its sitemap ledger at close."""
        self.frontier = Frontier.from_settings(
            self.crawler.settings,
            self.engine,
            scope,
            full=full,
            since=since,
            stats=self.crawler.stats,
            # A distributed run's pages are answered by every worker, most of them not seen
            # here: its coordinator reads sitemaps as before, unbounded.
            sitemaps_ahead=SITEMAPS_AHEAD if self.fleet is None else None,
        )
        return self.frontier

    # --- what the pipelines use -----------------------------------------------------------

    def judge_pool(self) -> Executor | None:
        """The processes that judge pages off the reactor thread (HARVESTER_JUDGE_PROCESSES),
        forked as the run opens where that is safe, else spawned on first use, and shut down
        with the run; None: judge in the reactor thread."""
        if self.judge_processes <= 0 or self.closed:
            return None
        if self._judge_pool_breaks > MAX_JUDGE_POOL_RESTARTS:
            return None
        if self._judge_pool is None:
            # Spawned, not forked: a fork now would copy the writer and the reactor's threads
            # and the open database connections into the child.
            self._judge_pool = self._start_judge_pool("spawn")
        return self._judge_pool

    def _start_judge_pool(self, method: str) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.judge_processes,
            mp_context=multiprocessing.get_context(method),
            initializer=judging_process_started,
            initargs=(os.getpid(),),
        )
        logger.debug("Judging processes: %d, started by %s", self.judge_processes, method)
        if method == "fork":
            with ctrl_c_held():
                # Forked now, by this thread: a pool forks them all at its first task.
                for _ in range(self.judge_processes):
                    pool.submit(int)
        return pool

    def judge_pool_broke(self, pool: Executor) -> None:
        """A judging process died: the pages it held are judged again by the caller, and a new
        pool takes the next ones. Every page waiting on the dead pool reports it; it counts once."""
        if pool is not self._judge_pool:
            return
        self._judge_pool = None
        self._judge_pool_breaks += 1
        pool.shutdown(wait=False, cancel_futures=True)
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("harvester/judge_pool_broken")
        logger.error(
            "A judging process died (killed, out of memory?): its pages are judged again in "
            "the crawl's process%s",
            ", and a new one is started"
            if self._judge_pool_breaks <= MAX_JUDGE_POOL_RESTARTS
            else f"; after {self._judge_pool_breaks} deaths, every page from now on",
        )

    # --- what the pipelines hand over --------------------------------------------------

    async def store(self, record: Record, page: FetchedPage | None) -> None:
        # The back-pressure: an item waits while the buffer is full and a write under way.
        await self._writer().add_when_room(record, page)

    async def store_visit(self, visit: PageVisit) -> None:
        await self._writer().add_visit_when_room(visit)

    def quarantine(self, record: Record, rejection: Rejection) -> None:
        """Written with the next batch (a timer writes a stale one)."""
        self._writer().add_quarantined(record, rejection)

    def note_visit(self, visit: PageVisit) -> None:
        """URL state written with the next batch."""
        self._writer().add_visit(visit)

    def _writer(self) -> RecordWriter:
        if self.writer is None:
            raise RuntimeError("the crawl run is not open: no item can be stored")
        return self.writer

    # --- open ----------------------------------------------------------------------------

    def spider_opened(self, spider: Any) -> None:
        self.start(spider.name, getattr(spider, "arguments", {}))
        self.started = time.monotonic()
        self._progress_at = time.monotonic()
        timers = [
            (1.0, self._flush_stale),
            (self.heartbeat_interval, self._heartbeat),
            (min(5.0, max(self.no_progress_timeout / 4, 0.2)), self._watch_progress),
        ]
        if self.fleet is not None:
            timers.append((self.heartbeat_interval, self._fleet_beat))
        for interval, call in timers:
            if interval > 0:
                timer = LoopingCall(call)
                timer.start(interval, now=False)
                self._timers.append(timer)

    def start(self, spider_name: str, arguments: dict[str, Any]) -> RecordWriter:
        if self.writer is None:
            self.run_id = start_run(
                self.engine,
                spider_name,
                arguments,
                distributed_run_id=self.fleet.run_id if self.fleet is not None else None,
            )
            settings = self.crawler.settings
            self.writer = RecordWriter(
                self.engine,
                run_id=self.run_id,
                batch_size=settings.getint("HARVESTER_BATCH_SIZE"),
                batch_seconds=settings.getfloat("HARVESTER_BATCH_SECONDS"),
                withdrawal=Withdrawal(
                    after_runs=settings.getint("HARVESTER_WITHDRAW_AFTER_RUNS"),
                    min_interval=timedelta(
                        seconds=settings.getfloat("HARVESTER_WITHDRAW_MIN_INTERVAL")
                    ),
                ),
                retry=GapRetry(
                    base=timedelta(seconds=settings.getfloat("HARVESTER_GAP_RETRY_BASE")),
                    cap=timedelta(seconds=settings.getfloat("HARVESTER_GAP_RETRY_MAX")),
                ),
                retry_seconds=settings.getfloat("HARVESTER_DB_RETRY_SECONDS"),
                on_fatal=self._refused_writes,
                # Another worker may keep a better page of a record: it is the one written.
                superseded=self.fleet.sightings.superseded
                if self.fleet is not None and self.fleet.sightings is not None
                else None,
                process=self._writer_process,
            )
            if self.fleet is not None:
                self.fleet.attach(self.run_id)
        return self.writer

    # --- while it runs -----------------------------------------------------------------

    def item_scraped(self, item: object, response: object, spider: Spider) -> None:
        # Field coverage of the stored records, for the drift checks (harvester.monitoring):
        # counted here and put in the stats at close, as a stat per field per record costs
        # the reactor thread more than the rest of this.
        if isinstance(item, Record):
            self._coverage["records"] += 1
            self._coverage.update(covered_fields(item))

    def item_error(self, item: object, response: object, spider: Spider, failure: Any) -> None:
        """An exception in a pipeline (not a DropItem): Scrapy logs it and goes on, so the
        record of a page it struck would be lost without a trace. Its URL becomes a gap
        (store_error, the exception in its detail) that the next run retries first, and the
        run fails its checks (harvester.monitoring.missing_records)."""
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("harvester/item_errors")
        gap = lost_record_page(item, failure)
        if gap is None:
            return
        if stats is not None:
            stats.inc_value(PIPELINE_ERROR_GAPS)
        logger.error(
            "Record page not stored (%s): %s; the next run retries it", gap.gap_detail, gap.url
        )
        if self.frontier is not None and isinstance(item, FetchedResponse):
            self.frontier.not_stored(item.from_sitemap)
        if self.writer is not None:
            self.note_visit(gap)

    def _refused_writes(self, message: str) -> None:
        """From the writer thread: the database takes no writes."""
        from twisted.internet import reactor  # the crawl's reactor, installed by now

        reactor.callFromThread(self.stop, "database_error", message)

    def _flush_stale(self) -> None:
        if self.writer is not None and self.writer.is_stale():
            try:
                self.writer.flush_if_idle()
            except Exception:  # a failed write must not stop the timer: log it, go on
                logger.exception("A batch of records could not be written")

    def _heartbeat(self) -> None:
        """Every HARVESTER_HEARTBEAT_INTERVAL s, off the reactor thread: check the lock (take
        it again on a new connection if its connection was lost), then note that the run lives.
        """
        if self._beating or self.closed or self.lock is None:
            return
        self._beating = True

        def beat() -> str:
            assert self.lock is not None
            state = self.lock.check()
            if state != "lost" and self.run_id is not None:
                with self.engine.begin() as connection:
                    connection.execute(
                        update(CRAWL_RUNS)
                        .where(CRAWL_RUNS.c.id == self.run_id)
                        .values(heartbeat_at=now_utc())
                    )
            return state

        def done(state: str) -> None:
            self._beating = False
            if state == "lost":
                self.stop(
                    "lock_lost",
                    "the run lock was lost (its database connection was dropped) and another "
                    "crawl holds it now",
                )

        def failed(failure: Any) -> None:
            self._beating = False
            logger.warning("Heartbeat not written: %s", failure.getErrorMessage())

        from twisted.internet import threads

        threads.deferToThread(beat).addCallbacks(done, failed)

    def _fleet_beat(self) -> None:
        """A distributed run's worker heartbeat (harvester.distributed.Fleet.beat), off the
        reactor thread, with what this process has in hand read here, on it."""
        fleet, engine = self.fleet, self.crawler.engine
        if fleet is None or self.closed or engine._slot is None:
            return
        if self._fleet_beating:
            return
        scheduler = engine._slot.scheduler
        own_queue = isinstance(scheduler, SharedScheduler) and scheduler.in_hand()
        buffered = scheduler.buffered() if isinstance(scheduler, SharedScheduler) else 0
        scraping = engine.scraper.slot is not None and not engine.scraper.slot.is_idle()
        fetching = bool(engine.downloader.active or scraping or own_queue or buffered)
        if not fetching and self.writer is not None and self.writer.holding():
            # Nothing more is coming to this batch: write it now rather than when it goes
            # stale, so that the run's reconcile (which waits for idle workers) can begin.
            self.writer.flush_if_idle()
        idle = not (fetching or (self.writer is not None and self.writer.holding()))
        snapshot = Snapshot(
            idle=idle,
            navigation_done=fleet.start_done and not own_queue and idle,
            buffered=buffered,
        )
        self._fleet_beating = True

        def done(outcome: tuple[str, list[IssuedPage]]) -> None:
            self._fleet_beating = False
            if self.closed:  # the run closed while this beat ran: the next worker acts on it
                return
            action, pages = outcome
            if action == "repush" and fleet.repush is not None:
                fleet.repush(pages)
            elif action == "give_up":
                for page in pages:
                    self.note_visit(lost_visit(page, fleet.run_id))
                if self.crawler.stats is not None:
                    self.crawler.stats.inc_value("harvester/distributed/given_up", len(pages))
            elif action == QUEUE_LOST:
                self.stop(
                    QUEUE_LOST,
                    f"distributed run {fleet.run_id} lost its queue in Redis (restarted "
                    "without persistence, flushed or evicted?): start the workers again; a new "
                    "run requests what is not stored yet",
                )
            elif action == ABANDONED:
                self.stop(
                    ABANDONED,
                    f"distributed run {fleet.run_id} was ended as abandoned while this worker "
                    "stalled (no heartbeat for HARVESTER_REDIS_RESUME_WITHIN): start it again "
                    "to join the run under way",
                )
            elif action == "coordinator_lost":
                self.stop(
                    "coordinator_lost",
                    "this worker coordinated the distributed run and lost its coordinator "
                    "lock (its database connection was dropped); restart it to work on",
                )
            if idle and engine._slot is not None:
                # Scrapy looks for new requests every 5 s when it has nothing to do: a worker
                # looks in the shared queue now, and closes soon after the run finished.
                engine._slot.nextcall.schedule()

        def failed(failure: Any) -> None:
            self._fleet_beating = False
            logger.warning("Distributed run heartbeat failed: %s", failure.getErrorMessage())

        from twisted.internet import threads

        threads.deferToThread(fleet.beat, snapshot).addCallbacks(done, failed)

    def _watch_progress(self) -> None:
        stats = self.crawler.stats
        engine = self.crawler.engine
        if self.closed:
            return
        mark = (
            int(stats.get_value("response_received_count", 0)),
            int(stats.get_value("item_scraped_count", 0)),
            int(stats.get_value("item_dropped_count", 0)),
            int(stats.get_value("downloader/exception_count", 0)),
        )
        now = time.monotonic()
        written = self.writer.last_written if self.writer is not None else 0.0
        if mark != self._progress_mark or written > self._progress_at:
            self._progress_mark, self._progress_at = mark, now
            return
        if now - self._progress_at < self.no_progress_timeout:
            return
        if not engine.downloader.active and not (
            engine._slot is not None and engine._slot.scheduler.has_pending_requests()
        ):
            return  # nothing outstanding: Scrapy closes an idle crawl by itself
        self.stop(
            "no_progress",
            f"no response received and nothing stored for {self.no_progress_timeout:.0f} s "
            "while requests were outstanding (HARVESTER_NO_PROGRESS_TIMEOUT): the site or "
            "the network stopped answering",
        )

    def stop(self, reason: str, message: str) -> None:
        """Stop the crawl at once with its own finish reason (once; the first reason wins)."""
        if self.stop_reason is not None or self.closed:
            return
        self.stop_reason, self.stop_message = reason, message
        logger.critical("Stopping the crawl (%s): %s", reason, message)
        engine = self.crawler.engine
        if engine is not None:
            deferred_from_coro(engine.close_spider_async(reason=reason))
        from twisted.internet import reactor

        # Twisted declares callLater on a zope Interface, without self: mypy (no zope plugin)
        # takes its first parameter, the delay, for self and wants the callable there.
        reactor.callLater(STOP_GRACE_SECONDS, self._stop_unclean, reason)  # type: ignore[arg-type]

    def _stop_unclean(self, reason: str) -> None:
        """Scrapy waits for the downloads under way before it closes the spider, however long
        they hang (up to DOWNLOAD_TIMEOUT): past the grace period, close the run here (every
        record handed over is still written) and stop the reactor."""
        if self.closed:
            return
        logger.error(
            "The crawl did not close within %d s of being stopped (downloads still hang): "
            "closing the run and stopping",
            STOP_GRACE_SECONDS,
        )
        self.close(reason)
        # Stopping the reactor is no way out: Scrapy's shutdown trigger waits for the very
        # downloads that hang. The run is recorded, its writer closed and its lock released:
        # leave with the status of a run that failed its checks.
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(EXIT_CHECKS_FAILED)

    # --- close ---------------------------------------------------------------------------

    def spider_closed(self, spider: Any, reason: str) -> None:
        self.close(self.stop_reason or reason)

    def close_after_forced_stop(self) -> None:
        """Scrapy was stopped by force (the reactor stopped, spider_closed never came):
        write what can still be written and record the run as stopped by force."""
        if self.closed or self.run_id is None:
            return
        logger.error("The crawl was stopped by force: writing what was fetched, then stopping")
        self.close("forced_stop")

    def close(self, reason: str) -> dict[str, Any]:
        """Close the writer, run the checks, finish the run, release the lock, log the summary."""
        if self.closed:
            return {}
        self.closed = True
        for timer in self._timers:
            if timer.running:
                timer.stop()
        if self._judge_pool is not None:
            self._judge_pool.shutdown(wait=True, cancel_futures=True)
            self._judge_pool = None
        stats = self.crawler.stats
        if stats is not None:
            for name, count in self._coverage.items():
                stats.inc_value(f"{COVERAGE_PREFIX}{name}", count)
        if self.writer is not None:
            counts = self.writer.close()
            if stats is not None:
                for name in (
                    "new",
                    "updated",
                    "unchanged",
                    "quarantined",
                    "not_modified",
                    "withdrawn",
                    "reappeared",
                    "unwritten",
                    "unwritten_visits",
                ):
                    key = "pages_not_modified" if name == "not_modified" else f"records_{name}"
                    key = "url_states_unwritten" if name == "unwritten_visits" else key
                    stats.set_value(f"harvester/{key}", getattr(counts, name))
                stats.set_value("harvester/failed_batches", self.writer.failed_batches)
                if self.writer.process_deaths:
                    stats.set_value("harvester/writer_process_died", self.writer.process_deaths)
                if counts.refused:  # a gap like a failed fetch (monitoring.missing_records)
                    stats.set_value("harvester/gaps/store_error", counts.refused)
            if counts.withdrawn or counts.reappeared:
                logger.info(
                    "%d records withdrawn (every URL gone for %d runs), %d seen again",
                    counts.withdrawn,
                    self.writer.withdrawal.after_runs,
                    counts.reappeared,
                )
        elif self._writer_process is not None:  # never opened: it has nothing to write
            self._writer_process.close()
        if self.fleet is not None and self.fleet.run_id is not None:
            try:
                answered = self.fleet.records_answered()
            except Exception as error:  # the checks still run, per worker
                logger.error("The distributed run's figures could not be read: %s", error)
            else:
                stats.set_value(RUN_RECORDS_ANSWERED, answered)
        if stats is not None:
            stats.set_value("finish_reason", reason)
            if self.stop_message:
                stats.set_value("harvester/stop_message", self.stop_message)
        figures = self.finish(reason)
        logger.info(
            "Crawl run %s %s: %d pages, %d new / %d updated / %d unchanged, "
            "%d not modified (304), %d skipped (sitemap lastmod), "
            "%d quarantined, %d errors, %d failed checks, %.1f s; %s",
            self.run_id,
            reason,
            figures["pages_fetched"],
            figures["records_new"],
            figures["records_updated"],
            figures["records_unchanged"],
            figures["pages_not_modified"],
            figures["pages_skipped"],
            figures["records_quarantined"],
            figures["errors"],
            len(figures["alerts"]),
            time.monotonic() - self.started,
            figures.get("missing", "what is missing is unknown (the database could not be read)"),
        )
        return figures

    def finish(self, reason: str) -> dict[str, Any]:
        """Record the run's figures and return them; the writer must be closed already."""
        stats: dict[str, Any] = dict(self.crawler.stats.get_stats())
        counts = self.writer.counts if self.writer else None
        figures = {
            "finished_at": now_utc(),
            "finish_reason": reason,
            "pages_fetched": int(stats.get("response_received_count", 0)),
            "records_new": counts.new if counts else 0,
            "records_updated": counts.updated if counts else 0,
            "records_unchanged": counts.unchanged if counts else 0,
            "records_quarantined": counts.quarantined if counts else 0,
            "pages_not_modified": counts.not_modified if counts else 0,
            "pages_skipped": int(stats.get("harvester/skipped_unchanged", 0)),
            "requests": int(stats.get("downloader/request_count", 0)),
            # Give-ups (errbacks), exceptions in callbacks and pipelines, and every record or
            # URL state not written: errors count pages and records, never batches.
            "errors": int(stats.get("harvester/errors", 0))
            + int(stats.get("spider_exceptions/count", 0))
            + int(stats.get("harvester/item_errors", 0))
            + (counts.unwritten + counts.unwritten_visits if counts else 0),
            "conflicts": int(stats.get("harvester/conflicts", 0)),
        }
        checked = stats
        if self.fleet is not None and self.fleet.run_id is not None:
            # One worker's share of a run is no sample of the site (it took what the queue
            # held when it asked): field coverage is that of the whole run so far, this worker
            # and those that finished before it, the last one to finish seeing all of it.
            try:
                checked = stats | self._run_coverage_counts(stats)
            except Exception as error:
                logger.error("The distributed run's coverage could not be read: %s", error)
            stats[RUN_COVERAGE_RECORDS] = int(checked.get(COVERAGE_RECORDS, 0))
        figures["coverage"] = coverage_from_stats(checked)
        thresholds = Thresholds.from_settings(self.crawler.settings)
        try:
            history = self._healthy_runs(thresholds)
        except Exception as error:  # the checks still run, without the coverage baseline
            logger.error("Earlier runs could not be read: %s", error)
            history = []
        alerts = check_run(figures, checked, history, thresholds) + check_run_integrity(
            figures, stats
        )
        for alert in alerts:
            logger.error("Check failed: %s", alert)
        figures["alerts"] = alerts
        if self.crawler.stats is not None:
            # Set before anything is written: a database that refuses the run's own row must
            # not turn a failed run into exit status 0.
            self.crawler.stats.set_value("harvester/alerts", len(alerts))
            stats["harvester/alerts"] = len(alerts)
        figures["stats"] = jsonable(stats)
        try:
            if self.run_id is not None:
                finish_run(self.engine, self.run_id, figures)
            self._save_sitemaps()
            with self.engine.connect() as connection:
                # What the whole database still lacks, and why: the summary line's last words.
                figures["missing"] = still_missing(connection)
        except Exception as error:
            logger.error(
                "Run %s could not be recorded as finished (%s): the next crawl marks it "
                "interrupted",
                self.run_id,
                error,
            )
        finally:
            if self.fleet is not None:
                self.fleet.close()
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            self.engine.dispose()
        return figures

    def _save_sitemaps(self) -> None:
        """Sitemaps whose every page was handled and stored: the next run may skip them.
        Those with a page that failed or is gone are forgotten: the next run reads them."""
        frontier = self.frontier
        if self.writer is None or frontier is None:
            return
        if self.fleet is not None:
            # Its pages were answered by many workers: no one process can tell that a
            # sitemap's every page was handled. The next run reads them all again.
            return
        with self.engine.begin() as connection:
            counts = self.writer.counts
            if self.writer.failed_batches or counts.unwritten or counts.unwritten_visits:
                # What their pages gave may not be stored: read them all again next time.
                forget_sitemaps(connection, frontier.sitemaps_read())
                return
            forget_sitemaps(connection, frontier.sitemaps_to_forget())
            completed = [
                (sitemap.url, sitemap.lastmod, sitemap.entries)
                for sitemap in frontier.completed_sitemaps()
            ]
            save_sitemaps(connection, completed, now_utc(), self.run_id)

    def _healthy_runs(self, thresholds: Thresholds) -> list[dict[str, Any]]:
        """Earlier runs that passed their checks on enough records, newest first. A
        distributed run counts once, by the worker that finished it last (its coverage is the
        whole run's); this run's own workers are no earlier run."""
        runs = CRAWL_RUNS
        stored = runs.c.records_new + runs.c.records_updated + runs.c.records_unchanged
        query = (
            select(
                runs.c.coverage,
                runs.c.alerts,
                runs.c.distributed_run_id,
                runs.c.stats,
                stored.label("stored"),
            )
            .where(
                runs.c.id != (self.run_id or 0),
                runs.c.finish_reason.in_(OK_FINISH_REASONS),
                runs.c.coverage.is_not(None),
            )
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
            .limit(thresholds.history * 40)
        )
        own = self.fleet.run_id if self.fleet is not None else None
        healthy: list[dict[str, Any]] = []
        seen: set[int] = set()
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        for row in rows:
            if row.distributed_run_id is not None:
                if row.distributed_run_id == own or row.distributed_run_id in seen:
                    continue
                seen.add(row.distributed_run_id)
            # A worker's coverage is measured on its run's records so far, not on its own.
            measured_on = int((row.stats or {}).get(RUN_COVERAGE_RECORDS, row.stored))
            if row.alerts or measured_on < thresholds.min_records:
                continue
            healthy.append({"coverage": row.coverage})
        return healthy[: thresholds.history]

    def _run_coverage_counts(self, stats: dict[str, Any]) -> dict[str, int]:
        """The coverage counts (``harvester/coverage/*`` stats) of this worker and of the
        workers of its distributed run that finished before it, added up."""
        assert self.fleet is not None
        totals = Counter(
            {key: int(value) for key, value in stats.items() if key.startswith(COVERAGE_PREFIX)}
        )
        with self.engine.connect() as connection:
            siblings = connection.execute(
                select(CRAWL_RUNS.c.stats).where(
                    CRAWL_RUNS.c.distributed_run_id == self.fleet.run_id,
                    CRAWL_RUNS.c.id != (self.run_id or 0),
                    CRAWL_RUNS.c.finished_at.is_not(None),
                )
            ).scalars()
            for sibling in siblings:
                for key, value in (sibling or {}).items():
                    if key.startswith(COVERAGE_PREFIX):
                        totals[key] += int(value)
        return dict(totals)


def lost_record_page(item: object, failure: Any) -> PageVisit | None:
    """The gap a record page leaves when a pipeline raised on it: at the URL as requested (the
    one the next run looks up); None for an item that is no record page."""
    if isinstance(item, FetchedResponse):
        url, status, sitemap_url = item.requested_url, item.status, item.sitemap_url
    elif isinstance(item, Record):
        url, status, sitemap_url = (
            item.requested_url or item.source_url,
            item.status,
            item.sitemap_url,
        )
    else:
        return None
    error = getattr(failure, "value", failure)
    return PageVisit(
        url=url,
        status=status,
        fetched_at=now_utc(),
        kind="failed",
        gap_reason="store_error",
        gap_detail=f"a pipeline raised {type(error).__name__}: {error}"[:500],
        sitemap_url=sitemap_url,
    )


def judging_process_started(crawl_pid: int) -> None:
    """In a judging process: leave the signals to the crawl, and end with it
    (``harvester.processes.leave_signals_to_the_crawl``)."""
    leave_signals_to_the_crawl(crawl_pid)
    name_this_process(JUDGING_PROCESS_NAME)
    keep_large_blocks_out_of_the_heap()  # inherited when forked
    pickle_judgements_by_init()  # its judgements, back to the crawl (inherited when forked)


def run_of(crawler: Crawler) -> CrawlRun:
    """The crawler's run; there is one once its extensions are built (before its engine,
    item pipelines and spider start)."""
    run = opened_run(crawler)
    if run is None:
        raise RuntimeError(
            "the crawl has no run: harvester.crawl_session.CrawlRun must be in EXTENSIONS"
        )
    return run


def opened_run(crawler: Crawler) -> CrawlRun | None:
    """The crawler's run, or None when the crawl never got as far as opening one."""
    try:
        return crawler.get_extension(CrawlRun)
    except RuntimeError:  # its extensions were never built
        return None
