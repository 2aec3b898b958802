"""Resume: a crawl stopped by SIGTERM or SIGKILL at a random point, then run again, ends with
every record stored exactly once. The database is the checkpoint; JOBDIR also works."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.localsite import SiteHandle, serve_site
from harvester.urls import is_record_url
from tests.support import assert_matches_truth, scrapy_crawl, start_scrapy_crawl

# One request at a time with a small delay: slow enough to be stopped half-way.
SLOW = {
    "DOWNLOAD_DELAY": "0.004",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "1",
    "HARVESTER_BATCH_SIZE": "20",
}


@pytest.fixture
def site() -> Iterator[SiteHandle]:
    with serve_site(records=300, seed=21, per_sitemap=100) as handle:
        yield handle


def stop_after_some_records(
    site: SiteHandle, process: subprocess.Popen[str], signum: int, rng: random.Random
) -> int:
    """Wait until the site has served a random number of record pages, then send ``signum``."""
    target = rng.randint(20, 200)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        served = sum(1 for r in site.requests() if is_record_url(site.url(r.target)))
        if served >= target:
            os.kill(process.pid, signum)
            return served
        time.sleep(0.05)
    pytest.fail(f"the crawl ended or stalled before {target} record pages")


def assert_stored_once(engine: Engine, database_url: str, site: SiteHandle) -> None:
    assert_matches_truth(engine, site)
    with Session(engine) as session:
        urls = session.scalar(select(func.count()).select_from(models.RecordUrl))
        distinct = session.scalar(select(func.count(func.distinct(models.RecordUrl.url))))
    assert urls == distinct
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_crawl_completes_on_the_next_run(
    signum: int, site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sitemap = f"sitemap={site.base_url}/sitemap.xml"
    process = start_scrapy_crawl(database_url, sitemap, settings=SLOW)
    served = stop_after_some_records(site, process, signum, rng)
    _, log = process.communicate(timeout=120)
    context = f"seed {seed}, stopped after {served} record pages"
    if signum == signal.SIGTERM:
        # Scrapy's graceful shutdown: nothing new is scheduled, buffered records are written.
        assert process.returncode == 0, f"{context}\n{log[-3000:]}"
        with Session(engine_for) as session:
            run = session.scalars(select(models.CrawlRun)).one()
            stored = session.scalar(select(func.count()).select_from(models.Record))
        assert run.finish_reason == "shutdown", context
        assert run.finished_at is not None
        assert stored == run.records_new > 0, context
    else:
        assert process.returncode == -signal.SIGKILL, context

    with Session(engine_for) as session:
        states = session.scalar(select(func.count()).select_from(models.RecordUrl))
    again = scrapy_crawl(database_url, sitemap)
    assert again.returncode == 0, f"{context}\n{again.stderr[-3000:]}"
    assert_stored_once(engine_for, database_url, site)
    with Session(engine_for) as session:
        first, second = session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id))
    expected = "shutdown" if signum == signal.SIGTERM else "interrupted"
    assert first.finish_reason == expected, context
    assert second.finish_reason == "finished"
    assert second.alerts == []
    # Every page the first run stored is skipped, not fetched again. After SIGKILL that may be
    # nothing at all: a kill before the first batch was written leaves no state.
    assert second.pages_skipped == states, context
    if signum == signal.SIGTERM:
        assert states > 0, context


def test_jobdir_pause_and_resume(site: SiteHandle, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'jobdir.sqlite'}"
    settings = {**SLOW, "JOBDIR": str(tmp_path / "job")}
    sitemap = f"sitemap={site.base_url}/sitemap.xml"
    process = start_scrapy_crawl(database_url, sitemap, settings=settings)
    stop_after_some_records(site, process, signal.SIGINT, random.Random())  # Ctrl-C: pause
    _, log = process.communicate(timeout=120)
    assert process.returncode == 0, log[-3000:]

    resumed = scrapy_crawl(database_url, sitemap, settings=settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming crawl" in resumed.stderr
    from harvester.db import create_engine_for

    engine = create_engine_for(database_url)
    try:
        assert_stored_once(engine, database_url, site)
    finally:
        engine.dispose()
