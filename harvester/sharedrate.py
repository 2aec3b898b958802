"""Politeness across workers: one request rate per host for the whole fleet (issue 13).

Enabled only when a Redis server is configured (``harvester.config.redis_url``:
``HARVESTER_REDIS_URL`` as a setting or in the environment); a run on one machine is left
exactly as harvester/politeness.py makes it.

The cap
    A single machine sends at most one request per ``DOWNLOAD_DELAY`` seconds to a host
    (0.5 s: 2 requests/s), slower when robots.txt asks for a ``Crawl-delay`` or AutoThrottle
    has raised the host's delay. The fleet gets the same: every request, from any worker,
    takes a turn from one schedule per host kept in Redis, and the turn holds the host for
    ``max(DOWNLOAD_DELAY, Crawl-delay, this worker's delay for the host)`` seconds before
    anyone's next request. So the whole fleet sends at most one request per
    ``max(DOWNLOAD_DELAY, Crawl-delay)`` seconds to a host, and no faster than the slowest
    delay AutoThrottle has set on the worker that sent the last one.
    ``CONCURRENT_REQUESTS_PER_DOMAIN`` stays per worker: a host that answers slower than the
    delay can see up to that many requests per worker at once (the rate still holds).
Retry-After, back-off, Crawl-delay
    ``HostBackoff`` (harvester/politeness.py) publishes the pauses it puts on a host (429/503:
    ``Retry-After`` or the exponential back-off) as a wall-clock time the host is paused until,
    and the robots.txt ``Crawl-delay`` it reads; every worker's middleware waits them out.
Failing closed
    When Redis does not answer, no request leaves: the middleware tries again with a back-off
    (0.25 s, doubling to 5 s), logging the outage once and its end once. A long outage ends
    the crawl through the run's no-progress watchdog (``HARVESTER_NO_PROGRESS_TIMEOUT``,
    finish reason ``no_progress``, exit status 3); requests waiting when the crawl closes are
    dropped, never sent unlimited.
Keys (not per run: the fleet against one host, whatever runs it belongs to)
    ``ncjrs:host:<host>:<port>:next_turn`` (the schedule: milliseconds by Redis's clock),
    ``...:paused_until`` (epoch seconds, expires with the pause), ``...:crawl_delay``
    (seconds, for a day after a worker last read robots.txt).

Turns are handed out in the order they are asked for: a Lua script reserves the host's next
free turn atomically (``max(now, next free turn)``, then moves the next free turn on by this
request's turn) and answers how long to wait for it, by the Redis server's clock, so workers'
clocks need not agree. The schedule is that one timestamp, so a host's interval can change (a
Crawl-delay arrives, AutoThrottle slows down) without a new key: the next turn simply holds the
host longer. A limiter that retries when a turn comes free (pyrate-limiter's GCRA, used
before) hands it to whichever worker asks first: in the tests one of three workers got no
turn for 2-5 s while the other two took them all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from scrapy import Request, Spider, signals
from scrapy.core.downloader import Slot
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.settings import BaseSettings
from scrapy.utils.httpobj import urlparse_cached

from harvester.config import redis_url, shown_redis_url
from harvester.entrypoints import CRAWL_CLOSING

logger = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "ncjrs:host:"
CRAWL_DELAY_TTL = 86400  # seconds; each worker reads robots.txt again when it starts
OUTAGE_RETRY_FIRST = 0.25
OUTAGE_RETRY_MAX = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Retry-After pauses can last minutes: waits are cut into steps so that a closing crawl
# stops waiting.
_WAIT_STEP = 1.0


def host_key(request: Request) -> str:
    """``ncjrs:host:<host>:<port>:``, the prefix of a host's keys (the port always given)."""
    parts = urlparse_cached(request)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{KEY_PREFIX}{parts.hostname or ''}:{port}:"


