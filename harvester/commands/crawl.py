"""`scrapy crawl`, with an exit status that tells cron and systemd how the run went.

0: the crawl ran and passed its checks (harvester/monitoring.py); 1: it could not start (bad
database, another crawl running); 2: a usage error (Scrapy's own, or a spider argument the
spider cannot use: `-a ncj=abc`); 3: it ran, but failed a check (drift, error rate, robots.txt
unavailable, records not written, stopped itself or by force, ...): the log's "Check failed:"
lines say which.

A crawl that cannot start says why in one line ("Not crawling: ..." in the log, "Error: ..."
for a bad argument) and nothing more: no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.crawler import Crawler, CrawlerProcessBase
from scrapy.exceptions import UsageError
from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.spiderloader import get_spider_loader
from scrapy.spiders import Spider
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from harvester.config import database_url
from harvester.db import normalize_url
from harvester.errors import (
    BadArgument,
    CrawlAlreadyRunning,
    DatabaseUnavailable,
    DistributedRunRefused,
    SchemaError,
)

logger = logging.getLogger(__name__)

EXIT_COULD_NOT_START = 1
EXIT_USAGE = 2
EXIT_CHECKS_FAILED = 3

# Why a crawl does not start, each already said in one line by the crawl run ("Not crawling:").
NOT_STARTED = (DatabaseUnavailable, SchemaError, CrawlAlreadyRunning, DistributedRunRefused)


class Command(ScrapyCrawl):
    crawler: Crawler | None = None

    def _create_crawler(self, spidercls: type[Spider] | str) -> Crawler:
        self.crawler = super()._create_crawler(spidercls)
        return self.crawler

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            super().process_options(args, opts)
        except UsageError as error:  # `-a foo`: Scrapy's error, in one line
            if not str(error):
                raise
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        # Here, before Scrapy sets up logging and the crawler process: the error is then
        # all that is printed.
        if len(args) == 1:
            assert self.settings is not None
            loader = get_spider_loader(self.settings)
            if args[0] not in loader.list():
                known = ", ".join(sorted(loader.list()))
                print(f"Error: no spider named {args[0]!r} (spiders: {known})", file=sys.stderr)
                sys.exit(EXIT_USAGE)
            try:
                check_settings(self.settings)
                check_spider_arguments(self.settings, args[0], opts.spargs)
            except BadArgument as error:
                print(f"Error: {error}", file=sys.stderr)
                sys.exit(EXIT_USAGE)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            super().run(args, opts)  # Scrapy's own usage errors
            return
        assert self.crawler_process is not None
        self.exitcode = run_spider(self.crawler_process, self._create_crawler(args[0]), opts.spargs)


def check_settings(settings: BaseSettings) -> None:
    """BadArgument for a setting given on the command line (``-s NAME=VALUE``) that cannot be
    read as the kind of value its default is (a number, a yes/no): Scrapy would fail on it
    with a traceback once the crawl starts, or in the middle of it."""
    from scrapy.settings import default_settings

    from harvester import settings as project

    # Numbers as floats: Scrapy reads some settings with a whole-number default as floats
    # (DOWNLOAD_TIMEOUT=2.5 is fine).
    readers = {bool: settings.getbool, int: settings.getfloat, float: settings.getfloat}
    kinds = {bool: "a yes/no value (1 or 0)", int: "a number", float: "a number"}
    for name, value in settings.items():
        if settings.getpriority(name) != SETTINGS_PRIORITIES["cmdline"]:
            continue
        default = getattr(project, name, getattr(default_settings, name, None))
        kind = type(default)
        if kind not in readers or not isinstance(value, str):
            continue
        try:
            readers[kind](name)
        except ValueError:
            raise BadArgument(name, value, f"not {kinds[kind]}", option="-s") from None


def check_spider_arguments(settings: BaseSettings, spider: str, arguments: dict[str, Any]) -> None:
    """BadArgument for a spider argument the spider cannot use, if the spider checks its
    arguments (a ``check_arguments`` class method). An unknown spider is left to Scrapy."""
    try:
        spidercls = get_spider_loader(settings).load(spider)
    except KeyError:
        return
    check: Callable[[dict[str, Any]], None] | None = getattr(spidercls, "check_arguments", None)
    if check is not None:
        check(arguments)


def run_spider(
    process: CrawlerProcessBase, crawler: Crawler, spider_arguments: dict[str, Any]
) -> int:
    """Run one crawl in ``process`` until it ends; its exit status (this module's docstring)."""
    try:
        # The crawl run reads the URL before it opens the database; a URL that does not
        # parse would escape its "Not crawling" as a bare SQLAlchemy traceback.
        normalize_url(database_url(crawler.settings))
    except DatabaseUnavailable as error:
        logger.critical("Not crawling: %s", error)
        return EXIT_COULD_NOT_START
    started = process.crawl(crawler, **spider_arguments)
    _said_already(started)
    process.start()
    if process.bootstrap_failed:
        return EXIT_COULD_NOT_START
    return EXIT_CHECKS_FAILED if failed_checks(crawler) else 0


def _said_already(started: object) -> None:
    """A crawl that could not start has said why ("Not crawling: ..."); its exception must not
    come back as a traceback when Scrapy's runner re-raises it into a task or Deferred that
    nobody awaits (asyncio's "Task exception was never retrieved", Twisted's "Unhandled error
    in Deferred"). Any other exception is a bug and keeps its traceback."""
    if isinstance(started, Deferred):

        def consume(failure: Failure) -> Failure | None:
            return None if isinstance(failure.value, NOT_STARTED) else failure

        started.addErrback(consume)
        return
    if not isinstance(started, asyncio.Task):
        return

    def retrieve(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()  # retrieved: asyncio no longer reports it on its own
        if error is not None and not isinstance(error, NOT_STARTED):
            logger.critical("The crawl could not start", exc_info=error)

    started.add_done_callback(retrieve)


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
