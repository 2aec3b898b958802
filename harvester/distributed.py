"""Distributed runs: one crawl shared by many worker processes, on any number of machines.

With HARVESTER_REDIS_URL (harvester.config.redis_url) and a PostgreSQL DATABASE_URL, every
`scrapy crawl ncjrs ...` (or `harvester crawl ...`) started with the same arguments joins one
run, a ``distributed_runs`` row; each worker keeps its own ``crawl_runs`` row, which names it.

- Requests are shared through Redis: scrapy-redis's priority queue and dupefilter, under the
  run's own keys (``ncjrs:run:<token>:...``, the run's random token: runs of other databases
  can share the Redis server). Workers never flush them when they close (the trap
  of scrapy-redis's SCHEDULER_PERSIST=False: one worker that stops would wipe everyone's
  queue); the coordinator deletes them when the run ends.
- One worker is the coordinator, elected by a PostgreSQL advisory lock that dies with its
  holder's connection; the others try to take it at every heartbeat, so one takes over when
  the coordinator dies. Only the coordinator's spider starts (``Fleet.coordinating``): it
  navigates (robots.txt, sitemaps, listings stay in its own queue), its frontier decides which
  record pages to request exactly as a single-machine run's does, and each record request is
  noted in the run's ``issued`` hash before it enters the shared dupefilter; its buffer tops
  up the shared queue to at most HARVESTER_REDIS_BUFFER requests.
- Workers take record requests from the shared queue, judge and store what they fetch, and
  write a heartbeat saying whether they have anything in hand (``crawl_runs.idle_since``).
  Retries and redirects stay with the worker that fetched the page (its own queue).
- Reconcile: once the shared queue is empty, the coordinator's navigation done and every live
  worker (fresh heartbeat) reported idle since, the coordinator looks the run's issued URLs up
  in ``record_urls``. One that no worker of the run answered or recorded a failure for
  (``visited_run_id``) was lost with a worker killed while it held it: it is requested again,
  counted in ``distributed_runs.repushed`` (the duplicate work a kill costs). After
  MAX_REPUSHES requests without an answer, it is recorded as a failed fetch (a gap the next
  run retries), so a run always ends. When nothing is missing, the run is finished and every
  worker closes.

SQLite is refused: its file cannot be shared between machines (a network file system breaks
its locking). Workers' clocks should agree (NTP): the coordinator compares heartbeats with
the moment it saw the queue drain, and skew costs re-fetches, never records.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from scrapy import Request, Spider
from scrapy.core.scheduler import BaseScheduler
from scrapy.core.scheduler import Scheduler as LocalScheduler
from scrapy.crawler import Crawler
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler as RedisScheduler
from sqlalchemy import Connection, Engine, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from twisted.internet.defer import Deferred

from harvester import models
from harvester import settings as defaults
from harvester.config import redis_url, shown_redis_url
from harvester.conflicts import Sighting, Verdict, judged, preferred
from harvester.db import chunks, display_url
from harvester.errors import DistributedRunRefused
from harvester.items import PageVisit, Record
from harvester.store import now_utc
from harvester.urls import canonical_url

logger = logging.getLogger(__name__)

DISTRIBUTED_RUNS = models.DistributedRun.__table__
CRAWL_RUNS = models.CrawlRun.__table__
RECORD_URLS = models.RecordUrl.__table__

# Meta keys of record requests: the spider marks record pages; the coordinator marks the
# ones it requests again (they pass the dupefilter that saw them the first time).
RECORD_PAGE = "harvester_record_page"
REPUSHED = "harvester_repushed"
# How often the coordinator moves requests from its buffer to the shared queue (seconds).
TOP_UP_EVERY = 0.1
# Requests a worker takes from the shared queue at once: fewer round trips, and few enough
# that others still find work (and that a kill costs little).
TAKE_AT_ONCE = 4
# Requests of a URL no worker ever answered before it is given up as a failed fetch.
MAX_REPUSHES = 3

# How a distributed run ends when Redis lost its keys; its workers stop with this reason.
QUEUE_LOST = "queue_lost"
# How a run ends that no worker beat for HARVESTER_REDIS_RESUME_WITHIN.
ABANDONED = "abandoned"
# Every session's server-side TCP keepalive in a distributed run (PostgreSQL settings any user
# may set): first probe after 10 s idle, then every 5 s, dead after 3 unanswered: about 25 s.
SESSION_KEEPALIVES = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}

# Advisory lock keys (any 64-bit numbers that no other lock of the database uses).
_COORDINATOR_LOCK_KEY = 0x6E636A72735F636F  # "ncjrs_co"
_JOIN_LOCK_KEY = 0x6E636A72735F6A6E  # "ncjrs_jn"
# The two-number advisory locks (a key space of their own) that order the writes of one
# NCJ number's pages by the run's workers: (this, NCJ number).
_RECORD_LOCK_CLASS = 0x6E636A


def is_distributed(crawler: Crawler) -> bool:
    return redis_url(crawler.settings) is not None


@dataclass(frozen=True)
class RunKeys:
    """The Redis keys of one distributed run."""

    requests: str  # scrapy-redis priority queue (sorted set of serialized requests)
    dupefilter: str  # scrapy-redis fingerprints
    issued: str  # hash: URL -> what is needed to request it again (PageRequest fields)
    marker: str  # set when the run starts: gone means Redis lost the run's keys
    kept: str  # hash: NCJ number -> the page of it the run keeps (SharedSightings)

    @classmethod
    def of(cls, token: str) -> RunKeys:
        prefix = f"ncjrs:run:{token}:"
        names = ("requests", "dupefilter", "issued", "run", "kept")
        return cls(*(f"{prefix}{name}" for name in names))

    def all(self) -> list[str]:
        return [self.requests, self.dupefilter, self.issued, self.marker, self.kept]


@dataclass(frozen=True)
class Snapshot:
    """What the reactor thread knows at a heartbeat, for the heartbeat's thread."""

    idle: bool
    navigation_done: bool  # coordinator: its start() ran out and its own queue is empty
    buffered: int  # coordinator: record requests in its buffer, not in Redis yet