def turn_seconds(download_delay: float, crawl_delay: float | None, local_delay: float) -> float:
    """How long one request holds a host for the whole fleet: the single-machine delay, the
    robots.txt Crawl-delay, or this worker's own delay for the host (AutoThrottle), the
    largest of them."""
    return max(download_delay, crawl_delay or 0.0, local_delay)


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast: an outage is handled (and retried) by the caller."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), retries=0),
    )


# Raise a host's pause, never lower it: the longest pause any worker was asked for wins.
_PAUSE_SCRIPT = """
local paused_until = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused_until > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""

# Reserve the host's next free turn, ARGV[1] ms long: answers the ms to wait for it. The key
# outlives the turns it holds by a minute, then the host's schedule starts afresh.
_TURN_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local next_free = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local turn = math.max(now, next_free)
local after = turn + tonumber(ARGV[1])
redis.call('SET', KEYS[1], after, 'PX', after - now + 60000)
return turn - now
"""


class SharedHostState:
    """The pauses and Crawl-delays a worker publishes for the fleet (HostBackoff uses it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = connect(url)
        self._raise_pause = self.redis.register_script(_PAUSE_SCRIPT)
        self._tasks: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> SharedHostState | None:
        url = redis_url(settings)
        return cls(url) if url else None

    def publish_pause(self, request: Request, seconds: float) -> None:
        """Every worker holds requests to the request's host for ``seconds`` from now."""
        until = time.time() + seconds
        self._in_background(self._publish_pause(host_key(request), until))

    def publish_crawl_delay(self, request: Request, seconds: float) -> None:
        key = host_key(request) + "crawl_delay"
        self._in_background(
            self._publish(key, lambda: self.redis.set(key, seconds, ex=CRAWL_DELAY_TTL))
        )

    async def _publish_pause(self, prefix: str, until: float) -> None:
        key = prefix + "paused_until"
        # Kept a second past the pause: a reader that finds it gone knows the pause is over.
        expire_ms = max(1, math.ceil((until - time.time() + 1) * 1000))

        async def publish() -> Any:
            return await self._raise_pause(keys=[key], args=[repr(until), expire_ms])

        await self._publish(key, publish, until=until)

    async def _publish(self, key: str, publish: Any, until: float | None = None) -> None:
        """Publish, trying again while Redis is down (a pause only until it is over): the
        local pause holds meanwhile, and the other workers send nothing while they cannot
        reach Redis either."""
        wait = OUTAGE_RETRY_FIRST
        while True:
            try:
                await publish()
                return
            except RedisError as exc:
                if until is not None and time.time() >= until:
                    return
                logger.warning("Could not publish %s to Redis (%s): trying again", key, exc)
            await asyncio.sleep(wait)
            wait = min(wait * 2, OUTAGE_RETRY_MAX)

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.redis.aclose()


