"""Politeness Scrapy does not give out of the box (enabled in harvester/settings.py).

``HostBackoff`` (an extension: it acts on signals, not on requests)
    A 429 or 503 pauses every request to that host: for as long as its ``Retry-After`` says
    (seconds or an HTTP date, capped by ``HARVESTER_RETRY_AFTER_MAX``), or, without the header,
    for an exponentially growing, jittered time that starts again from
    ``HARVESTER_BACKOFF_BASE`` once the host has been quiet for
    ``HARVESTER_BACKOFF_RESET``. Scrapy's RetryMiddleware re-sends the request; the pause
    makes it, and everything else queued for the host, wait. The robots.txt ``Crawl-delay``
    (capped by ``HARVESTER_MAX_CRAWL_DELAY``) becomes the host's minimum delay, which
    AutoThrottle may raise but never lower. With a Redis server (a distributed run), pauses
    and Crawl-delays are also published for every worker (harvester/sharedrate.py).
``RobotsTxtMiddleware``
    Scrapy's, with RFC 9309's failure rules: a robots.txt that answers 5xx or cannot be
    fetched means "disallow everything" for that host (fetched again after
    ``HARVESTER_ROBOTS_RETRY`` seconds), and a 4xx means "no rules".
``RequestBudgetMiddleware``
    Stops the crawl, as finish reason ``max_requests``, once it has sent
    ``-a max_requests=N`` (or ``HARVESTER_MAX_REQUESTS``) requests.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import monotonic
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxt
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.robotstxt import RobotParser
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler

from harvester.sharedrate import SharedHostState

logger = logging.getLogger(__name__)

BUSY_STATUSES = (429, 503)
_DISALLOW_ALL = b"User-agent: *\nDisallow: /\n"


def retry_after_seconds(value: str | bytes | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: ``120`` or ``Fri, 31 Dec 1999 23:59:59 GMT``."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(strikes: int, base: float, cap: float, rng: random.Random) -> float:
    """The pause after ``strikes`` header-less 429/503s in a row: base, 2x, 4x ... jittered."""
    exact: float = min(cap, base * 2 ** max(0, strikes - 1))
    return min(cap, exact * rng.uniform(0.5, 1.5))


class HostBackoff:
    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.retry_after_max = settings.getfloat("HARVESTER_RETRY_AFTER_MAX")
        self.base = settings.getfloat("HARVESTER_BACKOFF_BASE")
        self.cap = settings.getfloat("HARVESTER_BACKOFF_MAX")
        self.quiet = settings.getfloat("HARVESTER_BACKOFF_RESET")
        self.max_crawl_delay = settings.getfloat("HARVESTER_MAX_CRAWL_DELAY")
        self.user_agent = settings.get("ROBOTSTXT_USER_AGENT") or settings.get("USER_AGENT")
        self.rng = random.Random()
        self.strikes: dict[str, int] = {}  # slot -> header-less busy answers in a row
        self.last_busy: dict[str, float] = {}
        self.floors: dict[str, float] = {}  # slot -> robots.txt Crawl-delay
        self.shared = SharedHostState.from_settings(settings)  # None: one machine

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HostBackoff:
        extension = cls(crawler)
        crawler.signals.connect(extension.robots_parsed, signal=signals.robots_parsed)
        # The downloader sends this before it hands the slot its next request, and after
        # AutoThrottle (an extension built, so connected, before this one) has set the slot's
        # delay: the one moment a pause or a floor takes effect before anything else goes out.
        crawler.signals.connect(extension.response_downloaded, signal=signals.response_downloaded)
        if extension.shared is not None:
            crawler.signals.connect(extension.shared.close, signal=signals.spider_closed)
        return extension

    def robots_parsed(self, robotparser: RobotParser, request: Request) -> None:
        delay = robotparser.crawl_delay(self.user_agent)
        if not delay:
            return
        host = urlparse_cached(request).hostname or ""
        floor = min(float(delay), self.max_crawl_delay)
        self.floors[host] = floor
        if self.shared is not None:
            self.shared.publish_crawl_delay(request, floor)
        downloader = self._downloader()
        if downloader is None:
            return
        # Slots created from now on start at the floor; an existing one is raised now.
        downloader.per_slot_settings.setdefault(host, {}).update({"delay": floor, "jitter": 0})
        slot = downloader.slots.get(host)
        if slot is not None:
            slot.delay, slot.jitter = max(slot.delay, floor), 0
        logger.info(
            "robots.txt of %s asks for a Crawl-delay of %s s: using %s s", host, delay, floor
        )

    def response_downloaded(self, response: Response, request: Request, spider: Spider) -> None:
        key = request.meta.get("download_slot")
        if key is None:
            return
        downloader = self._downloader()
        slot = downloader.slots.get(key) if downloader is not None else None
        if slot is not None and key in self.floors and slot.delay < self.floors[key]:
            slot.delay = self.floors[key]  # AutoThrottle lowered it below the Crawl-delay
        if response.status not in BUSY_STATUSES:
            return
        now = monotonic()
        if now - self.last_busy.get(key, float("-inf")) > self.quiet:
            self.strikes[key] = 0
        self.last_busy[key] = now
        asked = retry_after_seconds(response.headers.get(b"Retry-After"))
        if asked is not None:
            pause = min(asked, self.retry_after_max)
            why = f"Retry-After: {(response.headers.get(b'Retry-After') or b'').decode('latin-1')}"
        else:
            self.strikes[key] = self.strikes.get(key, 0) + 1
            pause = backoff_seconds(self.strikes[key], self.base, self.cap, self.rng)
            why = f"no Retry-After, {self.strikes[key]} in a row"
        if slot is not None:
            self._pause(slot, pause)
        if self.shared is not None:
            self.shared.publish_pause(request, pause)
        self.crawler.stats.inc_value("harvester/backoff_pauses")
        logger.warning(
            "%s answered %d (%s): pausing requests to it for %.1f s",
            key,
            response.status,
            why,
            pause,
        )

    @staticmethod
    def _pause(slot: Any, seconds: float) -> None:
        """Hold the slot's queue: its next request waits until ``seconds`` from now.

        The downloader sends a slot's next request once ``delay`` has passed since
        ``lastseen``; moving ``lastseen`` into the future pauses the slot, including retries
        of the answer that asked for it. A zero delay would skip that check, hence the floor.
        """
        slot.delay = max(slot.delay, 0.001)
        slot.lastseen = max(slot.lastseen, monotonic() + seconds)

    def _downloader(self) -> Any:
        return self.crawler.engine.downloader


class _WithoutTraceback(logging.Filter):
    """Scrapy's robots.txt middleware logs a robots.txt it could not download with a traceback.
    The failure is the site's (refused, no such host), not a bug, and ``_unavailable`` says
    what it means for the crawl: the line is kept, the traceback dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


