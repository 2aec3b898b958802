"""A progress line while a crawl runs (the run's checks and summary are its owner's:
harvester.crawl_session.CrawlRun)."""

from __future__ import annotations

import logging
import time

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet.task import LoopingCall

from harvester.crawl_session import opened_run

logger = logging.getLogger(__name__)


class CrawlProgress:
    """A log line every HARVESTER_PROGRESS_INTERVAL seconds: done, rate, what is left, ETA.

    "Left" counts the record pages already queued: sitemaps not read yet add to it, so while
    any are waiting the line says so and the ETA is a lower bound.
    """

    def __init__(self, crawler: Crawler, interval: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self.timer: LoopingCall | None = None
        self.last_done = 0
        self.last_time = 0.0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlProgress:
        interval = crawler.settings.getfloat("HARVESTER_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured
        extension = cls(crawler, interval)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider: Spider) -> None:
        self.last_time = time.monotonic()
        self.timer = LoopingCall(self.log_progress)
        self.timer.start(self.interval, now=False)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()

    def log_progress(self) -> None:
        stats = self.crawler.stats
        done = int(stats.get_value("harvester/record_responses", 0))
        queued = int(stats.get_value("harvester/record_requests", 0))
        skipped = int(stats.get_value("harvester/skipped_unchanged", 0))
        now = time.monotonic()
        rate = (done - self.last_done) / max(now - self.last_time, 1e-9)
        self.last_done, self.last_time = done, now
        left = max(0, queued - done)
        run = opened_run(self.crawler)
        frontier = run.frontier if run is not None else None
        waiting = len(frontier.sitemaps_waiting) if frontier is not None else 0
        eta = f"ETA {_duration(left / rate)}" if rate > 0 and left else "ETA unknown"
        logger.info(
            "Progress: %d record pages done, %.1f pages/s, %d left%s, %s; %d skipped as unchanged",
            done,
            rate,
            left,
            f" (+ {waiting} sitemaps to read)" if waiting else "",
            eta if not waiting else eta.replace("ETA", "ETA at least"),
            skipped,
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
