"""One crawl's connection to the database, shared by the pipelines and the summary extension.

Opening it checks the database before anything is fetched: a database that cannot be opened,
or one at another schema revision, stops the crawl with a message that says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from scrapy.crawler import Crawler
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from harvester.config import database_url
from harvester.db import DatabaseUnavailable, SchemaError, create_engine_for, ensure_schema
from harvester.monitoring import OK_FINISH_REASONS, Thresholds, check_run, coverage_from_stats
from harvester.runlock import (
    CrawlAlreadyRunning,
    RunLock,
    acquire_run_lock,
    mark_interrupted_runs,
)
from harvester.store import CRAWL_RUNS, RecordWriter, finish_run, jsonable, now_utc, start_run
from harvester.urlstate import (
    GapRetry,
    KnownPage,
    Withdrawal,
    forget_sitemaps,
    known_pages,
    read_sitemaps,
    save_sitemaps,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
_OPEN: WeakKeyDictionary[Crawler, CrawlSession] = WeakKeyDictionary()


class CrawlSession:
    """The database, the ``crawl_runs`` row and the record writer of one crawl."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.url = database_url(settings)
        if settings.get("HARVESTER_AUTO_MIGRATE") is None:
            # Zero set-up for SQLite files; production databases are migrated on purpose.
            auto_migrate = make_url(self.url).get_backend_name() == "sqlite"
        else:
            auto_migrate = settings.getbool("HARVESTER_AUTO_MIGRATE")
        try:
            self.engine: Engine = create_engine_for(self.url)
            ensure_schema(self.engine, auto_migrate=auto_migrate)
            self.lock: RunLock | None = acquire_run_lock(self.engine)
        except (DatabaseUnavailable, SchemaError, CrawlAlreadyRunning) as error:
            logger.critical("Not crawling: %s", error)
            raise
        mark_interrupted_runs(self.engine)
        self.run_id: int | None = None
        self.writer: RecordWriter | None = None

    @classmethod
    def for_crawler(cls, crawler: Crawler) -> CrawlSession:
        run = _OPEN.get(crawler)
        if run is None:
            run = _OPEN[crawler] = cls(crawler)
        return run

    def known_pages(self, canonical_urls: list[str]) -> dict[str, KnownPage]:
        """Stored URL state, for the spider's decision to skip or revalidate pages."""
        with self.engine.connect() as connection:
            return known_pages(connection, canonical_urls)

    def query(self, reader: Callable[..., T], *arguments: Any) -> T:
        """Run a read of harvester.urlstate (``reader(connection, *arguments)``) for the spider."""
        with self.engine.connect() as connection:
            return reader(connection, *arguments)

    def read_sitemaps(self, canonical_urls: list[str]) -> dict[str, tuple[datetime, int]]:
        with self.engine.connect() as connection:
            return read_sitemaps(connection, canonical_urls)

    def start(self, spider_name: str, arguments: dict[str, Any]) -> RecordWriter:
        if self.writer is None:
            self.run_id = start_run(self.engine, spider_name, arguments)
            settings = self.crawler.settings
            self.writer = RecordWriter(
                self.engine,
                run_id=self.run_id,
                batch_size=settings.getint("HARVESTER_BATCH_SIZE"),
                batch_seconds=settings.getfloat("HARVESTER_BATCH_SECONDS"),
                withdrawal=Withdrawal(
                    after_runs=settings.getint("HARVESTER_WITHDRAW_AFTER_RUNS", 3),
                    min_interval=timedelta(
                        seconds=settings.getfloat("HARVESTER_WITHDRAW_MIN_INTERVAL", 86400.0)
                    ),
                ),
                retry=GapRetry(
                    base=timedelta(seconds=settings.getfloat("HARVESTER_GAP_RETRY_BASE", 3600.0)),
                    cap=timedelta(seconds=settings.getfloat("HARVESTER_GAP_RETRY_MAX", 604800.0)),
                ),
            )
        return self.writer

    def finish(self, reason: str) -> dict[str, Any]:
        """Record the run's figures and return them; the writer must be closed already."""
        stats: dict[str, Any] = dict(self.crawler.stats.get_stats()) if self.crawler.stats else {}
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
            # Give-ups (errbacks), exceptions in callbacks and pipelines, failed batches.
            "errors": int(stats.get("harvester/errors", 0))
            + int(stats.get("spider_exceptions/count", 0))
            + int(stats.get("harvester/item_errors", 0))
            + int(stats.get("harvester/failed_batches", 0)),
            "conflicts": int(stats.get("harvester/conflicts", 0)),
        }
        figures["coverage"] = coverage_from_stats(stats)
        thresholds = Thresholds.from_settings(self.crawler.settings)
        alerts = check_run(figures, stats, self._healthy_runs(thresholds), thresholds)
        for alert in alerts:
            logger.error("Check failed: %s", alert)
        figures["alerts"] = alerts
        if self.crawler.stats is not None:
            self.crawler.stats.set_value("harvester/alerts", len(alerts))
            stats["harvester/alerts"] = len(alerts)
        figures["stats"] = jsonable(stats)
        try:
            if self.run_id is not None:
                finish_run(self.engine, self.run_id, figures)
            self._save_sitemaps()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            self.engine.dispose()
        return figures

    def _save_sitemaps(self) -> None:
        """Sitemaps whose every page was handled and stored: the next run may skip them.
        Those with a page that failed or is gone are forgotten: the next run reads them."""
        spider = self.crawler.spider
        if self.writer is None or not hasattr(spider, "completed_sitemaps"):
            return
        with self.engine.begin() as connection:
            if self.writer.failed_batches:  # what their pages gave may not be stored
                forget_sitemaps(connection, spider.sitemaps_read())
                return
            forget_sitemaps(connection, spider.sitemaps_to_forget())
            save_sitemaps(connection, spider.completed_sitemaps(), now_utc(), self.run_id)

    def _healthy_runs(self, thresholds: Thresholds) -> list[dict[str, Any]]:
        """Earlier runs that passed their checks on enough records, newest first."""
        runs = CRAWL_RUNS
        stored = runs.c.records_new + runs.c.records_updated + runs.c.records_unchanged
        query = (
            select(runs.c.coverage, runs.c.alerts)
            .where(
                runs.c.id != (self.run_id or 0),
                runs.c.finish_reason.in_(OK_FINISH_REASONS),
                runs.c.coverage.is_not(None),
                stored >= thresholds.min_records,
            )
            .order_by(runs.c.id.desc())
            .limit(thresholds.history * 4)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        healthy = [{"coverage": row.coverage} for row in rows if not row.alerts]
        return healthy[: thresholds.history]
