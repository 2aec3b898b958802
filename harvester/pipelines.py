"""The item pipelines, one job each, in this order (see ITEM_PIPELINES in settings.py):

    FetchedResponse -> JudgePipeline -> Record -> DedupePipeline -> StorePipeline
                                     -> PageVisit ------------------> StorePipeline

``JudgePipeline`` turns the page the spider fetched into a verdict (harvester.judge): a
record goes on, a quarantined record is handed to the run and dropped, a page that holds no
record goes on as URL state. ``DedupePipeline`` drops the duplicates of a record already
passed on in this crawl, unless they are richer. ``StorePipeline`` hands records and URL
states to the run. The crawl's run (harvester.crawl_session.CrawlRun) owns the writer: every
write goes through its interface, none through another pipeline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import traceback
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.http import HtmlResponse, Request
from scrapy.utils.asyncio import is_asyncio_available

from harvester.allocator import PeriodicRelease
from harvester.crawl_session import CrawlRun, run_of
from harvester.items import FetchedResponse, PageVisit, Record
from harvester.judge import Judgement, judge_response
from harvester.normalize import known_content_hash
from harvester.urlstate import visit_of

logger = logging.getLogger(__name__)


def response_of(fetched: FetchedResponse) -> HtmlResponse:
    """The response the spider received, as ``harvester.parsing.parse_page`` reads it: body,
    headers, and the request's meta (redirects, the sitemap that listed it)."""
    headers = {
        name: value
        for name, value in (
            ("Content-Type", fetched.content_type),
            ("ETag", fetched.etag),
            ("Last-Modified", fetched.last_modified),
        )
        if value is not None
    }
    request = Request(
        fetched.requested_url,
        meta={
            "redirect_urls": list(fetched.redirect_urls),
            "sitemap_lastmod": fetched.sitemap_lastmod,
            "sitemap_url": fetched.sitemap_url,
        },
    )
    return HtmlResponse(
        url=fetched.url,
        status=fetched.status,
        headers=headers,
        body=fetched.body,
        request=request,
    )


def judge_fetched(fetched: FetchedResponse, keep_page: bool) -> Judgement:
    """The verdict on a fetched page; ``keep_page`` keeps the page for re-parsing."""
    return judge_response(response_of(fetched), keep_page=keep_page, fetched_at=fetched.fetched_at)


# The judging process's parser frees what it built for each page; glibc keeps it (see
# harvester.allocator). Called after a batch, at most this often (batches come several a
# second; a trim takes a few ms).
_release_judging_memory = PeriodicRelease(2.0)


def judge_batch(pages: list[FetchedResponse], keep_page: bool) -> list[Judgement | RuntimeError]:
    """In a judging process: the verdicts on a batch of pages, in order.

    A kept page comes back without its body, which the crawl's process has already (see
    ``with_body``): only the verdict crosses back. A page whose judgement raised (a parser
    bug) gets the error, so that it alone fails, not the batch.
    """
    verdicts: list[Judgement | RuntimeError] = []
    for fetched in pages:
        try:
            judgement = judge_fetched(fetched, keep_page)
        except Exception as error:  # handed back to that page's pipeline run, with its trace
            trace = "".join(traceback.format_exception(error))
            verdicts.append(RuntimeError(f"judging {fetched.url} raised:\n{trace}"))
            continue
        if judgement.page is not None:
            judgement.page = dataclasses.replace(judgement.page, body=b"")
            if judgement.record is not None and judgement.record.raw is not None:
                judgement.record.raw.fetched_page = judgement.page
        verdicts.append(judgement)
    _release_judging_memory()
    return verdicts


def with_body(judgement: Judgement, fetched: FetchedResponse) -> Judgement:
    """A judgement from ``judge_batch`` with its kept page's body put back."""
    if judgement.page is not None and not judgement.page.body:
        judgement.page = dataclasses.replace(judgement.page, body=fetched.body)
        if judgement.record is not None and judgement.record.raw is not None:
            judgement.record.raw.fetched_page = judgement.page
    return judgement