class SharedRateMiddleware:
    """Waits, before each request leaves, for the host's turn in the fleet's schedule."""

    def __init__(self, crawler: Crawler, url: str) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.url = url
        self.download_delay = settings.getfloat("DOWNLOAD_DELAY")
        self.max_crawl_delay = settings.getfloat("HARVESTER_MAX_CRAWL_DELAY")
        self.redis = connect(url)
        self._reserve_turn = self.redis.register_script(_TURN_SCRIPT)
        self._locks: dict[str, asyncio.Lock] = {}
        self._outage_since: float | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedRateMiddleware:
        url = redis_url(crawler.settings)
        if not url:
            # A plain run: nothing to share. A message would make Scrapy log a warning on
            # every crawl that uses no Redis, which is nearly all of them.
            logger.debug("No Redis server: politeness stays per machine")
            raise NotConfigured
        middleware = cls(crawler, url)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        return middleware

    async def spider_closed(self, spider: Spider) -> None:
        await self.redis.aclose()

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        prefix = host_key(request)
        lock = self._locks.setdefault(prefix, asyncio.Lock())
        # One request of this worker at a time asks for the host's turn, and only once the
        # local slot would send it at once: a turn then means the request leaves now.
        async with lock:
            while True:
                paused_until, crawl_delay = await self._read(prefix)
                if paused_until > time.time():
                    await self._sleep(paused_until - time.time(), request)
                    continue
                if turn_seconds(self.download_delay, crawl_delay, self._local_delay(request)) <= 0:
                    return  # no delay anywhere (a local site, politeness off): nothing to share
                slot = await self._local_slot_ready(request)
                turn = turn_seconds(self.download_delay, crawl_delay, slot.delay if slot else 0)
                # A closing crawl drops its waiting requests: none may reserve a turn first,
                # which every other worker would then wait out unused.
                self._raise_if_closing(request)
                await self._take_turn(prefix, turn, request)
                paused_until, _ = await self._read(prefix)
                if paused_until <= time.time():
                    return
                # A pause came in while this request waited for its turn: wait it out and
                # take a new turn, so that the end of a pause is no burst.

    async def _read(self, prefix: str) -> tuple[float, float | None]:
        """The host's published pause (epoch seconds, 0 if none) and Crawl-delay."""
        values = await self._retrying(
            lambda: self.redis.mget(prefix + "paused_until", prefix + "crawl_delay")
        )
        paused, delay = values
        crawl_delay = min(float(delay), self.max_crawl_delay) if delay is not None else None
        return (float(paused) if paused is not None else 0.0), crawl_delay

    async def _take_turn(self, prefix: str, seconds: float, request: Request) -> None:
        turn_ms = max(1, math.ceil(seconds * 1000))
        wait_ms = await self._retrying(
            lambda: self._reserve_turn(keys=[prefix + "next_turn"], args=[turn_ms])
        )
        due = time.monotonic() + int(wait_ms) / 1000
        while (left := due - time.monotonic()) > 0:
            await self._sleep(left, request)

    def _local_delay(self, request: Request) -> float:
        """This worker's delay for the request's host now (AutoThrottle's, or the setting)."""
        downloader = self.crawler.engine.downloader
        slot = downloader.slots.get(downloader.get_slot_key(request))
        return slot.delay if slot is not None else self.download_delay

    async def _local_slot_ready(self, request: Request) -> Slot | None:
        """This worker's downloader slot for the request, once it would send the request at
        once (a transfer free, its delay or local pause over); None before its first request.

        Its random jitter goes: a delay drawn after the turn was taken would move the
        request off the fleet's schedule."""
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        while True:
            slot = downloader.slots.get(key)
            if slot is None:
                return None
            slot.jitter = 0
            wait = slot.lastseen + slot.delay - time.monotonic()
            if wait <= 0 and slot.free_transfer_slots() > 0 and not slot.queue:
                return slot
            await self._sleep(min(max(wait, 0.02), _WAIT_STEP), request)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until Redis answers: failing closed, the request waits meanwhile."""
        wait = OUTAGE_RETRY_FIRST
        while True:
            try:
                result = await call()
            except RedisError as exc:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self.crawler.stats.inc_value("harvester/shared_rate_outages")
                    logger.error(
                        "Redis at %s does not answer (%s): no request is sent until it does "
                        "(politeness across workers fails closed)",
                        shown_redis_url(self.url),
                        exc,
                    )
                self._raise_if_closing(None)
                await asyncio.sleep(wait)
                wait = min(wait * 2, OUTAGE_RETRY_MAX)
                continue
            if self._outage_since is not None:
                logger.warning(
                    "Redis at %s answers again after %.1f s: requests go out again",
                    shown_redis_url(self.url),
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            return result

    async def _sleep(self, seconds: float, request: Request) -> None:
        await asyncio.sleep(min(seconds, _WAIT_STEP))
        self._raise_if_closing(request)

    def _raise_if_closing(self, request: Request | None) -> None:
        engine = self.crawler.engine
        slot = getattr(engine, "_slot", None)
        if slot is not None and slot.closing is not None:
            raise IgnoreRequest(f"{CRAWL_CLOSING}: a request waiting for its turn is dropped")
