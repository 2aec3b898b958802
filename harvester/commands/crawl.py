"""`scrapy crawl`, with an exit status that tells cron and systemd how the run went.

0: the crawl ran and passed its checks (harvester/monitoring.py); 1: it could not start (bad
database, another crawl running); 2: a usage error (Scrapy's own); 3: it ran, but failed a
check (drift, error rate, robots.txt unavailable, records not written, stopped itself or by
force, ...): the log's "Check failed:" lines say which.
"""

from __future__ import annotations

import argparse

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.crawler import Crawler
from scrapy.spiders import Spider

EXIT_CHECKS_FAILED = 3


class Command(ScrapyCrawl):
    crawler: Crawler | None = None

    def _create_crawler(self, spidercls: type[Spider] | str) -> Crawler:
        self.crawler = super()._create_crawler(spidercls)
        return self.crawler

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        super().run(args, opts)
        if not self.exitcode and self.crawler is not None and failed_checks(self.crawler):
            self.exitcode = EXIT_CHECKS_FAILED


def failed_checks(crawler: Crawler) -> int:
    """The number of checks the run failed; a run stopped by force (Scrapy's unclean shutdown
    skips spider_closed) is finished here and counts as failed whatever it wrote."""
    from harvester.crawl_session import opened_run
    from harvester.monitoring import OK_FINISH_REASONS

    run = opened_run(crawler)
    forced = run is not None and run.run_id is not None and not run.closed
    if forced:
        assert run is not None
        run.close_after_forced_stop()
    alerts = int(crawler.stats.get_value("harvester/alerts", 0))
    reason = crawler.stats.get_value("finish_reason")
    if forced or (run is not None and run.closed and reason not in OK_FINISH_REASONS):
        return max(alerts, 1)
    return alerts