class JudgingQueue:
    """Sends fetched pages to the run's judging processes in batches.

    One page per task costs the reactor thread more than judging it: every task is handed
    over and answered by the pool's own threads, each waiting for the GIL the reactor thread
    holds, and meanwhile the judging process waits idle. So the pages that arrive while the
    processes are busy wait here and go together: each process has at most two batches
    (one it judges, the next), and a batch holds at most ``max_batch`` pages.
    """

    def __init__(self, run: CrawlRun, keep_pages: bool, max_batch: int = 32) -> None:
        self.run = run
        self.keep_pages = keep_pages
        self.max_batch = max_batch
        self.waiting: list[tuple[FetchedResponse, asyncio.Future[Judgement]]] = []
        self.in_flight = 0

    async def judge(self, fetched: FetchedResponse) -> Judgement:
        future: asyncio.Future[Judgement] = asyncio.get_running_loop().create_future()
        self.waiting.append((fetched, future))
        self._send()
        return await future

    def _send(self) -> None:
        while self.waiting:
            pool = self.run.judge_pool()
            if pool is None:  # no processes (any more): judge here
                batch, self.waiting = self.waiting, []
                for fetched, future in batch:
                    self._judge_here(future, fetched)
                return
            if self.in_flight >= 2 * self.run.judge_processes and (
                len(self.waiting) < self.max_batch
            ):
                return  # the processes are busy: gather more pages
            batch = self.waiting[: self.max_batch]
            del self.waiting[: self.max_batch]
            try:
                submitted = pool.submit(
                    judge_batch, [fetched for fetched, _ in batch], self.keep_pages
                )
            except BrokenProcessPool:  # it died before this batch: the next goes to a new one
                self.run.judge_pool_broke(pool)
                for fetched, future in batch:
                    self._judge_here(future, fetched)
                continue
            self.in_flight += 1
            task = asyncio.wrap_future(submitted)
            task.add_done_callback(functools.partial(self._answered, pool, batch))

    def _answered(
        self,
        pool: Executor,
        batch: list[tuple[FetchedResponse, asyncio.Future[Judgement]]],
        done: asyncio.Future[list[Judgement | RuntimeError]],
    ) -> None:
        self.in_flight -= 1
        error = done.exception() if not done.cancelled() else None
        if done.cancelled() or isinstance(error, BrokenProcessPool):
            if isinstance(error, BrokenProcessPool):
                self.run.judge_pool_broke(pool)
            # Its pages are judged again here (the next batches go to a new pool).
            for fetched, future in batch:
                self._judge_here(future, fetched)
        elif error is not None:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (fetched, future), verdict in zip(batch, done.result(), strict=True):
                if future.done():
                    continue
                if isinstance(verdict, Exception):
                    future.set_exception(verdict)
                else:
                    future.set_result(with_body(verdict, fetched))
        self._send()

    def _judge_here(self, future: asyncio.Future[Judgement], fetched: FetchedResponse) -> None:
        if future.done():
            return
        try:
            future.set_result(judge_fetched(fetched, self.keep_pages))
        except Exception as error:
            future.set_exception(error)


