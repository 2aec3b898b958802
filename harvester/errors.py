"""The harvester's own exceptions, in one place: what can go wrong that a caller handles.

Each says when it is raised and who catches it. Failures Scrapy already names (an HTTP error,
a timeout, a DNS failure) stay Scrapy's and Twisted's; SQLAlchemy's errors reach the record
writer, which sorts them with ``harvester.store.error_kind``.
"""

from __future__ import annotations


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened: bad URL, missing directory, refused, ...

    Raised by ``harvester.db`` (``create_engine_for``, ``ensure_schema``); the crawl does not
    start (``CrawlSession``) and the CLI prints the message.
    """


class SchemaError(RuntimeError):
    """The database is reachable but its schema is not the one this code writes.

    Raised by ``harvester.db.ensure_schema`` (no tables without auto-migrate, another Alembic
    revision, tables without ``alembic_version``); the message says which migration to run.
    """


class CrawlAlreadyRunning(RuntimeError):
    """Another crawl holds the database's crawl lock.

    Raised by ``harvester.runlock.acquire_run_lock``, its message naming the run that holds
    it; the crawl does not start.
    """


class DistributedRunRefused(RuntimeError):
    """A distributed run (HARVESTER_REDIS_URL) cannot start or join: SQLite, Redis out of
    reach, or a run under way with other arguments.

    Raised by ``harvester.distributed``; the crawl does not start (exit status 1).
    """


class SitemapUnreadable(Exception):
    """Nothing could be read from this body: ``reason`` (too_large, not_xml, not_a_sitemap,
    no_sitemaps).

    Raised by ``harvester.entrypoints.read_sitemap`` and the spider's robots.txt reading; the
    spider counts the entry point as failed (``harvester/failed_entry_points``) and goes on.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SearchError(ValueError):
    """A query that cannot be searched (no words, too many words, a limit below 1).

    Raised by ``harvester.search``; `harvester search` and `harvester export --query` print it.
    """


class BadArgument(ValueError):
    """A value the user gave cannot be used: a spider argument (``-a ncj=abc``, a missing
    ``-a urls_file``), a line of an arguments file, a setting (``-s DOWNLOAD_DELAY=soon``).
    A usage error: exit status 2.

    Raised by ``spiders.arguments.SpiderArguments.check`` and
    ``harvester.commands.crawl.check_settings``, before the crawl starts; `scrapy crawl` and
    `harvester crawl` print it as one line, each in its own spelling of the argument.
    """

    def __init__(self, name: str, value: str, reason: str, option: str = "-a") -> None:
        super().__init__(f"{option} {name}={value}: {reason}")
        self.name = name
        self.value = value
        self.reason = reason
        self.option = option  # "-a": a spider argument; "-s": a setting
