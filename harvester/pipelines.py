"""The item pipelines, one job each, in this order (see ITEM_PIPELINES in settings.py):

    RawRecord -> NormalizePipeline -> ValidatePipeline -> DedupePipeline -> StorePipeline

Rejected records go to the ``quarantine`` table with their raw values; duplicates of a record
already passed on in this crawl are dropped, unless they are richer than what was passed on.
All of them write through the crawl's run (harvester.crawl_session.CrawlRun), which owns the
writer: no pipeline reaches into another's.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from harvester.conflicts import RunSightings
from harvester.crawl_session import CrawlRun
from harvester.items import PageVisit, RawRecord, Record
from harvester.normalize import content_hash, normalize_record
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
        CrawlRun.for_crawler(self.crawler).quarantine(item, rejection)
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
            CrawlRun.for_crawler(self.crawler).note_visit(visit_of(item))
            raise DropItem(
                f"Duplicate NCJ {item.ncj_number} at {item.source_url}", log_level="DEBUG"
            )
        return item


class StorePipeline:
    """Hands records and URL states to the run's writer; the run opens and closes it."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.run = CrawlRun.for_crawler(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, PageVisit):
            # URL state only: consumed here, so feeds (-O) get records alone.
            await self.run.store_visit(item)
            raise DropItem(f"URL state of {item.url} ({item.status})", log_level="DEBUG")
        if not isinstance(item, Record):
            return item
        # Stored records keep no copy of the raw page values (only quarantine needs them), so
        # feeds (-O records.jsonl) get the normalized record alone and memory stays flat. The
        # page itself goes to the writer, which drops it once its batch is written.
        page = item.raw.fetched_page if item.raw else None
        item.raw = None
        await self.run.store(item, page)
        return item
