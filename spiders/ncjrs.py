"""`scrapy crawl ncjrs`: finds NCJRS record pages and hands them to the parser.

Navigation only. Where the records come from:

    scrapy crawl ncjrs                                   the live site, via robots.txt sitemaps
    scrapy crawl ncjrs -a sitemap=URL                    a sitemap, sitemap index or robots.txt
    scrapy crawl ncjrs -a listing=URL                    a listing / search page and its next pages
    scrapy crawl ncjrs -a url=URL[,URL...]               these record pages
    scrapy crawl ncjrs -a urls_file=PATH                 record page URLs, one a line
    scrapy crawl ncjrs -a ncj=N[,N...]                   by NCJ number (setting NCJ_URL_TEMPLATE)
    scrapy crawl ncjrs -a ncj_file=PATH                  NCJ numbers, one a line

Incremental once the database holds records (harvester/incremental.py): sitemap entries whose
lastmod is not newer than what is stored are not requested, listings stop paging at a page of
known records, and every page fetched before goes out as a conditional request.

What the database knows comes first (harvester/urlstate.py): every URL whose record is not
stored yet (a gap in the completeness ledger) and is due for a retry, and every stored record's
page that answered "gone"; a share of the stored records is re-checked each run
(HARVESTER_REVALIDATE_DAYS); a stored record that drops out of a sitemap read to the end is
re-checked in the same run. A request that gets no answer leaves a gap with its reason.

    -a full=1                 re-check every page (conditionally)
    -a since=YYYY-MM-DD       re-check the sitemap entries modified since that day
    -a max_requests=N         stop after N requests (harvester/politeness.py)

One bad entry point never ends the crawl: a sitemap, sitemap-index entry or listing page that
answers an error, is blocked by robots.txt, lies off the hosts and ports the run was pointed at,
is not http(s), is a decompression bomb or not a sitemap is a failed entry point (logged,
counted in harvester/entry_points_failed, listed in harvester/failed_entry_points; the run
fails its checks, harvester/monitoring.py) and the crawl goes on with the rest. A damaged
sitemap (XML errors, entity declarations) gives the entries before the damage and is read
again next run. Ignored requests are counted by kind (harvester/ignored/<kind>).

Every record page goes to harvester.parsing.parse_page; the item pipelines then normalize,
validate, de-duplicate and store what it yields (harvester/pipelines.py). A 304 or a page that
is not a record yields a PageVisit, which the store keeps as URL state.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response, TextResponse
from scrapy.settings import BaseSettings
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.python.failure import Failure

from harvester.crawl_session import CrawlSession
from harvester.entrypoints import Scope, failure_reason, ignored_kind, read_sitemap
from harvester.errors import SitemapUnreadable
from harvester.incremental import RevisitPolicy, parse_lastmod, parse_since, truthy
from harvester.items import GapReason, PageVisit, RawRecord
from harvester.parsing import http_validators, parse_page
from harvester.rawpages import fetched_page
from harvester.store import now_utc
from harvester.urls import LIVE_SITE_ROBOTS, canonical_url, is_record_url, ncj_url
from harvester.urlstate import (
    KnownPage,
    dropped_from_sitemap,
    due_gaps,
    gone_record_urls,
    revalidation_due,
)

NEXT_PAGE_XPATH = (
    "//a[@rel='next' or contains(concat(' ', normalize-space(@class), ' '), ' next ')"
    " or translate(normalize-space(.), 'NEXT›»>', 'next') = 'next']/@href"
    " | //link[@rel='next']/@href"
)


# Sitemaps and listings wait until the record pages already found are fetched, so the queue
# holds one sitemap's worth of requests, not the whole site's. Gaps go before everything;
# the re-check of records nothing says have changed goes after everything.
GAP_PRIORITY = 10
NAVIGATION_PRIORITY = -10
REVALIDATION_PRIORITY = -20
SITEMAP_MAXSIZE = 64 * 1024 * 1024
# Entry points that failed, listed in the stats (crawl_runs.stats): enough to act on, bounded.
MAX_LISTED_FAILURES = 100


class NcjrsSpider(Spider):
    name = "ncjrs"

    def __init__(
        self,
        sitemap: str | None = None,
        listing: str | None = None,
        url: str | None = None,
        urls_file: str | None = None,
        ncj: str | None = None,
        ncj_file: str | None = None,
        full: str | None = None,
        since: str | None = None,
        max_requests: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.revisit = RevisitPolicy(full=truthy(full), since=parse_since(since) if since else None)
        # Read by harvester.politeness.RequestBudgetMiddleware.
        self.max_requests = int(max_requests) if max_requests else None
        self.listing_urls = _split(listing)
        self.record_urls = _split(url) + _lines(urls_file)
        self.ncj_numbers = [int(n) for n in _split(ncj) + _lines(ncj_file)]
        self.ncj_urls: list[str] = []  # from NCJ_URL_TEMPLATE, once settings are known
        self.sitemap_urls = _split(sitemap)
        self.sitemaps_waiting: deque[str] = deque()
        # Per sitemap read in this run: its index lastmod, entries, pages not answered yet,
        # and whether it must be read again (a page failed or is gone; see completed_sitemaps).
        self.sitemap_lastmods: dict[str, datetime] = {}
        self.sitemap_entries: dict[str, int] = {}
        self.sitemap_pending: dict[str, int] = {}
        self.sitemaps_to_reread: set[str] = set()
        self.trust_index_lastmod = True
        self.scope = Scope((), frozenset())  # set in from_crawler (harvester.entrypoints)
        self.revalidate_period = timedelta(0)
        # Canonical URLs of the record pages requested in this run: each is asked once. Record
        # requests skip Scrapy's duplicate filter, which would silently drop a redirect to a
        # page asked for already, so the alias it came from would never get its URL state.
        self.requested: set[str] = set()
        if not (self.sitemap_urls or self.listing_urls or self.record_urls or self.ncj_numbers):
            self.sitemap_urls = [LIVE_SITE_ROBOTS]
        self.arguments = {
            key: value
            for key, value in {
                "sitemap": sitemap,
                "listing": listing,
                "url": url,
                "urls_file": urls_file,
                "ncj": ncj,
                "ncj_file": ncj_file,
                "full": full,
                "since": since,
                "max_requests": max_requests,
            }.items()
            if value is not None
        }

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        contact = settings.get("HARVESTER_CONTACT")
        if contact and settings.getpriority("USER_AGENT") <= settings.getpriority("BOT_NAME"):
            settings.set("USER_AGENT", f"{settings['USER_AGENT'][:-1]}; {contact})", "spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> NcjrsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        template = crawler.settings.get("NCJ_URL_TEMPLATE")
        spider.ncj_urls = [ncj_url(template, number) for number in spider.ncj_numbers]
        # Stay on the hosts and ports the user pointed us at (and, for the live site, its
        # sister hosts). Set before the spider opens: the offsite filter reads it then.
        spider.revalidate_period = timedelta(
            days=crawler.settings.getfloat("HARVESTER_REVALIDATE_DAYS", 90.0)
        )
        spider.scope = Scope.of(
            spider.sitemap_urls + spider.listing_urls + spider.record_urls + spider.ncj_urls
        )
        spider.allowed_domains = list(spider.scope.domains)
        crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
        crawler.signals.connect(spider.on_dropped, signal=signals.request_dropped)
        spider.trust_index_lastmod = crawler.settings.getbool(
            "HARVESTER_SKIP_UNCHANGED_SITEMAPS", True
        )
        if not crawler.settings.getbool("HARVESTER_CONDITIONAL_REQUESTS", True):
            spider.revisit = dataclasses.replace(spider.revisit, conditional=False)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        for request in self._ledger_requests():
            yield request
        listed = self.record_urls + self.ncj_urls
        keys = [canonical_url(url) for url in listed]
        known = self._known(keys)
        for record_url, key in zip(listed, keys, strict=True):
            # Asked for by name: always fetched, conditionally.
            yield self._record_request(record_url, known.get(key))
        for listing_url in self.listing_urls:
            yield self._listing_request(listing_url, priority=0)
        # With JOBDIR, the sitemaps still to read survive a pause (SpiderState keeps `state`).
        state = getattr(self, "state", None)
        if state is not None and "sitemaps_waiting" in state:
            self.sitemaps_waiting.extend(state["sitemaps_waiting"])
        else:
            self.sitemaps_waiting.extend(self.sitemap_urls)
        if request := self._next_sitemap():
            yield request
        for request in self._revalidation_requests():
            yield request

    def _ledger_requests(self) -> list[Request]:
        """Gaps due for a retry, then stored records' pages that were gone, on this run's
        hosts: whatever the sitemaps say, these are asked first."""
        session = CrawlSession.for_crawler(self.crawler)
        gaps = session.query(due_gaps, self.revisit.started)
        gone = session.query(gone_record_urls)
        requests: list[Request] = []
        for urls, stat, priority in (
            (gaps, "harvester/gap_retries", GAP_PRIORITY),
            (gone, "harvester/gone_rechecks", 0),
        ):
            pairs = self._not_requested_yet(urls)
            known = self._known([key for _, key in pairs])
            for url, key in pairs:
                requests.append(self._record_request(url, known.get(key), priority=priority))
            self._count(stat, len(pairs))
        if gaps:
            self.logger.info(
                "Retrying %d URL(s) whose record is not stored yet (see `harvester coverage`)",
                self.crawler.stats.get_value("harvester/gap_retries", 0)
                if self.crawler.stats
                else len(gaps),
            )
        return requests

    def _revalidation_requests(self) -> list[Request]:
        """This run's share of the stored records, re-checked conditionally (a 304 costs no
        body), so that each is verified at least once every HARVESTER_REVALIDATE_DAYS."""
        collection_run = self.sitemap_urls or self.listing_urls
        if not collection_run or self.revisit.full or self.revisit.since:
            return []
        session = CrawlSession.for_crawler(self.crawler)
        due = session.query(
            revalidation_due, self.revisit.started, self.revalidate_period, self.revisit.started
        )
        pairs = self._not_requested_yet(due)
        known = self._known([key for _, key in pairs])
        self._count("harvester/revalidations", len(pairs))
        return [
            self._record_request(url, known.get(key), priority=REVALIDATION_PRIORITY)
            for url, key in pairs
        ]

    def _not_requested_yet(self, urls: list[str]) -> list[tuple[str, str]]:
        """(URL, canonical URL) of those on this run's hosts and not requested by it yet."""
        pairs = [(url, canonical_url(url)) for url in urls if self.scope.refusal(url) is None]
        return [(url, key) for url, key in pairs if key not in self.requested]

    def _known(self, canonical_urls: list[str]) -> dict[str, KnownPage]:
        if not canonical_urls:
            return {}
        return CrawlSession.for_crawler(self.crawler).known_pages(canonical_urls)

    def _next_sitemap(self) -> Request | None:
        """One sitemap at a time: the next is fetched once this one's record pages are.

        A site's sitemaps list every record; fetching them all at once would queue every
        record request in memory before the first record is stored.
        """
        state = getattr(self, "state", None)
        request = None
        while request is None and self.sitemaps_waiting:
            sitemap = self.sitemaps_waiting.popleft()
            if refusal := self.scope.refusal(sitemap):
                self._entry_failed("sitemap", sitemap, refusal, "outside the run's hosts/ports")
                continue
            request = Request(
                sitemap,
                callback=self.parse_sitemap,
                errback=self.on_error,
                priority=NAVIGATION_PRIORITY,
                # Sitemaps may be far larger than a record page (50,000 URLs, 10+ MB).
                meta={
                    "harvester_sitemap": True,
                    "harvester_entry": "sitemap",
                    "download_maxsize": SITEMAP_MAXSIZE,
                },
            )
        if state is not None:
            state["sitemaps_waiting"] = list(self.sitemaps_waiting)
        return request

    def on_idle(self) -> None:
        """Nothing in flight, yet sitemaps wait: the chain broke somewhere (a callback that
        raised, a request a middleware dropped). Read the next one rather than stop."""
        request = self._next_sitemap()
        if request is None or self.crawler.engine is None:
            return
        self.logger.info("Reading the next waiting sitemap: %s", request.url)
        self.crawler.engine.crawl(request)
        raise DontCloseSpider

    def on_dropped(self, request: Request) -> None:
        """The scheduler refused a request as a duplicate; its callback and errback are never
        called. After redirects back to a URL of its own chain (a -> b -> a) that is a loop: a
        failure. Otherwise the same page is already asked for, and handled there."""
        chain = request.meta.get("redirect_urls") or []
        looped = canonical_url(request.url) in {canonical_url(url) for url in chain}
        kind = "redirect_loop" if looped else "duplicate"
        self._count("harvester/ignored")
        self._count(f"harvester/ignored/{kind}")
        first = (chain or [request.url])[0]
        self.logger.info("Ignored (%s): %s (requested as %s)", kind, request.url, first)
        if not looped:
            if chain:  # an alias of a page already asked for: its answer is handled there
                self._handled(request, failed=False)
            return
        self._handled(request, failed=True)
        if entry := request.meta.get("harvester_entry"):
            self._entry_failed(entry, first, "redirect_loop", f"redirected back to {request.url}")

    def parse_sitemap(self, response: Response) -> Iterator[Request]:
        """A robots.txt (its Sitemap: lines), a sitemap index, or a sitemap of pages."""
        sitemap = (response.meta.get("redirect_urls") or [response.url])[0]
        try:
            entries = self._read_sitemap(response, sitemap)
        except SitemapUnreadable as error:
            self._entry_failed("sitemap", sitemap, error.reason, error.detail)
            entries = []
        except Exception as error:  # one bad sitemap must not end the crawl
            self.logger.exception("Reading sitemap %s failed", sitemap)
            self._entry_failed("sitemap", sitemap, "unreadable", repr(error))
            entries = []
        if (state := getattr(self, "state", None)) is not None:
            state["sitemaps_waiting"] = list(self.sitemaps_waiting)
        # The next sitemap goes out first, so it downloads while this one's entries are looked
        # up in the database; its lower priority still keeps it behind this one's pages.
        if request := self._next_sitemap():
            yield request
        yield from self._sitemap_record_requests(entries, sitemap)

    def _read_sitemap(self, response: Response, sitemap: str) -> list[tuple[str, str | None]]:
        """Queue the sitemaps it lists; return its record pages as (URL, lastmod text).

        Raises SitemapUnreadable when nothing could be read. A damaged sitemap (XML errors,
        entity declarations) gives what was read before the damage and is read again next run.
        """
        if response.url.endswith("/robots.txt"):
            listed = list(sitemap_urls_from_robots(response.body, base_url=response.url))
            if not listed:
                raise SitemapUnreadable("no_sitemaps", "robots.txt lists no Sitemap: line")
            self.sitemaps_waiting.extend(listed)
            return []
        document = read_sitemap(response.body, SITEMAP_MAXSIZE)
        if document.damage is not None:
            self._entry_failed(
                "sitemap",
                sitemap,
                document.damage,
                f"{document.damage_detail}; {len(document.entries)} entries read before it",
            )
        if document.kind == "sitemapindex":
            self._queue_sitemaps(document.entries)
            return []
        entries: list[tuple[str, str | None]] = []
        refused: dict[str, list[str]] = {}
        for location, lastmod in document.entries:
            if refusal := self.scope.refusal(location):
                refused.setdefault(refusal, []).append(location)
            elif is_record_url(location):
                entries.append((location, lastmod))
        for refusal, urls in refused.items():
            self._count(f"harvester/refused/{refusal}", len(urls))
            self.logger.warning(
                "Sitemap %s lists %d URL(s) that are %s, not fetched (first: %s)",
                sitemap,
                len(urls),
                "off the run's hosts/ports" if refusal == "offsite" else "not http(s)",
                urls[0],
            )
        self._count("harvester/listed_record_pages", len(entries))
        return entries

    def _queue_sitemaps(self, listed: list[tuple[str, str | None]]) -> None:
        """Queue an index's sitemaps, but not those unchanged since a run handled all they list.

        A sitemap's lastmod in the index is the newest of its entries' (sitemaps.org), so a
        sitemap not newer than when its every page was last handled lists nothing to fetch.
        """
        keys = [canonical_url(url) for url, _ in listed]
        trusted = self.trust_index_lastmod and not self.revisit.full and not self.revisit.since
        handled = CrawlSession.for_crawler(self.crawler).read_sitemaps(keys) if trusted else {}
        for (url, lastmod_text), key in zip(listed, keys, strict=True):
            lastmod = parse_lastmod(lastmod_text)
            before = handled.get(key)
            if lastmod is not None and before is not None and lastmod <= before[0]:
                self._count("harvester/sitemaps_skipped")
                self._count("harvester/skipped_unchanged", before[1])
                continue
            if lastmod is not None:
                self.sitemap_lastmods[url] = lastmod
            self.sitemaps_waiting.append(url)

    def _sitemap_record_requests(
        self, entries: list[tuple[str, str | None]], sitemap: str
    ) -> Iterator[Request]:
        keys = [canonical_url(url) for url, _ in entries]
        known = self._known(keys)
        skipped = 0
        self.sitemap_entries[sitemap] = len(entries)
        self.sitemap_pending.setdefault(sitemap, 0)
        sitemap_key = canonical_url(sitemap)
        for (url, lastmod_text), key in zip(entries, keys, strict=True):
            lastmod = parse_lastmod(lastmod_text)
            page = known.get(key)
            if key in self.requested:
                continue  # asked for already (a gap, a gone record's page, another sitemap)
            if self.revisit.wants(page, lastmod):
                self.sitemap_pending[sitemap] += 1
                request = self._record_request(url, page, lastmod, sitemap_key)
                request.meta["harvester_from_sitemap"] = sitemap
                request.meta["harvester_was_record"] = bool(page and page.ncj_number)
                yield request
            else:
                skipped += 1
        self._count("harvester/skipped_unchanged", skipped)
        if entries and sitemap not in self.sitemaps_to_reread:  # read to the end, undamaged
            yield from self._dropped_requests(sitemap, sitemap_key, keys)

    def _dropped_requests(
        self, sitemap: str, sitemap_key: str, listed: list[str]
    ) -> Iterator[Request]:
        """Stored records this sitemap listed before and lists no more: on the live site that
        is how a withdrawal looks, so they are asked now (conditionally)."""
        session = CrawlSession.for_crawler(self.crawler)
        dropped = session.query(dropped_from_sitemap, sitemap_key, listed)
        pairs = self._not_requested_yet(dropped)
        known = self._known([key for _, key in pairs])
        for url, key in pairs:
            self.sitemap_pending[sitemap] += 1
            # "" says "listed by no sitemap now": the answer clears the page's sitemap.
            request = self._record_request(url, known.get(key), sitemap_key="")
            request.meta["harvester_from_sitemap"] = sitemap
            request.meta["harvester_was_record"] = True
            yield request
        if pairs:
            self._count("harvester/dropped_rechecks", len(pairs))
            self.logger.info(
                "%d stored record(s) no longer listed in %s: re-checking them",
                len(pairs),
                sitemap,
            )

    def _handled(self, request: Request | None, failed: bool) -> None:
        """A record page from a sitemap got its answer (or, ``failed``, will not)."""
        sitemap = request.meta.get("harvester_from_sitemap") if request is not None else None
        if sitemap is None or sitemap not in self.sitemap_pending:
            return  # not from a sitemap read in this process (JOBDIR resumes its queue)
        self.sitemap_pending[sitemap] -= 1
        if failed:
            self.sitemaps_to_reread.add(sitemap)

    def _still_gone(self, response: Response) -> None:
        """A record's page answered "gone": its sitemap must be read again next run, so the
        page is asked again and its withdrawal streak can grow (or end)."""
        sitemap = response.meta.get("harvester_from_sitemap")
        if sitemap is not None and response.meta.get("harvester_was_record"):
            self.sitemaps_to_reread.add(sitemap)

    def sitemaps_read(self) -> list[str]:
        """Canonical URLs of the sitemaps read in this run."""
        return [canonical_url(url) for url in self.sitemap_pending]

    def sitemaps_to_forget(self) -> list[str]:
        """Sitemaps a page of which failed or is gone: read them again next run."""
        return [canonical_url(url) for url in self.sitemaps_to_reread]

    def completed_sitemaps(self) -> list[tuple[str, datetime, int]]:
        """Sitemaps read in this run whose every page was answered: (canonical URL, index
        lastmod, entries). Stored at the end of the run, so the next one may skip them."""
        return [
            (canonical_url(url), self.sitemap_lastmods[url], self.sitemap_entries[url])
            for url, pending in self.sitemap_pending.items()
            if pending == 0 and url not in self.sitemaps_to_reread and url in self.sitemap_lastmods
        ]

    def _record_request(
        self,
        url: str,
        known: KnownPage | None = None,
        lastmod: datetime | None = None,
        sitemap_key: str | None = None,
        priority: int = 0,
    ) -> Request:
        self._count("harvester/record_requests")
        self.requested.add(canonical_url(url))
        return Request(
            url,
            callback=self.parse_record,
            errback=self.on_error,
            headers=self.revisit.headers(known),
            priority=priority,
            dont_filter=True,
            # 304, 404 and 410 are answers here, not errors (unchanged; gone, which counts
            # towards a withdrawal). The sitemap and its lastmod are stored with the page.
            meta={
                "handle_httpstatus_list": [304, 404, 410],
                "sitemap_lastmod": lastmod,
                "sitemap_url": sitemap_key,
            },
        )

    def _count(self, key: str, count: int = 1) -> None:
        if count and self.crawler.stats is not None:
            self.crawler.stats.inc_value(key, count)

    def _listing_request(self, url: str, priority: int = NAVIGATION_PRIORITY) -> Request:
        return Request(
            url,
            callback=self.parse_listing,
            errback=self.on_error,
            priority=priority,
            meta={"harvester_entry": "listing"},
        )

    def _entry_failed(self, kind: str, url: str, reason: str, detail: str) -> None:
        """An entry point (robots.txt, a sitemap, a listing page) could not be read, or only
        in part: counted, logged, listed in the stats (the run fails its checks, see
        harvester.monitoring), and a sitemap is read again next run. The crawl goes on."""
        self._count("harvester/entry_points_failed")
        self._count(f"harvester/entry_points_failed/{reason}")
        if self.crawler.stats is not None:
            failed = self.crawler.stats.get_value("harvester/failed_entry_points") or []
            if len(failed) < MAX_LISTED_FAILURES:
                failed.append(f"{kind} {url}: {reason} ({detail})")
                self.crawler.stats.set_value("harvester/failed_entry_points", failed)
        if kind == "sitemap":
            self.sitemaps_to_reread.add(url)
        self.logger.error(
            "Entry point failed: %s %s: %s (%s); going on with the rest", kind, url, reason, detail
        )

    def parse_listing(self, response: Response) -> Iterator[Request]:
        if not isinstance(response, TextResponse):
            self._entry_failed("listing", response.url, "not_html", "the answer is not HTML")
            return
        hrefs = response.xpath("//a/@href").getall()
        records = [
            href
            for href in dict.fromkeys(response.urljoin(h.strip()) for h in hrefs)
            if is_record_url(href)
        ]
        refused = [href for href in records if self.scope.refusal(href)]
        if refused:
            self._count("harvester/refused/offsite", len(refused))
            self.logger.warning(
                "Listing %s links %d record page(s) off the run's hosts/ports, not fetched "
                "(first: %s)",
                response.url,
                len(refused),
                refused[0],
            )
            records = [href for href in records if href not in refused]
        self._count("harvester/listed_record_pages", len(records))
        keys = [canonical_url(href) for href in records]
        known = self._known(keys)
        new = 0
        for href, key in zip(records, keys, strict=True):
            page = known.get(key)
            if key in self.requested:
                continue
            if self.revisit.wants_listed(page):
                new += page is None
                yield self._record_request(href, page)
            else:
                self._count("harvester/skipped_unchanged")
        if records and not new and not self.revisit.full:
            # Listings run newest first: past a page of records we have, all are older.
            self.logger.info("Listing %s holds only stored records: stop paging", response.url)
            return
        for href in response.xpath(NEXT_PAGE_XPATH).getall()[:1]:
            next_page = response.urljoin(href.strip())
            if refusal := self.scope.refusal(next_page):
                self._entry_failed("listing", next_page, refusal, f"next page of {response.url}")
            else:
                yield self._listing_request(next_page)

    def parse_record(self, response: Response) -> Iterator[RawRecord | PageVisit]:
        assert self.crawler.stats is not None
        self._count("harvester/record_responses")
        self._handled(response.request, failed=False)
        if response.status == 304:
            self._count("harvester/not_modified")
            yield self._visit(response, None)
            return
        if response.status in (404, 410):
            self._still_gone(response)
            self._count("harvester/gone")
            self.logger.info("Gone (%d): %s", response.status, response.url)
            yield self._visit(response, "gone")
            return
        if not isinstance(response, TextResponse):
            self.crawler.stats.inc_value("harvester/non_record/not_html")
            yield self._visit(response, "not_html")
            return
        page = parse_page(response)
        if isinstance(page, RawRecord):
            self.crawler.stats.inc_value("harvester/record_pages")
            for label in page.unknown_fields:  # new labels on the site show up in crawl_runs
                self.crawler.stats.inc_value(f"harvester/unknown_label/{label}")
            if self.settings.getbool("HARVESTER_STORE_RAW_PAGES"):
                page.fetched_page = fetched_page(response, page)
            yield page
        else:
            self.crawler.stats.inc_value(f"harvester/non_record/{page.reason}")
            self.logger.debug("Not a record page (%s): %s", page.reason, response.url)
            if page.reason == "soft_404":
                self._still_gone(response)
            yield self._visit(response, page.reason)

    def _visit(self, response: Response, kind: Any) -> PageVisit:
        etag, last_modified = http_validators(response)
        meta = response.meta
        return PageVisit(
            url=response.url,
            status=response.status,
            fetched_at=now_utc(),
            kind=kind,
            redirect_urls=list(meta.get("redirect_urls", ())),
            etag=etag,
            last_modified=last_modified,
            sitemap_lastmod=meta.get("sitemap_lastmod"),
            sitemap_url=meta.get("sitemap_url"),
        )

    def _failed_visit(
        self, request: Request, url: str, reason: str, detail: str, status: int
    ) -> PageVisit:
        """The gap a record request that got no answer leaves in the ledger, at the URL as
        asked for (the one the next run looks up)."""
        self._count(f"harvester/gaps/{reason}")
        return PageVisit(
            url=url,
            status=status,
            fetched_at=now_utc(),
            kind="failed",
            gap_reason=cast(GapReason, reason),
            gap_detail=detail,
            sitemap_url=request.meta.get("sitemap_url"),
        )

    def on_error(self, failure: Failure) -> Iterator[Request | PageVisit]:
        assert self.crawler.stats is not None
        request = getattr(failure, "request", None)
        # Not fetched (an error, robots.txt, the request budget): its sitemap is read again.
        self._handled(request, failed=True)
        url = request.url if request is not None else "?"
        message = failure.getErrorMessage()
        if failure.check(HttpError):
            message = f"answered HTTP {failure.value.response.status}"
        entry = request.meta.get("harvester_entry") if request is not None else None
        if (kind := ignored_kind(failure)) is not None:
            # Not an error, but never silent: robots.txt said no, a redirect left the run's
            # hosts or looped, the page was too large, or the request budget is spent.
            self.crawler.stats.inc_value("harvester/ignored")
            self.crawler.stats.inc_value(f"harvester/ignored/{kind}")
            self.logger.info("Ignored (%s): %s: %s", kind, url, message)
        else:
            self.crawler.stats.inc_value("harvester/errors")
            if request is not None and request.callback == self.parse_record:
                self._count("harvester/record_responses")
            failed = self.crawler.stats.get_value("harvester/failed_urls") or []
            if len(failed) < MAX_LISTED_FAILURES:  # enough to act on, bounded for bad runs
                failed.append(f"{url} ({message})")
                self.crawler.stats.set_value("harvester/failed_urls", failed)
            self.logger.warning("Giving up on %s: %s", url, message)
        reason = failure_reason(failure)  # None: the request budget, the run is stopping
        if request is not None and reason is not None:
            first = (request.meta.get("redirect_urls") or [request.url])[0]
            if entry is not None:
                self._entry_failed(entry, first, reason, message)
            elif request.callback == self.parse_record:
                response = getattr(failure.value, "response", None)
                status = response.status if response is not None else 0
                yield self._failed_visit(request, first, reason, message, status)
        # One bad sitemap must not end the crawl: go on with the next.
        if entry == "sitemap" and (next_sitemap := self._next_sitemap()):
            yield next_sitemap


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _lines(path: str | None) -> list[str]:
    if not path:
        return []
    text = Path(path).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
