"""One crawl at a time per database.

Two crawls writing one database would fetch everything twice and race on URL state, so a
crawl takes a lock before it fetches anything and a second one is refused at once:

- SQLite: an OS file lock (``flock``) on ``<database file>.crawl.lock``;
- PostgreSQL: a session-level advisory lock, held on a connection of its own.

Both are released by the operating system or the server when the process dies, so a crawl
that was killed (SIGKILL, OOM, power loss) never leaves a stale lock behind. What it does
leave is a ``crawl_runs`` row without ``finished_at``: the next crawl, once it holds the lock,
marks such rows ``interrupted`` (they cannot belong to a live crawl) and fills the gap.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.engine import make_url

from harvester import models
from harvester.db import display_url

logger = logging.getLogger(__name__)

_PG_CRAWL_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"ncjrs-harvester crawl").digest()[:8], "big", signed=True
)


class CrawlAlreadyRunning(RuntimeError):
    """Another crawl holds the database's crawl lock."""


class RunLock:
    def __init__(self, file_lock: FileLock | None, connection: Connection | None) -> None:
        self._file_lock = file_lock
        self._connection = connection

    def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        if self._connection is not None:
            try:
                self._connection.execute(select(func.pg_advisory_unlock(_PG_CRAWL_LOCK_KEY)))
            finally:
                self._connection.close()
                self._connection = None


def acquire_run_lock(engine: Engine) -> RunLock:
    """Take the database's crawl lock, or raise CrawlAlreadyRunning saying who holds it."""
    url = make_url(engine.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return RunLock(None, None)  # private to this process: nothing to share
        lock = FileLock(f"{Path(database).resolve()}.crawl.lock")
        try:
            lock.acquire(timeout=0)
        except FileLockTimeout:
            raise CrawlAlreadyRunning(_held_message(engine, lock.lock_file)) from None
        return RunLock(lock, None)
    if backend == "postgresql":
        connection = engine.connect()
        try:
            taken = connection.execute(select(func.pg_try_advisory_lock(_PG_CRAWL_LOCK_KEY)))
            if not taken.scalar():
                raise CrawlAlreadyRunning(_held_message(engine, "a PostgreSQL advisory lock"))
            connection.commit()
        except BaseException:
            connection.close()
            raise
        return RunLock(None, connection)
    return RunLock(None, None)


def _held_message(engine: Engine, lock: str) -> str:
    running = _unfinished_runs(engine)
    who = (
        f"run {running[-1].id} started at {running[-1].started_at:%Y-%m-%d %H:%M:%S} UTC"
        if running
        else "another crawl"
    )
    return (
        f"{who} is still crawling into {display_url(engine.url)} ({lock} is held); "
        "this run would duplicate its work, so it stops here. Try again when it has finished."
    )


def _unfinished_runs(engine: Engine) -> list[models.CrawlRun]:
    runs = models.CrawlRun.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(runs.c.id, runs.c.started_at)
            .where(runs.c.finished_at.is_(None), runs.c.finish_reason.is_(None))
            .order_by(runs.c.id)
        ).all()
    return [models.CrawlRun(id=row.id, started_at=row.started_at) for row in rows]


def mark_interrupted_runs(engine: Engine) -> list[int]:
    """With the lock held: runs left unfinished were killed. Returns their ids."""
    runs = models.CrawlRun.__table__
    ids = [run.id for run in _unfinished_runs(engine)]
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
