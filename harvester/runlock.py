"""One crawl at a time per database.

Two crawls writing one database would fetch everything twice and race on URL state, so a
crawl takes a lock before it fetches anything and a second one is refused at once:

- SQLite: an OS file lock (``flock``) on ``<database file>.crawl.lock``;
- PostgreSQL: a session-level advisory lock, held on a connection of its own.

Both are released by the operating system or the server when the process dies, so a crawl
that was killed (SIGKILL, OOM, power loss) never leaves a stale lock behind. What it does
leave is a ``crawl_runs`` row without ``finished_at``: the next crawl, once it holds the lock,
marks such rows ``interrupted`` and fills the gap.

A PostgreSQL lock lives as long as its connection: a server restart or a killed backend loses
it while the crawl goes on. So a live run writes ``crawl_runs.heartbeat_at`` every
HARVESTER_HEARTBEAT_INTERVAL seconds and checks its lock connection each time, taking the lock
again on a new connection when it was lost (``RunLock.check``). A crawl that gets the lock
while an unfinished run's heartbeat is fresh does not trust it: it lets the lock go and
watches the heartbeat for up to ``stale_after``; a heartbeat that moves on is a live run (this
crawl refuses to start), one that does not was a killed one (marked ``interrupted``).
SQLite's file lock cannot be lost while its process lives: there, holding it is proof enough.

The workers of a distributed run (harvester/distributed.py, PostgreSQL only) share the lock:
each holds it in shared mode (``acquire_worker_lock``), so any number of them run together,
while a plain crawl, which takes it exclusively, is refused as long as one of them lives, and
the other way round.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from harvester import models
from harvester import settings as defaults
from harvester.db import display_url
from harvester.errors import CrawlAlreadyRunning

logger = logging.getLogger(__name__)

_PG_CRAWL_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"ncjrs-harvester crawl").digest()[:8], "big", signed=True
)


LockState = Literal["ok", "retaken", "lost"]


class RunLock:
    def __init__(
        self,
        file_lock: FileLock | None,
        connection: Connection | None,
        engine: Engine | None = None,
        stale_after: timedelta | None = None,
        *,
        shared: bool = False,
    ) -> None:
        self._file_lock = file_lock
        self._connection = connection
        self._engine = engine
        self.shared = shared  # a distributed run's worker: held in shared mode
        # How old an unfinished run's heartbeat may be before it counts as killed; None: any
        # unfinished run is (the lock itself proves nobody else is running).
        self.stale_after = stale_after

    def check(self) -> LockState:
        """Is the lock still ours? Takes it again on a new connection if its own was lost.

        Raises when the server cannot be reached at all (the caller tries again later).
        """
        if self._connection is None or self._engine is None:
            return "ok"
        try:
            self._connection.execute(select(1)).scalar()
            self._connection.commit()
            return "ok"
        except DBAPIError:
            try:
                self._connection.invalidate()
                self._connection.close()
            except DBAPIError:
                pass
            self._connection = None
        connection = self._engine.connect()
        if not _try_lock(connection, shared=self.shared):
            connection.close()
            logger.critical("The crawl lock's connection was lost and another crawl holds it now")
            return "lost"
        self._connection = connection
        logger.warning("The crawl lock's connection was lost; the lock is taken again")
        return "retaken"

    def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        if self._connection is not None:
            try:
                unlock = func.pg_advisory_unlock_shared if self.shared else func.pg_advisory_unlock
                self._connection.execute(select(unlock(_PG_CRAWL_LOCK_KEY)))
            except DBAPIError:
                pass  # the connection is gone, and the lock with it
            finally:
                self._connection.close()
                self._connection = None


def _try_lock(connection: Connection, *, shared: bool = False) -> bool:
    try_lock = func.pg_try_advisory_lock_shared if shared else func.pg_try_advisory_lock
    taken = bool(connection.execute(select(try_lock(_PG_CRAWL_LOCK_KEY))).scalar())
    connection.commit()
    return taken


# The server frees a killed client's advisory lock only once its backend notices the dropped
# connection, which takes a moment: a crawl restarted right after `kill -9` waits that long.
_DEAD_HOLDER_GRACE = 3.0


def _try_lock_within(connection: Connection, seconds: float, *, shared: bool = False) -> bool:
    deadline = time.monotonic() + seconds
    while not _try_lock(connection, shared=shared):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def acquire_run_lock(
    engine: Engine, *, heartbeat_interval: float = defaults.HARVESTER_HEARTBEAT_INTERVAL
) -> RunLock:
    """Take the database's crawl lock, or raise CrawlAlreadyRunning saying who holds it."""
    url = make_url(engine.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return RunLock(None, None)  # private to this process: nothing to share
        file_lock = FileLock(f"{Path(database).resolve()}.crawl.lock")
        try:
            file_lock.acquire(timeout=0)
        except FileLockTimeout:
            raise CrawlAlreadyRunning(_held_message(engine, file_lock.lock_file)) from None
        return RunLock(file_lock, None)
    if backend == "postgresql":
        # A few missed beats, and time for the beat's own write.
        stale_after = timedelta(seconds=3 * heartbeat_interval + 5)
        for attempt in (1, 2):
            connection = engine.connect()
            try:
                if not _try_lock_within(connection, _DEAD_HOLDER_GRACE):
                    raise CrawlAlreadyRunning(_held_message(engine, "a PostgreSQL advisory lock"))
            except BaseException:
                connection.close()
                raise
            lock = RunLock(None, connection, engine, stale_after)
            if attempt == 2 or not _fresh_heartbeats(engine, stale_after):
                return lock
            # A run whose heartbeat is fresh may be alive and about to take its lock again:
            # let the lock go, and watch whether its heartbeat moves on.
            lock.release()
            if _heartbeat_moves_on(engine, stale_after):
                raise CrawlAlreadyRunning(
                    _held_message(engine, "its heartbeat is fresh; a PostgreSQL advisory lock")
                )
    return RunLock(None, None)


def acquire_worker_lock(
    engine: Engine, *, heartbeat_interval: float = defaults.HARVESTER_HEARTBEAT_INTERVAL
) -> RunLock:
    """Take the crawl lock in shared mode, for a worker of a distributed run (PostgreSQL), or
    raise CrawlAlreadyRunning when a plain crawl holds it.

    As for a plain crawl (``acquire_run_lock``), holding the lock is not proof enough: a plain
    crawl whose lock connection was dropped lives on and takes its lock again at its next
    heartbeat. A fresh heartbeat of a plain crawl is watched; one that moves on refuses this
    worker. Other workers' heartbeats are no obstacle: the lock is theirs too."""
    stale_after = timedelta(seconds=3 * heartbeat_interval + 5)
    for attempt in (1, 2):
        connection = engine.connect()
        try:
            if not _try_lock_within(connection, _DEAD_HOLDER_GRACE, shared=True):
                raise CrawlAlreadyRunning(
                    _held_message(engine, "a PostgreSQL advisory lock")
                    + " (a distributed run cannot start while a plain crawl is under way)"
                )
        except BaseException:
            connection.close()
            raise
        lock = RunLock(None, connection, engine, stale_after, shared=True)
        if attempt == 2 or not _fresh_heartbeats(engine, stale_after, plain_only=True):
            return lock
        lock.release()
        if _heartbeat_moves_on(engine, stale_after, plain_only=True):
            raise CrawlAlreadyRunning(
                _held_message(engine, "its heartbeat is fresh; a PostgreSQL advisory lock")
                + " (a distributed run cannot start while a plain crawl is under way)"
            )
    raise AssertionError("unreachable: the second attempt returns or raises")


def _fresh_heartbeats(
    engine: Engine, stale_after: timedelta, *, plain_only: bool = False
) -> dict[int, datetime]:
    """Unfinished runs whose heartbeat (or start) is younger than ``stale_after``; with
    ``plain_only``, only plain crawls (not workers of a distributed run)."""
    runs = models.CrawlRun.__table__
    cutoff = datetime.now(UTC) - stale_after
    query = select(runs.c.id, func.coalesce(runs.c.heartbeat_at, runs.c.started_at)).where(
        runs.c.finished_at.is_(None), runs.c.finish_reason.is_(None)
    )
    if plain_only:
        query = query.where(runs.c.distributed_run_id.is_(None))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {row[0]: row[1] for row in rows if _aware(row[1]) > cutoff}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _heartbeat_moves_on(
    engine: Engine, stale_after: timedelta, *, plain_only: bool = False
) -> bool:
    """Watch the fresh heartbeats until one moves on (True) or all are stale or finished."""
    seen = _fresh_heartbeats(engine, stale_after, plain_only=plain_only)
    deadline = time.monotonic() + stale_after.total_seconds() + 1
    if seen:
        logger.warning(
            "Run(s) %s did not finish but beat recently: waiting up to %.0f s to see "
            "whether they are alive",
            ", ".join(map(str, seen)),
            stale_after.total_seconds(),
        )
    while seen and time.monotonic() < deadline:
        time.sleep(0.5)
        now = _fresh_heartbeats(engine, stale_after, plain_only=plain_only)
        if any(run in seen and beat != seen[run] for run, beat in now.items()):
            return True
        seen = {run: beat for run, beat in now.items() if run in seen}
    return False


def _held_message(engine: Engine, lock: str) -> str:
    running = _unfinished_runs(engine)
    who = (
        f"run {running[-1].id} started at {running[-1].started_at:%Y-%m-%d %H:%M:%S} UTC"
        if running
        else "another crawl"
    )
    fleets = sorted({run.distributed_run_id for run in running if run.distributed_run_id})
    if fleets:
        workers = sum(1 for run in running if run.distributed_run_id)
        who = f"distributed run {fleets[-1]} ({workers} worker(s))"
    return (
        f"{who} is still crawling into {display_url(engine.url)} ({lock} is held); "
        "this run would duplicate its work, so it stops here. Try again when it has finished."
    )


def _unfinished_runs(engine: Engine) -> list[models.CrawlRun]:
    runs = models.CrawlRun.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(runs.c.id, runs.c.started_at, runs.c.distributed_run_id)
            .where(runs.c.finished_at.is_(None), runs.c.finish_reason.is_(None))
            .order_by(runs.c.id)
        ).all()
    return [
        models.CrawlRun(
            id=row.id, started_at=row.started_at, distributed_run_id=row.distributed_run_id
        )
        for row in rows
    ]


def mark_interrupted_runs(engine: Engine, *, stale_after: timedelta | None = None) -> list[int]:
    """With the lock held: runs left unfinished were killed. Returns their ids.

    ``stale_after``: only runs whose heartbeat is older than this (a live run that lost its
    PostgreSQL lock for a moment is never marked).
    """
    runs = models.CrawlRun.__table__
    fresh = _fresh_heartbeats(engine, stale_after) if stale_after is not None else {}
    ids = [run.id for run in _unfinished_runs(engine) if run.id not in fresh]
    if ids:
        with engine.begin() as connection:
            connection.execute(
                update(runs).where(runs.c.id.in_(ids)).values(finish_reason="interrupted")
            )
        logger.warning(
            "Crawl run(s) %s did not finish (the process was killed): marked interrupted; "
            "this run picks up what they left undone",
            ", ".join(map(str, ids)),
        )
    return ids