@dataclass(frozen=True)
class IssuedPage:
    """A record request as the coordinator issued it: enough to issue it again."""

    url: str
    sitemap_lastmod: str | None = None  # ISO 8601
    sitemap_url: str | None = None
    tries: int = 1

    def encoded(self) -> str:
        return json.dumps(
            {"l": self.sitemap_lastmod, "s": self.sitemap_url, "t": self.tries},
            separators=(",", ":"),
        )

    @classmethod
    def decoded(cls, url: str, value: str | bytes) -> IssuedPage:
        fields = json.loads(value)
        return cls(url, fields.get("l"), fields.get("s"), int(fields.get("t", 1)))

    @classmethod
    def of(cls, request: Request) -> IssuedPage:
        lastmod = request.meta.get("sitemap_lastmod")
        return cls(
            request.url,
            lastmod.isoformat() if isinstance(lastmod, datetime) else lastmod,
            request.meta.get("sitemap_url"),
            int(request.meta.get(REPUSHED, 0)) + 1,
        )


class Fleet:
    """This process's part in a distributed run: joining it, the worker heartbeat, and, while
    this process holds the coordinator lock, coordinating it. Owned by the crawl run
    (harvester.crawl_session.CrawlRun); the heartbeat runs off the reactor thread."""

    def __init__(
        self,
        engine: Engine,
        url: str,
        *,
        heartbeat_interval: float,
        resume_within: float = defaults.HARVESTER_REDIS_RESUME_WITHIN,
    ) -> None:
        if make_url(engine.url).get_backend_name() != "postgresql":
            raise DistributedRunRefused(
                f"a distributed run (HARVESTER_REDIS_URL) needs a PostgreSQL DATABASE_URL, not "
                f"{display_url(engine.url)}: workers on several machines cannot share a SQLite "
                "file safely (a network file system breaks its locking)"
            )
        self.engine = engine
        # A host that crashed (power, kernel panic) never closes its sessions: the server only
        # ends one when its TCP keepalive probes go unanswered, after two hours by the
        # operating system's default, and until then the session keeps its locks (the
        # coordinator's, a writer's). Probes every few seconds free them in half a minute.
        event.listen(engine, "connect", _probe_keepalive)
        engine.dispose()  # the sessions opened before (schema checks) are opened again
        self.redis_url = url
        try:
            self.redis: redis.Redis = redis.Redis.from_url(url, socket_timeout=10)
        except ValueError as error:  # not a redis://, rediss:// or unix:// URL
            raise DistributedRunRefused(
                f"HARVESTER_REDIS_URL is not a Redis URL ({shown_redis_url(url)}): {error}"
            ) from None
        try:
            self.redis.ping()
        except redis.RedisError as error:
            raise DistributedRunRefused(
                f"the Redis server of the distributed run ({shown_redis_url(url)}) cannot be "
                f"reached: {error}"
            ) from None
        self.stale_after = timedelta(seconds=3 * heartbeat_interval + 5)
        self.resume_within = timedelta(seconds=resume_within)
        self.run_id: int | None = None  # the distributed run
        self.keys: RunKeys | None = None
        self.sightings: SharedSightings | None = None  # once joined
        self.worker_run_id: int | None = None  # this process's crawl_runs row
        self.coordinator = False
        self._election = threading.Lock()
        self.finished = False
        self._coordinator_connection: Connection | None = None
        self._start_exhausted = False
        self._drained_at: datetime | None = None
        self._idle_since: datetime | None = None
        self.repush: Callable[[list[IssuedPage]], None] | None = None  # set by the spider
        # Held by a heartbeat (in its thread) and by close: close waits for a beat under way
        # instead of closing the connections it uses; no beat runs after close.
        self._in_use = threading.Lock()
        self._closed = False
        self.give_up: Callable[[list[PageVisit]], None] | None = None  # set by the crawl run

    # --- joining -----------------------------------------------------------------------

    def join(self, spider: str, arguments: dict[str, Any]) -> RunKeys:
        """The run under way with these arguments, or a new one; refuses one with others."""
        if self.keys is not None:
            return self.keys
        try:
            return self._join(spider, arguments)
        except redis.RedisError as error:
            raise DistributedRunRefused(
                f"the Redis server of the distributed run ({shown_redis_url(self.redis_url)}) "
                f"failed while this worker joined the run: {error}"
            ) from None

    def _join(self, spider: str, arguments: dict[str, Any]) -> RunKeys:
        with self.engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(_JOIN_LOCK_KEY)))
            running = connection.execute(
                select(DISTRIBUTED_RUNS)
                .where(DISTRIBUTED_RUNS.c.finished_at.is_(None))
                .order_by(DISTRIBUTED_RUNS.c.id.desc())
                .limit(1)
            ).first()
            if running is not None and (
                running.spider != spider or dict(running.arguments or {}) != arguments
            ):
                raise DistributedRunRefused(
                    f"distributed run {running.id} is under way with other arguments "
                    f"({running.spider} {_arguments(running.arguments)}; this worker: {spider} "
                    f"{_arguments(arguments)}): start workers with the same ones, or wait "
                    "for it to finish"
                )
            if running is not None and (quiet := self._quiet_for(connection, running)) is not None:
                # Every worker stopped long ago: its dupefilter would hide every page it issued
                # (changed since, perhaps), and its queue is stale. A new run starts from the
                # database; what the old one stored stays stored.
                _end(connection, running.id, ABANDONED)
                self.redis.delete(*RunKeys.of(running.token).all())
                logger.warning(
                    "Distributed run %d had no worker for %s (more than "
                    "HARVESTER_REDIS_RESUME_WITHIN, %s): it is ended as abandoned, and a new "
                    "run starts",
                    running.id,
                    timedelta(seconds=int(quiet.total_seconds())),
                    self.resume_within,
                )
                running = None
            if running is not None and not self.redis.exists(RunKeys.of(running.token).marker):
                # Redis lost the run's keys (restarted without persistence, flushed, evicted):
                # its queue and the record of what it issued are gone. A new run derives them
                # again from the database.
                _end(connection, running.id, QUEUE_LOST)
                logger.error(
                    "Distributed run %d lost its queue in Redis (restarted without "
                    "persistence, flushed or evicted?): it is ended, and a new run starts",
                    running.id,
                )
                running = None
            if running is None:
                token = uuid.uuid4().hex
                self.run_id = connection.execute(
                    insert(DISTRIBUTED_RUNS)
                    .values(spider=spider, arguments=arguments, started_at=now_utc(), token=token)
                    .returning(DISTRIBUTED_RUNS.c.id)
                ).scalar_one()
                self.redis.set(RunKeys.of(token).marker, self.run_id)
                logger.info("Distributed run %d started", self.run_id)
            else:
                self.run_id, token = running.id, running.token
                logger.info("Joined distributed run %d", self.run_id)
        self.keys = RunKeys.of(token)
        self.sightings = SharedSightings(self.redis, self.keys.kept)
        return self.keys

    def _quiet_for(self, connection: Connection, running: Any) -> timedelta | None:
        """How long the run had no sign of life (its start or a worker's heartbeat), when that
        is longer than ``resume_within``; None: it may be resumed."""
        last_beat = connection.scalar(
            select(func.max(CRAWL_RUNS.c.heartbeat_at)).where(
                CRAWL_RUNS.c.distributed_run_id == running.id
            )
        )
        last_sign = max(_aware(running.started_at), _aware(last_beat or running.started_at))
        quiet = now_utc() - last_sign
        return quiet if quiet > self.resume_within else None

    def attach(self, worker_run_id: int) -> None:
        """This process's crawl_runs row (started with the run's id in distributed_run_id)."""
        self.worker_run_id = worker_run_id

    async def coordinating(self) -> bool:
        """Wait until this process coordinates the run (True) or the run finished (False)."""
        from scrapy.utils.defer import maybe_deferred_to_future
        from twisted.internet import reactor, task

        if not self.finished and self.run_id is not None:
            # At once, not at the first heartbeat: the first worker of a run starts it.
            self._try_to_coordinate()
        while not self.coordinator and not self.finished:
            pause: Deferred[None] = task.deferLater(reactor, 0.5, lambda: None)
            await maybe_deferred_to_future(pause)
        return self.coordinator

    def start_exhausted(self) -> None:
        """The coordinator's spider has issued every start request."""
        self._start_exhausted = True

    @property
    def start_done(self) -> bool:
        return self._start_exhausted

    def issue(self, page: IssuedPage, fingerprint: str | None) -> bool:
        """Note a record request the run issues, then add its fingerprint (None: a request
        issued again, which passes) to the run's dupefilter; True if the run saw it already.

        Noted first, in one round trip: a worker killed in between leaves a URL the reconcile
        requests again, never one that nobody issues. A first issue keeps an earlier note of
        the same URL (and its count of tries); a request issued again counts one more try."""
        assert self.keys is not None
        steps = self.redis.pipeline(transaction=False)
        if page.tries > 1:
            steps.hset(self.keys.issued, page.url, page.encoded())
        else:
            steps.hsetnx(self.keys.issued, page.url, page.encoded())
        if fingerprint is not None:
            steps.sadd(self.keys.dupefilter, fingerprint)
        results = steps.execute()
        return fingerprint is not None and results[-1] == 0

    # --- the heartbeat (off the reactor thread) ----------------------------------------

    def beat(self, snapshot: Snapshot) -> tuple[str, list[IssuedPage]]:
        """Write this worker's heartbeat, try to become coordinator, and coordinate.

        Returns what the reactor thread must do: ("", []), ("repush", pages), ("give_up",
        pages), ("finished", []), (QUEUE_LOST, []), (ABANDONED, []) or ("coordinator_lost", []).
        """
        with self._in_use:
            if self._closed:
                return "", []
            return self._beat(snapshot)

    def _beat(self, snapshot: Snapshot) -> tuple[str, list[IssuedPage]]:
        now = now_utc()
        if snapshot.idle:
            self._idle_since = self._idle_since or now
        else:
            self._idle_since = None
        if self.worker_run_id is not None:
            with self.engine.begin() as connection:
                connection.execute(
                    update(CRAWL_RUNS)
                    .where(CRAWL_RUNS.c.id == self.worker_run_id)
                    .values(heartbeat_at=now, idle_since=self._idle_since)
                )
                ended = connection.execute(
                    select(DISTRIBUTED_RUNS.c.finished_at, DISTRIBUTED_RUNS.c.finish_reason).where(
                        DISTRIBUTED_RUNS.c.id == self.run_id
                    )
                ).one()
            if ended.finished_at is not None:
                self.finished = True
                # Finished, or ended without it: queue_lost, or abandoned (this worker's heartbeat
                # stalled for longer than HARVESTER_REDIS_RESUME_WITHIN).
                return (ended.finish_reason or QUEUE_LOST), []
        if self.run_id is None:
            return "", []
        if not self.coordinator:
            self._try_to_coordinate()
            return "", []
        if not self._still_coordinator():
            return "coordinator_lost", []
        return self._coordinate(snapshot, now)

    def _try_to_coordinate(self) -> None:
        # The spider's start and the heartbeat's thread may both try: one election at a time.
        with self._election:
            if not self.coordinator:
                self.coordinator = self._take_coordinator_lock()
                if self.coordinator:
                    logger.info("This worker coordinates distributed run %d", self.run_id)

    def _take_coordinator_lock(self) -> bool:
        connection = self.engine.connect()
        taken = bool(
            connection.execute(select(func.pg_try_advisory_lock(_COORDINATOR_LOCK_KEY))).scalar()
        )
        connection.commit()
        if taken:
            self._coordinator_connection = connection
        else:
            connection.close()
        return taken

    def _still_coordinator(self) -> bool:
        connection = self._coordinator_connection
        try:
            assert connection is not None
            connection.execute(select(1)).scalar()
            connection.commit()
            return True
        except (DBAPIError, AssertionError):
            logger.critical(
                "The coordinator lock's connection was lost: another worker may coordinate now"
            )
            return False

    def _coordinate(self, snapshot: Snapshot, now: datetime) -> tuple[str, list[IssuedPage]]:
        assert self.keys is not None
        assert self.run_id is not None
        if not self.redis.exists(self.keys.marker):
            with self.engine.begin() as connection:
                _end(connection, self.run_id, QUEUE_LOST)
            self.finished = True
            return QUEUE_LOST, []
        queued = self.redis.zcard(self.keys.requests)
        logger.debug("Coordinator: %s, %d queued", snapshot, queued)
        if not (snapshot.navigation_done and snapshot.buffered == 0 and queued == 0):
            self._drained_at = None
            return "", []
        if self._drained_at is None:
            self._drained_at = now  # every live worker must report idle after this moment
            return "", []
        workers = self._workers()
        cutoff = now - self.stale_after
        live = [
            worker
            for worker in workers
            if worker.finished_at is None and worker.heartbeat_at and worker.heartbeat_at > cutoff
        ]
        if any(
            worker.idle_since is None or worker.heartbeat_at <= self._drained_at for worker in live
        ):
            logger.debug("Coordinator: waiting for workers %s", live)
            return "", []
        lost = self._unanswered({worker.id for worker in workers})
        self._drained_at = None
        again = [page for page in lost if page.tries < MAX_REPUSHES]
        given_up = [page for page in lost if page.tries >= MAX_REPUSHES]
        if given_up:
            # Kept in the issued hash: the failure the reactor thread writes for each makes it
            # answered (visited_run_id); a coordinator killed before that asks for it again.
            return "give_up", given_up
        if again:
            with self.engine.begin() as connection:
                connection.execute(
                    update(DISTRIBUTED_RUNS)
                    .where(DISTRIBUTED_RUNS.c.id == self.run_id)
                    .values(repushed=DISTRIBUTED_RUNS.c.repushed + len(again))
                )
            logger.warning(
                "%d request(s) of distributed run %d were never answered (a worker stopped "
                "with them in hand): requested again",
                len(again),
                self.run_id,
            )
            return "repush", again
        self._finish()
        return "finished", []

    def _workers(self) -> list[Any]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(
                        CRAWL_RUNS.c.id,
                        CRAWL_RUNS.c.heartbeat_at,
                        CRAWL_RUNS.c.idle_since,
                        CRAWL_RUNS.c.finished_at,
                    ).where(CRAWL_RUNS.c.distributed_run_id == self.run_id)
                )
            )

    def _unanswered(self, worker_runs: set[int]) -> list[IssuedPage]:
        """The run's issued URLs that none of its workers answered or failed."""
        assert self.keys is not None
        issued = [
            IssuedPage.decoded(url.decode(), value)
            for url, value in cast(
                Iterator[tuple[bytes, bytes]], self.redis.hscan_iter(self.keys.issued)
            )
        ]
        by_key = {canonical_url(page.url): page for page in issued}
        answered: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in chunks(list(by_key)):
                answered.update(
                    connection.execute(
                        select(RECORD_URLS.c.url).where(
                            RECORD_URLS.c.url.in_(chunk),
                            RECORD_URLS.c.visited_run_id.in_(sorted(worker_runs)),
                        )
                    ).scalars()
                )
        return [page for key, page in by_key.items() if key not in answered]

    def _finish(self) -> None:
        assert self.keys is not None
        assert self.run_id is not None
        issued = self.redis.hlen(self.keys.issued)
        with self.engine.begin() as connection:
            _end(connection, self.run_id, "finished", issued=issued)
        self.redis.delete(*self.keys.all())
        self.finished = True
        logger.info(
            "Distributed run %d finished: every one of its %d record requests answered",
            self.run_id,
            issued,
        )

    def records_answered(self) -> int:
        """Record pages the run's workers, this one included, have stored or found unchanged:
        a worker's own checks judge "stored nothing" by the run, not by its share of it."""
        with self.engine.connect() as connection:
            workers = select(CRAWL_RUNS.c.id).where(CRAWL_RUNS.c.distributed_run_id == self.run_id)
            return int(
                connection.scalar(
                    select(func.count())
                    .select_from(RECORD_URLS)
                    .where(
                        RECORD_URLS.c.visited_run_id.in_(workers), RECORD_URLS.c.kind == "record"
                    )
                )
                or 0
            )

    def close(self) -> None:
        with self._in_use:
            self._closed = True
            self._close()

    def _close(self) -> None:
        if self._coordinator_connection is not None:
            try:
                self._coordinator_connection.execute(
                    select(func.pg_advisory_unlock(_COORDINATOR_LOCK_KEY))
                )
            except DBAPIError:
                pass  # the connection is gone, and the lock with it
            finally:
                self._coordinator_connection.close()
                self._coordinator_connection = None
        self.coordinator = False
        self.redis.close()


