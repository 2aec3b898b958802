"""`scrapy crawl ncjrs`: finds NCJRS record pages and hands them to the item pipelines.

Navigation only: it reads robots.txt, sitemaps and listings, and asks the crawl's frontier
(harvester/frontier.py) which of the record pages it found to request, and how; the frontier
knows what the database holds (incremental crawls, gaps, gone records, revalidation). Where
the records come from (``-a NAME=VALUE``, each listed once in ``SpiderArguments``):

    (nothing)          the live site, via robots.txt sitemaps
    sitemap, listing   a sitemap, sitemap index or robots.txt; a listing and its next pages
    url, urls_file     these record pages (a file: one URL a line)
    ncj, ncj_file      by NCJ number (setting NCJ_URL_TEMPLATE)

One bad entry point never ends the crawl: a sitemap, sitemap-index entry or listing page that
answers an error, is blocked by robots.txt, lies off the hosts and ports the run was pointed at,
is not http(s), is a decompression bomb or not a sitemap is a failed entry point (logged,
counted in harvester/entry_points_failed, listed in harvester/failed_entry_points; the run
fails its checks, harvester/monitoring.py) and the crawl goes on with the rest. A damaged
sitemap (XML errors, entity declarations) gives the entries before the damage and is read
again next run. Ignored requests are counted by kind (harvester/ignored/<kind>).

A record page that answers HTML goes out as a ``FetchedResponse`` item, which the pipelines
judge (harvester.judge), de-duplicate and store. A 304, a 404/410, a page that is not HTML and
a request that got no answer go out as a ``PageVisit``, which the store keeps as URL state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, cast

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response, TextResponse
from scrapy.settings import BaseSettings
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.python.failure import Failure

from harvester.crawl_session import run_of
from harvester.distributed import RECORD_PAGE, REPUSHED, IssuedPage
from harvester.entrypoints import Scope, failure_reason, ignored_kind, read_sitemap
from harvester.errors import SitemapUnreadable
from harvester.frontier import NAVIGATION_PRIORITY, Frontier, PageRequest
from harvester.items import FetchedResponse, GapReason, PageVisit
from harvester.parsing import http_validators
from harvester.store import now_utc
from harvester.urls import LIVE_SITE_ROBOTS, canonical_url, is_record_url, ncj_url
from spiders.arguments import SpiderArguments

NEXT_PAGE_XPATH = (
    "//a[@rel='next' or contains(concat(' ', normalize-space(@class), ' '), ' next ')"
    " or translate(normalize-space(.), 'NEXT›»>', 'next') = 'next']/@href"
    " | //link[@rel='next']/@href"
)

SITEMAP_MAXSIZE = 64 * 1024 * 1024
# Entry points that failed, listed in the stats (crawl_runs.stats): enough to act on, bounded.
MAX_LISTED_FAILURES = 100


class NcjrsSpider(Spider):
    name = "ncjrs"
    frontier: Frontier  # the crawl run's, from start()
    allowed_domains: list[str]  # the run's scope, from from_crawler (Scrapy's offsite filter)

    def __init__(self, **kwargs: Any) -> None:
        given = SpiderArguments.take(kwargs)
        checked = given.check()
        super().__init__(**kwargs)
        # Recorded with the run (crawl_runs.arguments).
        self.arguments = given.given()
        self.full = checked.full
        self.since = checked.since
        # Read by harvester.politeness.RequestBudgetMiddleware.
        self.max_requests = checked.max_requests
        self.listing_urls = checked.listing_urls
        self.record_urls = checked.record_urls
        self.ncj_numbers = checked.ncj_numbers
        self.ncj_urls: list[str] = []  # from NCJ_URL_TEMPLATE, once settings are known
        self.sitemap_urls = checked.sitemap_urls
        self.scope = Scope((), frozenset())  # set in from_crawler (harvester.entrypoints)
        if not (self.sitemap_urls or self.listing_urls or self.record_urls or self.ncj_numbers):
            self.sitemap_urls = [LIVE_SITE_ROBOTS]

    @classmethod
    def check_arguments(cls, arguments: dict[str, Any]) -> None:
        """BadArgument for the first spider argument this spider cannot use: called by
        `scrapy crawl` and `harvester crawl` before the crawl starts (a usage error, said in
        one line), as ``__init__`` would fail later."""
        SpiderArguments.take(dict(arguments)).check()

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        contact = settings.get("HARVESTER_CONTACT")
        # Both are Scrapy defaults, so both have a priority (getpriority is None for unset).
        user_agent, bot_name = settings.getpriority("USER_AGENT"), settings.getpriority("BOT_NAME")
        if contact and (user_agent or 0) <= (bot_name or 0):
            settings.set("USER_AGENT", f"{settings['USER_AGENT'][:-1]}; {contact})", "spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> NcjrsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        template = crawler.settings.get("NCJ_URL_TEMPLATE")
        spider.ncj_urls = [ncj_url(template, number) for number in spider.ncj_numbers]
        # Stay on the hosts and ports the user pointed us at (and, for the live site, its
        # sister hosts). Set before the spider opens: the offsite filter reads it then.
        spider.scope = Scope.of(
            spider.sitemap_urls + spider.listing_urls + spider.record_urls + spider.ncj_urls
        )
        spider.allowed_domains = list(spider.scope.domains)
        crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
        crawler.signals.connect(spider.on_dropped, signal=signals.request_dropped)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        # The run (an extension) exists once the engine runs, the spider before it.
        run = run_of(self.crawler)
        self.frontier = run.open_frontier(self.scope, self.full, self.since)
        fleet = run.fleet  # a worker of a distributed run (harvester/distributed.py)
        if fleet is not None:
            fleet.repush = self._request_again
            # Only the coordinator navigates; the others take record pages from the shared
            # queue, and one of them starts here if the coordinator dies.
            if not await fleet.coordinating():
                return
        for page in self.frontier.ledger_requests():
            yield self._record_request(page)
        for page in self.frontier.named_requests(self.record_urls + self.ncj_urls):
            yield self._record_request(page)  # asked for by name: always, conditionally
        for listing_url in self.listing_urls:
            yield self._listing_request(listing_url, priority=0)
        # With JOBDIR, the sitemaps still to read survive a pause (SpiderState keeps `state`).
        state = getattr(self, "state", None)
        if state is not None and "sitemaps_waiting" in state:
            self.frontier.wait_for(state["sitemaps_waiting"])
        else:
            self.frontier.wait_for(self.sitemap_urls)
        if request := self._next_sitemap():
            yield request
        if self.sitemap_urls or self.listing_urls:  # a run that collects re-checks its share
            for page in self.frontier.revalidation_requests():
                yield self._record_request(page)
        if fleet is not None:
            fleet.start_exhausted()

    def _request_again(self, pages: list[IssuedPage]) -> None:
        """A distributed run's coordinator: record pages no worker answered, asked again."""
        engine = self.crawler.engine
        assert engine is not None
        requests = self.frontier.repeated_requests(
            [
                (
                    page.url,
                    datetime.fromisoformat(page.sitemap_lastmod) if page.sitemap_lastmod else None,
                    page.sitemap_url,
                )
                for page in pages
            ]
        )
        for page, request in zip(pages, requests, strict=True):
            again = self._record_request(request)
            again.meta[REPUSHED] = page.tries
            engine.crawl(again)
        self._count("harvester/distributed/repushed", len(pages))

    def _next_sitemap(self, *, force: bool = False) -> Request | None:
        """The next sitemap the frontier has waiting that is on this run's hosts, if the
        frontier lets the run read one now (``force``: whatever is outstanding)."""
        request = None
        while request is None and (sitemap := self.frontier.next_sitemap(force=force)):
            if refusal := self.scope.refusal(sitemap):
                self.frontier.sitemap_failed(sitemap)
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
        self._save_state()
        return request

    def _save_state(self) -> None:
        if (state := getattr(self, "state", None)) is not None:
            state["sitemaps_waiting"] = list(self.frontier.sitemaps_waiting)

    def on_idle(self) -> None:
        """Nothing in flight, yet sitemaps wait: the chain broke somewhere (a callback that
        raised, a request a middleware dropped). Read the next one rather than stop."""
        if getattr(self, "frontier", None) is None:
            return  # the crawl did not start
        request = self._next_sitemap(force=True)
        if request is None or self.crawler.engine is None:
            self._keep_open()
            return
        self.logger.info("Reading the next waiting sitemap: %s", request.url)
        self._count("harvester/sitemaps_read_when_idle")
        self.crawler.engine.crawl(request)
        raise DontCloseSpider

    def _keep_open(self) -> None:
        """A worker of a distributed run stays until the run is finished: requests may come."""
        fleet = run_of(self.crawler).fleet
        if fleet is not None and not fleet.finished:
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
        if request.meta.get("harvester_sitemap"):
            # Neither its parse nor its errback will run: nothing of it to wait for, and the
            # next sitemap is read now, not once the crawl has gone idle.
            self.frontier.sitemap_failed(first)
            self._page_done(True)
        if not looped:
            if chain:  # an alias of a page already asked for: its answer is handled there
                self._page_done(self.frontier.answered(request.meta.get("harvester_from_sitemap")))
            return
        self._page_done(self.frontier.failed(request.meta.get("harvester_from_sitemap")))
        if entry := request.meta.get("harvester_entry"):
            self._entry_failed(entry, first, "redirect_loop", f"redirected back to {request.url}")

    def _page_done(self, sitemap_finished: bool) -> None:
        """A record page was answered (or never will be): when that finished its sitemap,
        read the next one (the frontier keeps one ahead of the pages being fetched)."""
        if sitemap_finished and (request := self._next_sitemap()):
            self.crawler.engine.crawl(request)

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
        self._save_state()
        # The next sitemap goes out first, so it downloads while this one's entries are looked
        # up in the database; its lower priority still keeps it behind this one's pages.
        if request := self._next_sitemap():
            yield request
        for page in self.frontier.sitemap_requests(sitemap, entries):
            yield self._record_request(page)

    def _read_sitemap(self, response: Response, sitemap: str) -> list[tuple[str, str | None]]:
        """Queue the sitemaps it lists; return its record pages as (URL, lastmod text).

        Raises SitemapUnreadable when nothing could be read. A damaged sitemap (XML errors,
        entity declarations) gives what was read before the damage and is read again next run.
        """
        if response.url.endswith("/robots.txt"):
            listed = list(sitemap_urls_from_robots(response.body, base_url=response.url))
            if not listed:
                raise SitemapUnreadable("no_sitemaps", "robots.txt lists no Sitemap: line")
            self.frontier.wait_for(listed)
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
            self.frontier.index_lists(document.entries)
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

    def _record_request(self, page: PageRequest) -> Request:
        return Request(
            page.url,
            callback=self.parse_record,
            errback=self.on_error,
            headers=page.headers,
            priority=page.priority,
            # Record requests skip Scrapy's duplicate filter, which would silently drop a
            # redirect to a page asked for already, so the alias it came from would never get
            # its URL state; the frontier asks each page once.
            dont_filter=True,
            # 304, 404 and 410 are answers here, not errors (unchanged; gone, which counts
            # towards a withdrawal). The sitemap and its lastmod are stored with the page.
            meta={
                RECORD_PAGE: True,
                "handle_httpstatus_list": [304, 404, 410],
                "sitemap_lastmod": page.sitemap_lastmod,
                "sitemap_url": page.sitemap_url,
                "harvester_from_sitemap": page.from_sitemap,
                "harvester_was_record": page.was_record,
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
            self.frontier.unreadable(url)
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
        pages, keep_paging = self.frontier.listing_requests(records)
        for page in pages:
            yield self._record_request(page)
        if not keep_paging:
            self.logger.info("Listing %s holds only stored records: stop paging", response.url)
            return
        for href in response.xpath(NEXT_PAGE_XPATH).getall()[:1]:
            next_page = response.urljoin(href.strip())
            if refusal := self.scope.refusal(next_page):
                self._entry_failed("listing", next_page, refusal, f"next page of {response.url}")
            else:
                yield self._listing_request(next_page)

    def parse_record(self, response: Response) -> Iterator[FetchedResponse | PageVisit]:
        """A record page's answer: the page, for the pipelines to judge, or, when there is
        no page to judge (304, 404/410, not HTML), what the next crawl must know of its URL."""
        self._count("harvester/record_responses")
        self._page_done(self.frontier.answered(response.meta.get("harvester_from_sitemap")))
        if response.status == 304:
            self._count("harvester/not_modified")
            yield self._visit(response, None)
            return
        if response.status in (404, 410):
            self.frontier.still_gone(
                response.meta.get("harvester_from_sitemap"),
                bool(response.meta.get("harvester_was_record")),
            )
            self._count("harvester/gone")
            self.logger.info("Gone (%d): %s", response.status, response.url)
            yield self._visit(response, "gone")
            return
        if not isinstance(response, TextResponse):
            self._count("harvester/non_record/not_html")
            yield self._visit(response, "not_html")
            return
        content_type = response.headers.get(b"Content-Type")
        etag, last_modified = http_validators(response)
        meta = response.meta
        yield FetchedResponse(
            url=response.url,
            status=response.status,
            body=response.body,
            fetched_at=now_utc(),
            content_type=content_type.decode("latin-1") if content_type else None,
            etag=etag,
            last_modified=last_modified,
            redirect_urls=list(meta.get("redirect_urls", ())),
            sitemap_lastmod=meta.get("sitemap_lastmod"),
            sitemap_url=meta.get("sitemap_url"),
            from_sitemap=meta.get("harvester_from_sitemap"),
            was_record=bool(meta.get("harvester_was_record")),
        )

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
        request = getattr(failure, "request", None)
        # Not fetched (an error, robots.txt, the request budget): its sitemap is read again.
        self._page_done(
            self.frontier.failed(request.meta.get("harvester_from_sitemap") if request else None)
        )
        url = request.url if request is not None else "?"
        message = failure.getErrorMessage()
        if isinstance(failure.value, HttpError):
            message = f"answered HTTP {failure.value.response.status}"
        entry = request.meta.get("harvester_entry") if request is not None else None
        if (kind := ignored_kind(failure)) is not None:
            # Not an error, but never silent: robots.txt said no, a redirect left the run's
            # hosts or looped, the page was too large, or the request budget is spent.
            self._count("harvester/ignored")
            self._count(f"harvester/ignored/{kind}")
            self.logger.info("Ignored (%s): %s: %s", kind, url, message)
        else:
            self._count("harvester/errors")
            if request is not None and request.callback == self.parse_record:
                self._count("harvester/record_responses")
            if self.crawler.stats is not None:
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
        if entry == "sitemap":
            if request is not None:
                self.frontier.sitemap_failed(
                    (request.meta.get("redirect_urls") or [request.url])[0]
                )
            if next_sitemap := self._next_sitemap():
                yield next_sitemap
