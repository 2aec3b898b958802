"""Closing a crawl: its ``crawl_runs`` row and the one-line summary at the end of the log."""

from __future__ import annotations

import logging
import time

from scrapy import Spider, signals
from scrapy.crawler import Crawler

from harvester.crawl_session import CrawlSession

logger = logging.getLogger(__name__)


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.started = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.item_error, signal=signals.item_error)
        return extension

    def item_error(self, item: object, response: object, spider: Spider, failure: object) -> None:
        # An exception in a pipeline (not a DropItem) leaves no stat of its own in Scrapy.
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("harvester/item_errors")

    def spider_opened(self, spider: Spider) -> None:
        self.started = time.monotonic()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        session = CrawlSession.for_crawler(self.crawler)
        figures = session.finish(reason)
        logger.info(
            "Crawl run %s %s: %d pages, %d new / %d updated / %d unchanged, "
            "%d quarantined, %d errors, %.1f s",
            session.run_id,
            reason,
            figures["pages_fetched"],
            figures["records_new"],
            figures["records_updated"],
            figures["records_unchanged"],
            figures["records_quarantined"],
            figures["errors"],
            time.monotonic() - self.started,
        )