def _probe_keepalive(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        for name, seconds in SESSION_KEEPALIVES.items():
            cursor.execute(f"SET {name} = {seconds}")
    dbapi_connection.commit()


def _end(connection: Connection, run_id: int, reason: str, **figures: int) -> None:
    connection.execute(
        update(DISTRIBUTED_RUNS)
        .where(DISTRIBUTED_RUNS.c.id == run_id, DISTRIBUTED_RUNS.c.finished_at.is_(None))
        .values(finished_at=now_utc(), finish_reason=reason, **figures)
    )


def lost_visit(page: IssuedPage, run_id: int | None) -> PageVisit:
    """The gap left by a URL no worker answered after MAX_REPUSHES requests."""
    return PageVisit(
        url=page.url,
        status=0,
        fetched_at=now_utc(),
        kind="failed",
        gap_reason="fetch_failed",
        gap_detail=(
            f"distributed run {run_id}: requested {page.tries} times and no worker answered "
            "(each worker that took it stopped first)"
        ),
        sitemap_url=page.sitemap_url,
    )


class SharedSightings:
    """The page each NCJ number keeps in a distributed run, shared by its workers in Redis:
    the conflict rule (harvester.conflicts) holds across workers as it does in one process.

    Two workers can reach two pages of one record. Each offers its page (``offer``): the
    better one, by ``conflicts.preferred``, is noted as kept (compare-and-set, so two offers
    never both win), the other dropped as a duplicate. Their writers may still commit in the
    other order, so a writer writes a record only while its page is the kept one
    (``superseded``), holding a lock on the NCJ number until its transaction commits.

    When Redis does not answer, a page is kept and written (the last write wins, as if it
    were the only page), rather than lose a record.
    """

    # Set field ARGV[1] to ARGV[3] if its value is still ARGV[2] ("" for none): nil if set,
    # else the value it has ("" for none), to judge against.
    _COMPARE_AND_SET = """
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if (current == false and ARGV[2] == '') or current == ARGV[2] then
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
            return false
        end
        return current or ''
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._compare_and_set = client.register_script(self._COMPARE_AND_SET)
        self._warned = False

    def offer(self, record: Record, digest: str) -> Verdict:
        assert record.ncj_number is not None
        page = Sighting.of(record, digest)
        field = str(record.ncj_number)
        # Most records have one page: noted as the first, in one round trip.
        verdict, expected = Verdict(keep=True, conflict=None), ""
        try:
            while True:
                current = self._compare_and_set(
                    keys=[self.key], args=[field, expected, _noted(page)]
                )
                if current is None:
                    return verdict
                # Another page is noted (by another worker, perhaps meanwhile): judge again.
                expected = current.decode()
                previous = _sighting(expected) if expected else None
                if previous is not None and previous.url == page.url:
                    # The kept page itself again: requested again because the worker that had
                    # it stopped before writing it (its kill left it unanswered). Kept, or the
                    # record would be known to the run and stored by nobody.
                    verdict = Verdict(keep=True, conflict=None)
                else:
                    verdict = judged(record.ncj_number, page, previous)
                if not verdict.keep:
                    return verdict
        except redis.RedisError as error:
            self._unknown(error)
            return Verdict(keep=True, conflict=None)

    def superseded(self, connection: Connection, records: Sequence[tuple[Record, str]]) -> set[int]:
        """The NCJ numbers of ``records`` (record, content hash) that a better page, kept by
        another worker, supersedes: not to be written. Called first in the writer's
        transaction: it locks these NCJ numbers until the transaction ends, so a worker that
        noted a better page meanwhile writes it after this one, never before."""
        numbers = sorted({record.ncj_number for record, _ in records if record.ncj_number})
        if not numbers:
            return set()
        # In ascending order (unnest keeps the array's order): two writers never deadlock.
        connection.execute(
            text(
                "SELECT pg_advisory_xact_lock(:lock_class, n) "
                "FROM unnest(CAST(:numbers AS integer[])) AS n"
            ),
            {"lock_class": _RECORD_LOCK_CLASS, "numbers": numbers},
        )
        try:
            noted = self.client.hmget(self.key, [str(number) for number in numbers])
        except redis.RedisError as error:
            self._unknown(error)
            return set()
        kept = {
            number: _sighting(value)
            for number, value in zip(numbers, cast(list[bytes | None], noted), strict=True)
            if value is not None
        }
        superseded: set[int] = set()
        for record, digest in records:
            number = record.ncj_number
            other = kept.get(number) if number is not None else None
            # Only a page that beats this one: a page noted while Redis failed for this one
            # (or the same page again) does not stop it.
            if (
                number is not None
                and other is not None
                and other.url != record.source_url
                and preferred(other, Sighting.of(record, digest))[0]
            ):
                superseded.add(number)
        if superseded:
            logger.info(
                "%d record page(s) not written: another worker keeps a better page of them "
                "(NCJ %s)",
                len(superseded),
                ", ".join(map(str, sorted(superseded)[:10])),
            )
        return superseded

    def _unknown(self, error: redis.RedisError) -> None:
        if not self._warned:
            self._warned = True
            logger.error(
                "Redis failed (compare a record's pages across workers): %s; pages are kept "
                "as they come meanwhile (the last one written wins)",
                error,
            )


def _noted(page: Sighting) -> str:
    return f"{page.layout_rank} {page.filled} {page.content_key} {page.url}"


def _sighting(value: bytes | str) -> Sighting:
    text = value.decode() if isinstance(value, bytes) else value
    layout_rank, filled, content_key, url = text.split(" ", 3)
    return Sighting(
        layout_rank=int(layout_rank), filled=int(filled), url=url, content_key=int(content_key)
    )


class SharedScheduler(RedisScheduler):  # type: ignore[misc]  # scrapy-redis is untyped
    """scrapy-redis's scheduler under the run's keys, with a queue of this process's own for
    what must not leave it: navigation (the coordinator's), and the retries and redirects of
    a record request (the worker's that fetched it), and the coordinator's buffer."""

    def __init__(self, crawler: Crawler, fleet: Fleet, buffer: int) -> None:
        super().__init__(
            fleet.redis,
            persist=True,  # never flush the run's queue when one worker stops
            queue_cls="scrapy_redis.queue.PriorityQueue",
        )
        self.crawler = crawler
        self.fleet = fleet
        self.buffer = buffer
        self.stats = crawler.stats
        self.local = LocalScheduler.from_crawler(crawler)
        self._buffered: list[tuple[int, int, Request]] = []  # (-priority, order, request)
        self._order = itertools.count()
        self._next_top_up = 0.0
        self._taken: deque[Request] = deque()  # from the shared queue, not sent yet
        self._callbacks: dict[str, Callable[..., Any]] = {}
        # Record requests not noted as issued yet because Redis failed: noted again at every
        # top-up until Redis answers, never dropped (nobody else knows of them).
        self._unissued: deque[Request] = deque()
        self._redis_down_since: float | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedScheduler:
        from harvester.crawl_session import run_of

        run = run_of(crawler)
        assert run.fleet is not None
        return cls(crawler, run.fleet, crawler.settings.getint("HARVESTER_REDIS_BUFFER"))

    def open(self, spider: Spider) -> Deferred[None] | None:
        keys = self.fleet.join(spider.name, getattr(spider, "arguments", {}))
        self.queue_key, self.dupefilter_key = keys.requests, keys.dupefilter
        self.df = RFPDupeFilter(self.server, key=keys.dupefilter)
        super().open(spider)
        return self.local.open(spider)

    def close(self, reason: str) -> Deferred[None] | None:
        if self.fleet.finished:
            # The run ended (finished, abandoned, lost its queue): its keys are gone, and
            # pushing back would only make them again, for nobody.
            return self.local.close(reason)
        # What this worker took and the coordinator's buffer go on without it: back to the
        # shared queue, for the other workers.
        while self._taken:
            request = self._taken.popleft()
            heapq.heappush(self._buffered, (-request.priority, next(self._order), request))
        self._issue_unissued()
        self._top_up(len(self._buffered))
        if left := len(self._buffered) + len(self._unissued):
            # Redis is down: the next coordinator derives them again from the database.
            logger.warning(
                "%d record request(s) could not be handed to the shared queue (Redis "
                "unreachable); the next coordinator requests them again",
                left,
            )
        return self.local.close(reason)

    def enqueue_request(self, request: Request) -> bool:
        first_issue = request.meta.get(RECORD_PAGE) and not (
            "retry_times" in request.meta or "redirect_times" in request.meta
        )
        if not first_issue:
            return bool(self.local.enqueue_request(request))
        if self._unissued:  # in order: after those waiting for Redis
            self._unissued.append(request)
            return True
        try:
            return self._issue(request)
        except redis.RedisError as error:
            # Kept until Redis answers (nobody else knows of it), then issued in order.
            self._redis_failed("issue record requests", error)
            self._unissued.append(request)
            return True

    def _issue(self, request: Request, *, again: bool = False) -> bool:
        """Note a record request as issued and buffer it; False: the run saw it already.
        ``again``: one that waited for Redis, buffered even if its fingerprint is known (the
        failed attempt may have added it before its answer was lost)."""
        fingerprint = None if request.meta.get(REPUSHED) else self.df.request_fingerprint(request)
        seen = self.fleet.issue(IssuedPage.of(request), fingerprint)
        self._redis_back()
        if seen and not again:
            self.df.log(request, self.spider)
            return False
        heapq.heappush(self._buffered, (-request.priority, next(self._order), request))
        return True

    def _issue_unissued(self) -> None:
        while self._unissued:
            try:
                self._issue(self._unissued[0], again=True)
            except redis.RedisError as error:
                self._redis_failed("issue record requests", error)
                return
            self._unissued.popleft()

    def _redis_failed(self, what: str, error: redis.RedisError) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            logger.error(
                "Redis failed (%s), trying again: %s; nothing is dropped meanwhile", what, error
            )

    def _redis_back(self) -> None:
        if self._redis_down_since is not None:
            logger.warning(
                "Redis answers again after %.0f s", time.monotonic() - self._redis_down_since
            )
            self._redis_down_since = None

    def next_request(self) -> Request | None:
        # Topped up a few times a second, not at every request: each look costs a round trip.
        if (self._buffered or self._unissued) and time.monotonic() >= self._next_top_up:
            self._next_top_up = time.monotonic() + TOP_UP_EVERY
            self._issue_unissued()
            try:
                room = self.buffer - len(self.queue)
            except redis.RedisError as error:
                self._redis_failed("read the shared queue's length", error)
                room = 0
            self._top_up(room)
        request = self.local.next_request()
        if request is None:
            if not self._taken:
                self._take()
            if self._taken:
                request = self._taken.popleft()
        return request

    def _take(self) -> None:
        """A few requests from the shared queue at once, the first ones by priority (one round
        trip, atomic: ZPOPMIN). A worker killed with them costs their re-issue at reconcile."""
        try:
            taken = self.server.zpopmin(self.queue_key, TAKE_AT_ONCE)
        except redis.RedisError as error:
            # If the server popped them before the answer was lost, they are in the issued
            # hash: the reconcile requests them again.
            self._redis_failed("take from the shared queue", error)
            return
        self._redis_back()
        for encoded, _ in taken:
            request = self.queue._decode_request(encoded)
            self._same_callbacks(request)
            self._taken.append(request)
        if taken and self.stats is not None:
            self.stats.inc_value("scheduler/dequeued/redis", len(taken))

    def _same_callbacks(self, request: Request) -> None:
        """A request read from Redis gets a new bound method for its callback and errback.
        Scrapy remembers per callback object, weakly, whether it is a generator that returns a
        value (inspect.getsource and an AST walk, about 1 ms): with a new object each time it
        would inspect every page's callback again. One object per method, kept here."""
        if callable(request.callback):
            request.callback = self._callbacks.setdefault(
                request.callback.__name__, request.callback
            )
        if callable(request.errback):
            request.errback = self._callbacks.setdefault(request.errback.__name__, request.errback)

    def has_pending_requests(self) -> bool:
        if self.local.has_pending_requests() or self._taken or self._buffered or self._unissued:
            return True
        try:
            return bool(len(self.queue))
        except redis.RedisError as error:
            self._redis_failed("read the shared queue's length", error)
            return True  # unknown: the run is not over for this worker

    def buffered(self) -> int:
        """Requests in the coordinator's buffer, not in the shared queue yet (those waiting
        for Redis to note them included)."""
        return len(self._buffered) + len(self._unissued)

    def in_hand(self) -> bool:
        """Requests this worker must send itself: navigation, retries, redirects, and what it
        took from the shared queue."""
        return bool(self._taken or self.local.has_pending_requests())

    def _top_up(self, room: int) -> None:
        """Move up to ``room`` requests from the buffer to the shared queue, in one round trip
        (scrapy-redis's encoding and score, as its queue's push)."""
        steps = self.server.pipeline(transaction=False)
        moving: list[tuple[int, int, Request]] = []
        while self._buffered and len(moving) < room:
            entry = heapq.heappop(self._buffered)
            request = entry[2]
            steps.execute_command(
                "ZADD", self.queue_key, -request.priority, self.queue._encode_request(request)
            )
            moving.append(entry)
        if not moving:
            return
        try:
            steps.execute()
        except redis.RedisError as error:
            # Back to the buffer: added twice at worst (ZADD of the same request is one entry).
            for entry in moving:
                heapq.heappush(self._buffered, entry)
            self._redis_failed("top up the shared queue", error)
            return
        self._redis_back()
        if self.stats is not None:
            self.stats.inc_value("scheduler/enqueued/redis", len(moving))


class RunScheduler(BaseScheduler):
    """SCHEDULER: Scrapy's own scheduler for a run on one machine, the shared one above for a
    distributed run (HARVESTER_REDIS_URL)."""

    @classmethod
    # A factory: it returns another scheduler, not an instance of this class.
    def from_crawler(cls, crawler: Crawler) -> BaseScheduler:  # type: ignore[override]
        if is_distributed(crawler):
            return cast(BaseScheduler, SharedScheduler.from_crawler(crawler))
        return LocalScheduler.from_crawler(crawler)


def _arguments(arguments: dict[str, Any] | None) -> str:
    given = " ".join(f"-a {name}={value}" for name, value in sorted((arguments or {}).items()))
    return given or "(no arguments)"


def fleet_status(
    connection: Connection, client: redis.Redis | None, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The latest distributed run for `harvester stats`: its workers (busy, idle or gone by
    their heartbeats), the shared queue's length (with a Redis client), the requests it issued
    and re-issued, and the rate its workers answer URLs (the last minute); None: there was none.
    """
    run = connection.execute(
        select(DISTRIBUTED_RUNS).order_by(DISTRIBUTED_RUNS.c.id.desc()).limit(1)
    ).first()
    if run is None:
        return None
    now = now or now_utc()
    rows = connection.execute(
        select(
            CRAWL_RUNS.c.id,
            CRAWL_RUNS.c.heartbeat_at,
            CRAWL_RUNS.c.idle_since,
            CRAWL_RUNS.c.finish_reason,
            CRAWL_RUNS.c.pages_fetched,
            CRAWL_RUNS.c.started_at,
        )
        .where(CRAWL_RUNS.c.distributed_run_id == run.id)
        .order_by(CRAWL_RUNS.c.id)
    ).all()
    workers = []
    for row in rows:
        beat = _aware(row.heartbeat_at) if row.heartbeat_at else None
        if row.finish_reason is not None:
            state = row.finish_reason
        elif now - (beat or _aware(row.started_at)) > timedelta(minutes=1):
            state = "gone (no heartbeat for a minute: killed?)"
        elif beat is None:
            state = "starting"
        else:
            state = "idle" if row.idle_since is not None else "busy"
        workers.append(
            {
                "crawl_run": row.id,
                "state": state,
                "heartbeat_at": beat.isoformat() if beat else None,
            }
        )
    ids = [row.id for row in rows] or [0]
    answered = connection.scalar(
        select(func.count())
        .select_from(RECORD_URLS)
        .where(
            RECORD_URLS.c.visited_run_id.in_(ids),
            RECORD_URLS.c.last_seen_at >= now - timedelta(minutes=1),
        )
    )
    status: dict[str, Any] = {
        "id": run.id,
        "started_at": _aware(run.started_at).isoformat(),
        "finished_at": _aware(run.finished_at).isoformat() if run.finished_at else None,
        "arguments": run.arguments,
        "workers": workers,
        "issued": run.issued,
        "repushed": run.repushed,
        "pages_per_second": round(int(answered or 0) / 60, 2),
        "queued": None,
    }
    if client is not None and run.finished_at is None:
        keys = RunKeys.of(run.token)
        try:
            status["queued"] = client.zcard(keys.requests)
            status["issued"] = client.hlen(keys.issued)
        except redis.RedisError as error:
            status["queued"] = f"unknown ({error})"
    return status


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
