"""What a crawl knows about URLs, and so which record pages it requests, in what order.

The spider navigates (robots.txt, sitemaps, listings) and asks the frontier which of the
record pages it found to request, with which headers and priority; it tells the frontier
how each sitemap's pages were answered. The frontier decides with what the database knows
(harvester/urlstate.py) and the revisit policy (harvester/incremental.py):

- first the ledger: URLs whose record is not stored yet and are due for a retry (gaps), and
  stored records' pages that answered "gone" (each answer counts towards a withdrawal);
- pages asked for by name are always requested (conditionally);
- sitemap entries not newer than what is stored are not requested, and a sitemap not newer
  in its index than when a run last handled every page it lists is not read at all;
- a listing stops paging at a page of records already stored;
- a stored record that drops out of a sitemap read to the end is re-checked in the run;
- last, this run's share of the stored records, re-checked (HARVESTER_REVALIDATE_DAYS).

Each canonical URL is requested once per run. Per sitemap read in the run it keeps the
ledger the run owner (harvester.crawl_session.CrawlRun) saves at close: the sitemaps whose
every page was answered may be skipped by the next run; those with a page that failed or
is gone must be read again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from sqlalchemy import Engine

from harvester.entrypoints import Scope
from harvester.incremental import RevisitPolicy, parse_lastmod
from harvester.runsets import RunUrls
from harvester.urls import canonical_url
from harvester.urlstate import (
    KnownPage,
    dropped_from_sitemap,
    due_gaps,
    gone_record_urls,
    known_pages,
    read_sitemaps,
    revalidation_due,
)

logger = logging.getLogger(__name__)

# Sitemaps and listings wait until the record pages already found are fetched, so the queue
# holds one sitemap's worth of requests, not the whole site's. Gaps go before everything;
# the re-check of records nothing says have changed goes after everything.
GAP_PRIORITY = 10
NAVIGATION_PRIORITY = -10
# Sitemaps read ahead of the one whose record pages are being fetched: one, so the next
# sitemap's pages are queued before this one's run out. Without a bound the chain of sitemaps
# (each one's parse asks for the next) ran ahead of the fetching, and a site of 25 sitemaps
# had 8,000+ record requests queued in memory at once (about 10 MiB more than a 3-sitemap
# site's crawl, measured with the memory benchmark).
SITEMAPS_AHEAD = 1
REVALIDATION_PRIORITY = -20


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A record page the frontier wants requested, and what its answer is stored with."""

    url: str
    headers: dict[str, str]  # the stored validators (a conditional request), or none
    priority: int = 0
    sitemap_lastmod: datetime | None = None  # the entry's lastmod
    # The sitemap that lists the page (canonical), stored with it; "" says "listed by no
    # sitemap now" (the answer clears the page's sitemap); None: not from a sitemap.
    sitemap_url: str | None = None
    # The sitemap, as read, whose completeness waits for this page's answer.
    from_sitemap: str | None = None
    was_record: bool = False  # a stored record's page: "gone" then counts for its sitemap


@dataclass(frozen=True, slots=True)
class CompletedSitemap:
    url: str  # canonical
    lastmod: datetime  # the sitemap's lastmod in its index
    entries: int


