"""One crawl per database at a time; killed crawls leave no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import Engine, insert, select

from harvester import models
from harvester.db import ensure_schema
from harvester.errors import CrawlAlreadyRunning
from harvester.localsite import serve_site
from harvester.runlock import acquire_run_lock, mark_interrupted_runs
from harvester.store import now_utc
from tests.support import REPO, scrapy_crawl

HOLD_LOCK = """
import sys, time
from harvester.db import create_engine_for
from harvester.runlock import acquire_run_lock
lock = acquire_run_lock(create_engine_for(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def start_run_row(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(models.CrawlRun.__table__)
                .values(spider="ncjrs", arguments={}, started_at=now_utc())
                .returning(models.CrawlRun.__table__.c.id)
            ).scalar_one()
        )


def test_a_second_lock_is_refused_until_the_first_is_released(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    run_id = start_run_row(engine)
    lock = acquire_run_lock(engine)
    with pytest.raises(CrawlAlreadyRunning, match=f"run {run_id} started at .* is still crawling"):
        acquire_run_lock(engine)
    lock.release()
    acquire_run_lock(engine).release()


def test_a_killed_crawl_leaves_no_stale_lock(engine: Engine, database_url: str) -> None:
    ensure_schema(engine, auto_migrate=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, database_url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CrawlAlreadyRunning):
            acquire_run_lock(engine)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    acquire_run_lock(engine).release()


def test_runs_left_unfinished_are_marked_interrupted(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    killed = start_run_row(engine)
    assert mark_interrupted_runs(engine) == [killed]
    with engine.connect() as connection:
        reason = connection.execute(
            select(models.CrawlRun.finish_reason).where(models.CrawlRun.id == killed)
        ).scalar_one()
    assert reason == "interrupted"
    assert mark_interrupted_runs(engine) == []


def test_an_overlapping_crawl_exits_at_once_and_fetches_nothing(
    database_url: str, engine_for: Engine
) -> None:
    lock = acquire_run_lock(engine_for)
    try:
        with serve_site(records=10, seed=2) as site:
            done = scrapy_crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
            requests = site.requests()
    finally:
        lock.release()
    assert done.returncode == 1
    assert "Not crawling: another crawl is still crawling into" in done.stderr
    assert requests == []
