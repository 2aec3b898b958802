"""Politeness: Retry-After and backoff pauses, robots.txt failures and Crawl-delay, budgets.

Timings are asserted on the local server's request log (monotonic times taken in the server
process when each request arrived), with delays scaled down to fractions of a second.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.localsite import SiteHandle, serve_site
from harvester.politeness import backoff_seconds, retry_after_seconds
from harvester.urls import is_record_url
from tests.support import scrapy_crawl

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(b"7") == 7.0
    assert retry_after_seconds(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert retry_after_seconds(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(3)
    for strikes, exact in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)):
        for _ in range(50):
            assert exact * 0.5 <= backoff_seconds(strikes, 2.0, 100.0, rng) <= exact * 1.5
    assert all(backoff_seconds(20, 2.0, 30.0, rng) <= 30.0 for _ in range(50))
    assert len({round(backoff_seconds(3, 2.0, 100.0, rng), 6) for _ in range(20)}) > 1


@pytest.fixture
def site() -> Iterator[SiteHandle]:
    with serve_site(records=40, seed=4, per_sitemap=1000) as handle:
        yield handle


def record_urls(site: SiteHandle, count: int) -> str:
    truth = [t for t in site.truth() if t["kind"] == "record"][:count]
    return "url=" + ",".join(t["url"] for t in truth)


def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/polite.sqlite"


def test_retry_after_pauses_the_whole_host(site: SiteHandle, tmp_path: object) -> None:
    site.configure(busy={"status": 503, "count": 1, "retry_after": 2})
    done = scrapy_crawl(
        sqlite_url(tmp_path),
        record_urls(site, 12),
        settings={"CONCURRENT_REQUESTS_PER_DOMAIN": "2", "DOWNLOAD_DELAY": "0.05"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = [r for r in site.requests() if is_record_url(site.url(r.target))]
    (busy,) = [r for r in log if r.status == 503]
    # A request already on the wire may land just after the 503; then nothing until it is due.
    early = [r for r in log if busy.time + 0.3 < r.time < busy.time + 2.0 - 0.05]
    assert early == [], early
    assert [r for r in log if r.target == busy.target][-1].status == 200
    assert "Retry-After: 2): pausing requests to it for 2.0 s" in done.stderr


def test_busy_answers_without_retry_after_back_off_exponentially(
    site: SiteHandle, tmp_path: object
) -> None:
    site.configure(busy={"status": 429, "count": 3})
    done = scrapy_crawl(
        sqlite_url(tmp_path),
        record_urls(site, 3),
        settings={
            # One request at a time (a zero delay would let the downloader start several).
            "CONCURRENT_REQUESTS_PER_DOMAIN": "1",
            "DOWNLOAD_DELAY": "0.01",
            "HARVESTER_BACKOFF_BASE": "0.4",
            "RETRY_TIMES": "5",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = [r for r in site.requests() if is_record_url(site.url(r.target))]
    statuses = [r.status for r in log]
    assert statuses[:3] == [429, 429, 429]
    assert set(statuses[3:]) == {200}
    gaps = [later.time - earlier.time for earlier, later in pairwise(log[:4])]
    for strike, gap in enumerate(gaps, start=1):
        assert gap >= 0.4 * 2 ** (strike - 1) * 0.5 - 0.02, gaps
    assert gaps[2] > 0.4  # the third pause is at least 0.8 s * 0.5 jitter


def test_a_robots_txt_that_fails_with_5xx_disallows_everything(tmp_path: object) -> None:
    with serve_site(records=20, seed=4, status_overrides={"/robots.txt": 500}) as site:
        done = scrapy_crawl(
            sqlite_url(tmp_path),
            f"sitemap={site.base_url}/sitemap.xml",
            settings={"RETRY_TIMES": "1"},
        )
        requested = [r.target for r in site.requests()]
    assert done.returncode == 3, done.stderr[-3000:]  # a failed check, not a crash
    assert set(requested) == {"/robots.txt"}
    assert "RFC 9309: complete disallow" in done.stderr
    assert "Check failed: robots.txt could not be read" in done.stderr


def test_a_robots_txt_that_is_missing_allows_everything(tmp_path: object) -> None:
    with serve_site(records=20, seed=4, status_overrides={"/robots.txt": 404}) as site:
        done = scrapy_crawl(sqlite_url(tmp_path), record_urls(site, 5))
        requested = [r.target for r in site.requests() if is_record_url(site.url(r.target))]
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(requested) >= 5


def test_crawl_delay_spaces_requests_to_the_host(tmp_path: object) -> None:
    with serve_site(records=20, seed=4, crawl_delay=0.4) as site:
        done = scrapy_crawl(
            sqlite_url(tmp_path),
            record_urls(site, 5),
            settings={"CONCURRENT_REQUESTS_PER_DOMAIN": "4", "AUTOTHROTTLE_ENABLED": "1"},
        )
        log = [r for r in site.requests() if r.target != "/robots.txt"]
    assert done.returncode == 0, done.stderr[-3000:]
    gaps = [b.time - a.time for a, b in pairwise(log)]
    assert len(gaps) >= 4
    assert min(gaps) >= 0.4 * 0.95, gaps
    assert "Crawl-delay of 0.4 s" in done.stderr


def test_the_request_budget_stops_the_crawl(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    done = scrapy_crawl(
        database_url,
        record_urls(site, 30),
        "max_requests=6",
        settings={"CONCURRENT_REQUESTS_PER_DOMAIN": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(site.requests()) == 6  # robots.txt and five record pages
    with Session(engine_for) as session:
        run = session.scalars(select(models.CrawlRun)).one()
    assert run.finish_reason == "max_requests"
    assert run.alerts == []
