"""Self-healing: a record page that got no answer is a gap in the ledger, the run says so (exit
3), and the next run asks for it first, whatever the sitemap lastmod says, and stores it.
Real `scrapy crawl` processes against the local site, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for
from harvester.localsite import serve_site
from harvester.urls import canonical_url
from tests.support import assert_matches_truth, crawl, scrapy_crawl

QUICK = {"RETRY_TIMES": "1", "HARVESTER_BACKOFF_BASE": "0.05", "HARVESTER_BACKOFF_MAX": "0.1"}


def last_run(engine: Engine) -> models.CrawlRun:
    with Session(engine) as session:
        run = session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id.desc())).first()
        assert run is not None
        return run


def url_row(engine: Engine, url: str) -> models.RecordUrl:
    with Session(engine) as session:
        row = session.scalars(
            select(models.RecordUrl).where(models.RecordUrl.url == canonical_url(url))
        ).one()
        session.expunge(row)
        return row


def stored(engine: Engine) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(models.Record.ncj_number)))


def test_a_page_that_failed_is_a_gap_and_the_next_run_stores_it(
    database_url: str, engine_for: Engine
) -> None:
    with serve_site(records=30, seed=31) as site:
        records = [t for t in site.truth() if t["kind"] == "record" and not t["publication"]]
        failing: dict[str, Any] = records[3]
        path = site.url("")
        site.configure(statuses={failing["url"].removeprefix(path): 503})
        sitemap = f"sitemap={site.base_url}/sitemap.xml"

        first = scrapy_crawl(database_url, sitemap, settings=QUICK)
        assert first.returncode == 3, first.stderr[-3000:]
        assert failing["ncj_number"] not in stored(engine_for)
        row = url_row(engine_for, failing["url"])
        assert (row.kind, row.gap_reason, row.gap_detail) == (
            "failed",
            "fetch_failed",
            "answered HTTP 503",
        )
        assert row.gap_attempts == 1
        run = last_run(engine_for)
        assert run.alerts == [
            "1 record page(s) could not be fetched (1 fetch_failed): the next run "
            "retries them first; `harvester coverage` lists every gap"
        ]

        with Session(engine_for) as session:
            gaps = dict(
                session.execute(
                    select(models.RecordUrl.url, models.RecordUrl.gap_reason).where(
                        models.RecordUrl.gap_reason.is_not(None)
                    )
                ).all()
            )
        # Besides the failed page, the site's pages that fail validation (quarantined).
        rejected = [t for t in site.truth() if t["kind"] == "rejected"]
        assert sorted(gaps.values()) == sorted(["fetch_failed"] + ["quarantined"] * len(rejected))

        site.configure(statuses={})
        site.clear_requests()
        second = scrapy_crawl(database_url, sitemap, settings=QUICK)
        assert second.returncode == 0, second.stderr[-3000:]
        asked = [entry.target for entry in site.requests()]
        # Asked once, before the sitemap that lists it was even read.
        assert asked.count(failing["url"].removeprefix(path)) == 1
        assert asked.index(failing["url"].removeprefix(path)) < asked.index("/sitemap.xml")
    assert_matches_truth(engine_for, site)
    row = url_row(engine_for, failing["url"])
    assert (row.kind, row.gap_reason, row.gap_attempts, row.retry_at) == ("record", None, 0, None)
    # The failed page was due at once; quarantined pages wait an hour (a verdict on the page).
    assert last_run(engine_for).stats["harvester/gap_retries"] == 1  # type: ignore[index]


def test_every_stored_record_is_rechecked_within_the_revalidation_period(
    tmp_path: Path,
) -> None:
    """Past HARVESTER_REVALIDATE_DAYS every stored record is asked again, conditionally (a 304,
    no body), though no sitemap lastmod moved; before it, a run asks only its share."""
    url = f"sqlite:///{tmp_path / 'currency.sqlite'}"
    with serve_site(records=30, seed=32) as site:
        sitemap = f"sitemap={site.base_url}/sitemap.xml"
        crawl(url, sitemap)
        engine = create_engine_for(url)
        try:
            records = len(stored(engine))
            site.clear_requests()
            crawl(url, sitemap)  # seconds later, a 90-day period: a share of 0 records
            assert last_run(engine).stats.get("harvester/revalidations", 0) == 0  # type: ignore[union-attr]
            time.sleep(1.5)
            site.clear_requests()
            crawl(url, sitemap, settings={"HARVESTER_REVALIDATE_DAYS": str(1 / 86400)})
            run = last_run(engine)
        finally:
            engine.dispose()
        answers = [entry.status for entry in site.requests() if entry.status in (200, 304)]
    assert run.stats["harvester/revalidations"] == records  # type: ignore[index]
    assert run.pages_not_modified == records
    assert (run.records_new, run.records_updated) == (0, 0)
    assert answers.count(304) == records