_SCRAPY_ROBOTS_LOG = logging.getLogger(ScrapyRobotsTxt.__module__)
_SCRAPY_ROBOTS_LOG.addFilter(_WithoutTraceback())


class RobotsTxtMiddleware(ScrapyRobotsTxt):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.retry_seconds = crawler.settings.getfloat("HARVESTER_ROBOTS_RETRY")
        self._unavailable_until: dict[str, float] = {}

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        netloc = urlparse_cached(request).netloc
        until = self._unavailable_until.get(netloc)
        if until is not None and monotonic() >= until:
            # Time to ask again: forget the disallow-everything parser.
            del self._unavailable_until[netloc]
            self._parsers.pop(netloc, None)
        await super().process_request(request)

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if response.status >= 500:
            self._unavailable(netloc, f"answered {response.status}")
            response = response.replace(body=_DISALLOW_ALL)
        elif 400 <= response.status < 500:
            response = response.replace(body=b"")  # RFC 9309 2.3.1.3: no rules
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if isinstance(exc, IgnoreRequest):  # e.g. the request budget: nothing was learned
            super()._robots_error(exc, netloc)
            return
        self._unavailable(netloc, f"could not be fetched ({exc})")
        self._stats.inc_value(f"robotstxt/exception_count/{type(exc)}")
        deferred = self._parsers[netloc]
        parser = build_from_crawler(self._parserimpl, self.crawler, _DISALLOW_ALL)
        self._parsers[netloc] = parser
        # Scrapy types the entry as parser | Deferred | None; while robots.txt is being fetched
        # (the only time this runs) it is the Deferred the waiting requests hold.
        deferred.callback(parser)  # type: ignore[union-attr]

    def _unavailable(self, netloc: str, why: str) -> None:
        self._unavailable_until[netloc] = monotonic() + self.retry_seconds
        self._stats.inc_value("harvester/robots_unavailable")
        logger.error(
            "robots.txt of %s %s: nothing is fetched from %s (RFC 9309: complete disallow) "
            "until it is read again in %.0f s, or by the next run",
            netloc,
            why,
            netloc,
            self.retry_seconds,
        )


class RequestBudgetMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.setting = crawler.settings.getint("HARVESTER_MAX_REQUESTS") or None
        self.sent = 0
        self.closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RequestBudgetMiddleware:
        if crawler.settings.getbool("HARVESTER_REQUEST_BUDGET_DISABLED"):
            raise NotConfigured
        return cls(crawler)

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        budget = getattr(self.crawler.spider, "max_requests", None) or self.setting
        if budget is None:
            return
        if self.sent >= budget:
            if not self.closing:
                self.closing = True
                logger.info("Request budget of %d spent: stopping the crawl", budget)
                engine = self.crawler.engine
                assert engine is not None
                deferred_from_coro(engine.close_spider_async(reason="max_requests"))
            raise IgnoreRequest(f"request budget of {budget} spent")
        self.sent += 1