class Frontier:
    """The URL knowledge of one crawl run: see the module's docstring."""

    def __init__(
        self,
        engine: Engine,
        policy: RevisitPolicy,
        scope: Scope,
        *,
        revalidate_period: timedelta,
        skip_unchanged_sitemaps: bool,
        stats: StatsCollector | None = None,
        sitemaps_ahead: int | None = SITEMAPS_AHEAD,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.scope = scope
        self.revalidate_period = revalidate_period
        self.trust_index_lastmod = skip_unchanged_sitemaps and not (policy.full or policy.since)
        self.stats = stats
        # Canonical URLs of the record pages requested in this run: each is asked once.
        self.requested = RunUrls()
        self.sitemaps_waiting: deque[str] = deque()
        # Per sitemap read in this run: its index lastmod, entries, pages not answered yet,
        # and whether it must be read again (a page failed or is gone).
        self._lastmods: dict[str, datetime] = {}
        self._entries: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._to_reread: set[str] = set()
        # Sitemaps (canonical URLs) handed out by next_sitemap whose record pages are not
        # all answered yet (fetching, or their pages in flight); at most 1 + sitemaps_ahead
        # of them (None: any number, for a distributed run whose pages other workers answer).
        self.sitemaps_ahead = sitemaps_ahead
        self._open: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        settings: BaseSettings,
        engine: Engine,
        scope: Scope,
        *,
        full: bool = False,
        since: datetime | None = None,
        stats: StatsCollector | None = None,
        sitemaps_ahead: int | None = SITEMAPS_AHEAD,
    ) -> Frontier:
        policy = RevisitPolicy(
            full=full, since=since, conditional=settings.getbool("HARVESTER_CONDITIONAL_REQUESTS")
        )
        return cls(
            engine,
            policy,
            scope,
            revalidate_period=timedelta(days=settings.getfloat("HARVESTER_REVALIDATE_DAYS")),
            skip_unchanged_sitemaps=settings.getbool("HARVESTER_SKIP_UNCHANGED_SITEMAPS"),
            stats=stats,
            sitemaps_ahead=sitemaps_ahead,
        )

    # --- which record pages to request ---------------------------------------------------

    def ledger_requests(self) -> list[PageRequest]:
        """Gaps due for a retry, then stored records' pages that were gone, on this run's
        hosts: whatever the sitemaps say, these are asked first."""
        with self.engine.connect() as connection:
            gaps = due_gaps(connection, self.policy.started)
            gone = gone_record_urls(connection)
        requests: list[PageRequest] = []
        for urls, stat, priority in (
            (gaps, "harvester/gap_retries", GAP_PRIORITY),
            (gone, "harvester/gone_rechecks", 0),
        ):
            pairs = self._not_requested_yet(urls)
            known = self._known([key for _, key in pairs])
            requests += [
                self._request(url, known.get(key), priority=priority) for url, key in pairs
            ]
            self._count(stat, len(pairs))
            if urls is gaps and pairs:
                logger.info(
                    "Retrying %d URL(s) whose record is not stored yet (see `harvester coverage`)",
                    len(pairs),
                )
        return self._counted(requests)

    def named_requests(self, urls: list[str]) -> list[PageRequest]:
        """Pages asked for by name: always requested, conditionally."""
        keys = [canonical_url(url) for url in urls]
        known = self._known(keys)
        return self._counted(
            [self._request(url, known.get(key)) for url, key in zip(urls, keys, strict=True)]
        )

    def repeated_requests(
        self, pages: list[tuple[str, datetime | None, str | None]]
    ) -> list[PageRequest]:
        """Pages (URL, sitemap lastmod, sitemap) requested before in this run and never
        answered (a distributed run's worker stopped with them in hand): asked again, as they
        were the first time."""
        keys = [canonical_url(url) for url, _, _ in pages]
        known = self._known(keys)
        return [
            self._request(url, known.get(key), lastmod=lastmod, sitemap_key=sitemap)
            for (url, lastmod, sitemap), key in zip(pages, keys, strict=True)
        ]

    def revalidation_requests(self) -> list[PageRequest]:
        """This run's share of the stored records, re-checked conditionally (a 304 costs no
        body), so that each is verified at least once every HARVESTER_REVALIDATE_DAYS. Only a
        run that collects (sitemaps, listings) and re-checks no more than that asks."""
        if self.policy.full or self.policy.since:
            return []
        started = self.policy.started
        with self.engine.connect() as connection:
            due = revalidation_due(connection, started, self.revalidate_period, started)
        pairs = self._not_requested_yet(due)
        known = self._known([key for _, key in pairs])
        self._count("harvester/revalidations", len(pairs))
        return self._counted(
            [
                self._request(url, known.get(key), priority=REVALIDATION_PRIORITY)
                for url, key in pairs
            ]
        )

    def listing_requests(self, urls: list[str]) -> tuple[list[PageRequest], bool]:
        """The record pages of a listing page to request, and whether to read its next page.

        Listings run newest first: past a page of records already stored, all are older.
        """
        keys = [canonical_url(url) for url in urls]
        known = self._known(keys)
        requests: list[PageRequest] = []
        new = 0
        for url, key in zip(urls, keys, strict=True):
            page = known.get(key)
            if key in self.requested:
                continue
            if self.policy.wants_listed(page):
                new += page is None
                requests.append(self._request(url, page))
            else:
                self._count("harvester/skipped_unchanged")
        return self._counted(requests), bool(not urls or new or self.policy.full)

    def sitemap_requests(
        self, sitemap: str, entries: list[tuple[str, str | None]]
    ) -> list[PageRequest]:
        """The record pages of a sitemap (URL, lastmod text) to request: changed and new ones,
        and the stored records it no longer lists when it was read to the end."""
        keys = [canonical_url(url) for url, _ in entries]
        known = self._known(keys)
        skipped = 0
        self._entries[sitemap] = len(entries)
        self._pending.setdefault(sitemap, 0)
        sitemap_key = canonical_url(sitemap)
        requests: list[PageRequest] = []
        for (url, lastmod_text), key in zip(entries, keys, strict=True):
            lastmod = parse_lastmod(lastmod_text)
            page = known.get(key)
            if key in self.requested:
                continue  # asked for already (a gap, a gone record's page, another sitemap)
            if self.policy.wants(page, lastmod):
                self._pending[sitemap] += 1
                requests.append(
                    self._request(
                        url,
                        page,
                        lastmod=lastmod,
                        sitemap_key=sitemap_key,
                        from_sitemap=sitemap,
                        was_record=bool(page and page.ncj_number),
                    )
                )
            else:
                skipped += 1
        self._count("harvester/skipped_unchanged", skipped)
        if entries and sitemap not in self._to_reread:  # read to the end, undamaged
            requests += self._dropped_requests(sitemap, sitemap_key, keys)
        if not self._pending[sitemap]:
            self._open.discard(canonical_url(sitemap))  # nothing of it to wait for
        return self._counted(requests)

    def _dropped_requests(
        self, sitemap: str, sitemap_key: str, listed: list[str]
    ) -> list[PageRequest]:
        """Stored records this sitemap listed before and lists no more: on the live site that
        is how a withdrawal looks, so they are asked now (conditionally)."""
        with self.engine.connect() as connection:
            dropped = dropped_from_sitemap(connection, sitemap_key, listed)
        pairs = self._not_requested_yet(dropped)
        known = self._known([key for _, key in pairs])
        requests = []
        for url, key in pairs:
            self._pending[sitemap] += 1
            requests.append(
                self._request(
                    url, known.get(key), sitemap_key="", from_sitemap=sitemap, was_record=True
                )
            )
        if pairs:
            self._count("harvester/dropped_rechecks", len(pairs))
            logger.info(
                "%d stored record(s) no longer listed in %s: re-checking them", len(pairs), sitemap
            )
        return requests

    # --- which sitemaps to read ----------------------------------------------------------

    def wait_for(self, sitemaps: Iterable[str]) -> None:
        """Sitemaps (or robots.txt files) to read, whatever they hold."""
        self.sitemaps_waiting.extend(sitemaps)

    def index_lists(self, listed: list[tuple[str, str | None]]) -> None:
        """A sitemap index's sitemaps (URL, lastmod text): queue all but those unchanged since
        a run handled every page they list.

        A sitemap's lastmod in the index is the newest of its entries' (sitemaps.org), so a
        sitemap not newer than when its every page was last handled lists nothing to fetch.
        """
        keys = [canonical_url(url) for url, _ in listed]
        handled: dict[str, tuple[datetime, int]] = {}
        if self.trust_index_lastmod:
            with self.engine.connect() as connection:
                handled = read_sitemaps(connection, keys)
        for (url, lastmod_text), key in zip(listed, keys, strict=True):
            lastmod = parse_lastmod(lastmod_text)
            before = handled.get(key)
            if lastmod is not None and before is not None and lastmod <= before[0]:
                self._count("harvester/sitemaps_skipped")
                self._count("harvester/skipped_unchanged", before[1])
                continue
            if lastmod is not None:
                self._lastmods[url] = lastmod
            self.sitemaps_waiting.append(url)

    def next_sitemap(self, *, force: bool = False) -> str | None:
        """The next sitemap to read, if the run may read one now: one sitemap ahead of the one
        whose record pages are being fetched (SITEMAPS_AHEAD), the next once one of them has
        every page answered (``answered`` and ``failed`` say when). ``force``: whatever is
        outstanding (the crawl is idle, so nothing more will be answered).

        A site's sitemaps list every record; reading them all at once would queue every
        record request in memory before the first record is stored.
        """
        if not self.sitemaps_waiting:
            return None
        if not force and self.sitemaps_ahead is not None and len(self._open) > self.sitemaps_ahead:
            return None
        sitemap = self.sitemaps_waiting.popleft()
        self._open.add(canonical_url(sitemap))
        return sitemap

    def sitemap_failed(self, sitemap: str) -> None:
        """A sitemap handed out that will not be read: not fetched (it is read again next
        run, see ``unreadable``), or dropped as a duplicate. Nothing of it to wait for."""
        self._open.discard(canonical_url(sitemap))

    # --- how the pages were answered -----------------------------------------------------

    def answered(self, from_sitemap: str | None) -> bool:
        """A record page of this sitemap got its answer. True: that was its last page, the
        next sitemap may be read (``next_sitemap``)."""
        if from_sitemap is not None and from_sitemap in self._pending:
            self._pending[from_sitemap] -= 1
            return self._finished(from_sitemap)
        # else: not from a sitemap read in this process (JOBDIR resumes its queue)
        return False

    def failed(self, from_sitemap: str | None) -> bool:
        """A record page of this sitemap will get no answer: the sitemap is read again.
        True: that was its last page (as ``answered``)."""
        if from_sitemap is not None and from_sitemap in self._pending:
            self._pending[from_sitemap] -= 1
            self._to_reread.add(from_sitemap)
            return self._finished(from_sitemap)
        return False

    def _finished(self, sitemap: str) -> bool:
        key = canonical_url(sitemap)  # as fetched: Scrapy may have escaped it
        if self._pending[sitemap] > 0 or key not in self._open:
            return False
        self._open.discard(key)
        return True

    def still_gone(self, from_sitemap: str | None, was_record: bool) -> None:
        """A stored record's page answered "gone" (404, 410, a soft 404): its sitemap is read
        again next run, so the page is asked again and its withdrawal streak can grow."""
        if from_sitemap is not None and was_record:
            self._to_reread.add(from_sitemap)

    def not_stored(self, from_sitemap: str | None) -> None:
        """A page of this sitemap was answered but its record was lost (a pipeline raised):
        read the sitemap again next run."""
        if from_sitemap is not None:
            self._to_reread.add(from_sitemap)

    def unreadable(self, sitemap: str) -> None:
        """A sitemap that could not be read (or only in part): read it again next run."""
        self._to_reread.add(sitemap)

    # --- what the run saves at close -----------------------------------------------------

    def sitemaps_read(self) -> list[str]:
        """Canonical URLs of the sitemaps read in this run."""
        return [canonical_url(url) for url in self._pending]

    def sitemaps_to_forget(self) -> list[str]:
        """Sitemaps a page of which failed or is gone, or that were damaged: read them next run."""
        return [canonical_url(url) for url in self._to_reread]

    def completed_sitemaps(self) -> list[CompletedSitemap]:
        """Sitemaps read in this run whose every page was answered and whose index gave a
        lastmod: the next run may skip them until that lastmod changes."""
        return [
            CompletedSitemap(canonical_url(url), self._lastmods[url], self._entries[url])
            for url, pending in self._pending.items()
            if pending == 0 and url not in self._to_reread and url in self._lastmods
        ]

    # --- helpers -------------------------------------------------------------------------

    def _request(
        self,
        url: str,
        known: KnownPage | None,
        *,
        lastmod: datetime | None = None,
        sitemap_key: str | None = None,
        priority: int = 0,
        from_sitemap: str | None = None,
        was_record: bool = False,
    ) -> PageRequest:
        self.requested.add(canonical_url(url))
        return PageRequest(
            url=url,
            headers=self.policy.headers(known),
            priority=priority,
            sitemap_lastmod=lastmod,
            sitemap_url=sitemap_key,
            from_sitemap=from_sitemap,
            was_record=was_record,
        )

    def _not_requested_yet(self, urls: list[str]) -> list[tuple[str, str]]:
        """(URL, canonical URL) of those on this run's hosts and not requested by it yet."""
        pairs = [(url, canonical_url(url)) for url in urls if self.scope.refusal(url) is None]
        return [(url, key) for url, key in pairs if key not in self.requested]

    def _known(self, canonical_urls: list[str]) -> dict[str, KnownPage]:
        if not canonical_urls:
            return {}
        with self.engine.connect() as connection:
            return known_pages(connection, canonical_urls)

    def _counted(self, requests: list[PageRequest]) -> list[PageRequest]:
        self._count("harvester/record_requests", len(requests))
        return requests

    def _count(self, key: str, count: int = 1) -> None:
        if count and self.stats is not None:
            self.stats.inc_value(key, count)