class JudgePipeline:
    """A fetched page -> a record, a quarantined record, or URL state (harvester.judge).

    Raw pages are kept with their records when HARVESTER_STORE_RAW_PAGES says so. The
    judgement (parse, normalize, validate, hash: most of the CPU a page costs) is made in the
    run's judging processes (HARVESTER_JUDGE_PROCESSES), in batches (``JudgingQueue``), so the
    reactor thread is left to fetch; a judgement depends on its page alone, so the order they
    come back in is of no matter. A page whose judging process died is judged here instead.
    """

    def __init__(self, crawler: Crawler, run: CrawlRun) -> None:
        self.crawler = crawler
        self.run = run
        self.keep_pages = crawler.settings.getbool("HARVESTER_STORE_RAW_PAGES")
        # Awaiting a process's answer needs asyncio's loop (Scrapy's default reactor).
        self.queue = JudgingQueue(run, self.keep_pages) if is_asyncio_available() else None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> JudgePipeline:
        return cls(crawler, run_of(crawler))

    def open_spider(self) -> None:
        """Start the judging processes now: the parser's modules are imported in them while
        the first sitemaps are fetched, not while the first pages wait (about a second)."""
        pool = self.run.judge_pool() if self.queue is not None else None
        if pool is None:
            return
        try:
            pool.submit(judge_batch, [], self.keep_pages)
        except BrokenProcessPool:  # died already: the first pages go to a new one
            self.run.judge_pool_broke(pool)

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, FetchedResponse):
            return item
        if self.queue is None:
            return self.verdict(item, judge_fetched(item, self.keep_pages))
        return self.verdict(item, await self.queue.judge(item))

    def verdict(self, fetched: FetchedResponse, judgement: Judgement) -> Record | PageVisit:
        """What a judgement passes on (or drops), counted where runs are looked at."""
        stats = self.crawler.stats
        record = judgement.record
        if record is None:
            reason = judgement.not_record or "no_record_fields"
            if stats is not None:
                stats.inc_value(f"harvester/non_record/{reason}")
            logger.debug("Not a record page (%s): %s", reason, fetched.url)
            if reason == "soft_404" and self.run.frontier is not None:
                self.run.frontier.still_gone(fetched.from_sitemap, fetched.was_record)
            return PageVisit(
                url=fetched.url,
                status=fetched.status,
                fetched_at=fetched.fetched_at,
                kind=reason,
                redirect_urls=list(fetched.redirect_urls),
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                sitemap_lastmod=fetched.sitemap_lastmod,
                sitemap_url=fetched.sitemap_url,
            )
        if stats is not None:
            stats.inc_value("harvester/record_pages")
            for label in judgement.unknown_labels:  # new labels on the site, in crawl_runs
                stats.inc_value(f"harvester/unknown_label/{label}")
        if record.text_repairs and record.raw is not None and record.raw.encoding_problem is None:
            # A repaired text is stored: say so where runs are looked at (crawl_runs.stats).
            logger.info(
                "Text repaired at %s: %s", record.source_url, "; ".join(record.text_repairs)
            )
            if stats is not None:
                stats.inc_value("harvester/encoding_repaired")
        if judgement.rejection is not None:
            self.run.quarantine(record, judgement.rejection)
            if stats is not None:
                stats.inc_value(f"harvester/quarantined/{judgement.rejection.reason}")
            raise DropItem(f"Quarantined {record.source_url}: {judgement.rejection}")
        return record


class DedupePipeline:
    """One record per NCJ number per crawl, whatever URL it was reached under.

    A page is passed on when it beats every page of its record seen so far, by the rule in
    harvester.conflicts; the last page passed on, the one stored, is the best of them all.
    """

    def __init__(self, crawler: Crawler, run: CrawlRun) -> None:
        self.crawler = crawler
        self.run = run
        self.sightings = run.sightings()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DedupePipeline:
        return cls(crawler, run_of(crawler))

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, Record) or item.ncj_number is None:
            return item
        verdict = self.sightings.offer(item, known_content_hash(item))
        if verdict.conflict is not None:
            logger.info("Conflict: %s", verdict.conflict)
            self.crawler.stats.inc_value("harvester/conflicts")
        if not verdict.keep:
            # The page is not stored, but its URL is one the record lives under: remember it,
            # so the next crawl does not fetch it again.
            self.run.note_visit(visit_of(item))
            raise DropItem(
                f"Duplicate NCJ {item.ncj_number} at {item.source_url}", log_level="DEBUG"
            )
        return item


class StorePipeline:
    """Hands records and URL states to the run's writer; the run opens and closes it."""

    def __init__(self, run: CrawlRun) -> None:
        self.run = run

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(run_of(crawler))

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
