"""The item pipelines, one job each, in this order (see ITEM_PIPELINES in settings.py):

    RawRecord -> NormalizePipeline -> ValidatePipeline -> DedupePipeline -> StorePipeline

Rejected records go to the ``quarantine`` table with their raw values; duplicates of a record
already passed on in this crawl are dropped, unless they are richer than what was passed on.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from twisted.internet.task import LoopingCall

from harvester.conflicts import RunSightings
from harvester.crawl_session import CrawlSession
from harvester.items import PageVisit, RawRecord, Record
from harvester.normalize import content_hash, normalize_record
from harvester.store import RecordWriter
from harvester.urlstate import visit_of
from harvester.validate import validate

logger = logging.getLogger(__name__)


class NormalizePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, RawRecord):
            return item
        record = normalize_record(item)
        if record.text_repairs and item.encoding_problem is None:
            # A repaired text is stored: say so where runs are looked at (crawl_runs.stats).
            logger.info("Text repaired at %s: %s", item.final_url, "; ".join(record.text_repairs))
            if self.crawler.stats:
                self.crawler.stats.inc_value("harvester/encoding_repaired")
        return record


class ValidatePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, Record):
            return item
        rejection = validate(item)
        if rejection is None:
            return item
        session = CrawlSession.for_crawler(self.crawler)
        assert session.writer is not None, "StorePipeline.open_spider starts the writer"
        session.writer.add_quarantined(item, rejection)
        if self.crawler.stats:
            self.crawler.stats.inc_value(f"harvester/quarantined/{rejection.reason}")
        raise DropItem(f"Quarantined {item.source_url}: {rejection}")


class DedupePipeline:
    """One record per NCJ number per crawl, whatever URL it was reached under.

    A page is passed on when it beats every page of its record seen so far, by the rule in
    harvester.conflicts; the last page passed on, the one stored, is the best of them all.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.sightings = RunSightings()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DedupePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, Record) or item.ncj_number is None:
            return item
        verdict = self.sightings.offer(item, content_hash(item))
        if verdict.conflict is not None:
            logger.info("Conflict: %s", verdict.conflict)
            if self.crawler.stats:
                self.crawler.stats.inc_value("harvester/conflicts")
        if not verdict.keep:
            # The page is not stored, but its URL is one the record lives under: remember it,
            # so the next crawl does not fetch it again.
            writer = CrawlSession.for_crawler(self.crawler).writer
            if writer is not None:
                writer.add_visit(visit_of(item))
            raise DropItem(
                f"Duplicate NCJ {item.ncj_number} at {item.source_url}", log_level="DEBUG"
            )
        return item


class StorePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        # Opening here, before the engine starts, makes a bad database stop the crawl early.
        self.session = CrawlSession.for_crawler(crawler)
        self.writer: RecordWriter | None = None
        self.timer: LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    def open_spider(self) -> None:
        spider = self.crawler.spider
        assert spider is not None
        self.writer = self.session.start(spider.name, getattr(spider, "arguments", {}))
        self.timer = LoopingCall(self._flush_stale)
        self.timer.start(1.0, now=False)

    def _flush_stale(self) -> None:
        if self.writer is not None and self.writer.is_stale():
            try:
                self.writer.flush_if_idle()
            except Exception:  # a failed write must not stop the timer: log it, go on
                logger.exception("A batch of records could not be written")

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, PageVisit) and self.writer is not None:
            # URL state only: consumed here, so feeds (-O) get records alone.
            if self.writer.add_visit(item):
                await self.writer.flush()
            raise DropItem(f"URL state of {item.url} ({item.status})", log_level="DEBUG")
        if not isinstance(item, Record) or self.writer is None:
            return item
        # Stored records keep no copy of the raw page values (only quarantine needs them), so
        # feeds (-O records.jsonl) get the normalized record alone and memory stays flat. The
        # page itself goes to the writer, which drops it once its batch is written.
        page = item.raw.fetched_page if item.raw else None
        item.raw = None
        if self.writer.add(item, page):
            await self.writer.flush()
        return item

    def close_spider(self) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        if self.writer is not None:
            counts = self.writer.close()
            if self.crawler.stats:
                self.crawler.stats.set_value("harvester/records_new", counts.new)
                self.crawler.stats.set_value("harvester/records_updated", counts.updated)
                self.crawler.stats.set_value("harvester/records_unchanged", counts.unchanged)
                self.crawler.stats.set_value("harvester/records_quarantined", counts.quarantined)
                self.crawler.stats.set_value("harvester/pages_not_modified", counts.not_modified)
                self.crawler.stats.set_value("harvester/records_withdrawn", counts.withdrawn)
                self.crawler.stats.set_value("harvester/records_reappeared", counts.reappeared)
            if counts.withdrawn or counts.reappeared:
                logger.info(
                    "%d records withdrawn (every URL gone for %d runs), %d seen again",
                    counts.withdrawn,
                    self.writer.withdrawal.after_runs,
                    counts.reappeared,
                )
                self.crawler.stats.set_value("harvester/failed_batches", self.writer.failed_batches)
