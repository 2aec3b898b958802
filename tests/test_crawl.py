"""End to end: `scrapy crawl ncjrs` over the local NCJRS-style site into SQLite and PostgreSQL.

Every crawl is a real `scrapy crawl` process against a real HTTP server on 127.0.0.1, and the
rows it stores are compared, column by column, with the generator's truth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for
from harvester.localsite import SiteHandle, serve_site
from harvester.urls import is_record_url
from tests.support import (
    LOCAL_SITE,
    REPO,
    assert_matches_truth,
    crawl,
    scrapy_crawl,
    stored_content,
)

RECORDS = 120
LOCAL = LOCAL_SITE


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=RECORDS, seed=5) as handle:
        yield handle


def test_sitemap_crawl_stores_every_record_once_and_recrawl_changes_nothing(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    log = crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    assert "Crawl run 1 finished" in log
    assert_matches_truth(engine_for, site)
    with Session(engine_for) as session:
        first = session.scalars(select(models.CrawlRun)).one()
        hashes = dict(
            session.execute(select(models.Record.ncj_number, models.Record.content_hash)).all()
        )
    records = len(hashes)
    assert first.records_new == records
    assert first.records_quarantined == sum(1 for t in site.truth() if t["kind"] == "rejected")
    assert first.finish_reason == "finished"
    assert first.pages_fetched > records
    assert first.stats["harvester/non_record/soft_404"] >= 1

    # Nothing changed on the site: an incremental run requests no record page at all.
    site.clear_requests()
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    assert not [r for r in site.requests() if is_record_url(site.url(r.target))]
    # full=1 re-checks every page: conditionally, so each answers 304.
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml", "full=1")
    # Without conditional requests every page comes back whole, and every record is unchanged.
    crawl(
        database_url,
        f"sitemap={site.base_url}/sitemap.xml",
        "full=1",
        settings={"HARVESTER_CONDITIONAL_REQUESTS": "0"},
    )
    with Session(engine_for) as session:
        second, revalidated, third = session.scalars(
            select(models.CrawlRun)
            .where(models.CrawlRun.id > first.id)
            .order_by(models.CrawlRun.id)
        ).all()
        again = dict(
            session.execute(select(models.Record.ncj_number, models.Record.content_hash)).all()
        )
        changed = session.scalars(
            select(models.Record).where(models.Record.last_changed_at > first.finished_at)
        ).all()
    record_urls = sum(1 for kind, _ in site.site.sitemap_entries() if kind != "topic")
    assert (second.records_new, second.records_updated, second.records_unchanged) == (0, 0, 0)
    assert second.pages_skipped == record_urls
    # ... except the quarantined pages: gaps are asked without validators, so that what
    # the failed fetch kept can never be confirmed by a 304.
    assert revalidated.pages_not_modified == record_urls - first.records_quarantined
    assert (revalidated.records_new, revalidated.records_updated) == (0, 0)
    assert (third.records_new, third.records_updated) == (0, 0)
    assert third.records_unchanged == records
    assert third.pages_skipped == 0
    assert again == hashes
    assert changed == []


@pytest.mark.parametrize("mode", ["robots", "listing", "url", "urls_file", "ncj", "ncj_file"])
def test_every_discovery_mode(
    mode: str, site: SiteHandle, tmp_path: Path, database_url: str, engine_for: Engine
) -> None:
    truth = list(site.truth())
    if mode in ("robots", "listing"):
        argument = {
            "robots": f"sitemap={site.base_url}/robots.txt",
            "listing": f"listing={site.base_url}/ncjrs/virtual-library/abstracts?page=0",
        }[mode]
        crawl(database_url, argument)
        assert_matches_truth(engine_for, site)
        return
    # Direct modes fetch a chosen subset: one record under each of its URLs.
    chosen = [t for t in truth if t["kind"] == "record"][:10]
    if mode in ("url", "urls_file"):
        urls = [u for t in chosen for u in t["urls"].values() if u]
        if mode == "url":
            crawl(database_url, "url=" + ",".join(urls))
        else:
            (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
            crawl(database_url, f"urls_file={tmp_path / 'urls.txt'}")
    else:
        numbers = [
            str(t["ncj_number"])
            for t in chosen
            if t["urls"]["legacy"] and t["urls"]["legacy"].endswith(f"={t['ncj_number']}")
        ]
        template = {
            "NCJ_URL_TEMPLATE": f"{site.base_url}/App/Publications/abstract.aspx?ID={{ncj}}"
        }
        if mode == "ncj":
            crawl(database_url, "ncj=" + ",".join(numbers), settings=template)
        else:
            (tmp_path / "ncj.txt").write_text("\n".join(numbers) + "\n")
            crawl(database_url, f"ncj_file={tmp_path / 'ncj.txt'}", settings=template)
        chosen = [t for t in chosen if str(t["ncj_number"]) in numbers]
    with Session(engine_for) as session:
        stored = {r.ncj_number: r for r in session.scalars(select(models.Record))}
        assert sorted(stored) == sorted(t["ncj_number"] for t in chosen)
        for entry in chosen:
            record = stored[entry["ncj_number"]]
            expected = dict(entry["expected"])
            expected["grant_numbers"] = sorted(expected["grant_numbers"])
            expected["subjects"] = sorted(expected["subjects"])
            # Reached under legacy, current and publication URLs: one row, from the richest page.
            assert stored_content(session, record) == expected
            assert record.layout == entry["layout"]


def run_scrapy(
    database_url: str, *arguments: str, output: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "ncjrs"]
    for argument in arguments:
        command += ["-a", argument]
    if output is not None:
        command += ["-O", str(output)]
        for name, value in LOCAL.items():
            command += ["-s", f"{name}={value}"]
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_database_that_cannot_be_opened_stops_the_crawl_before_it_fetches(
    site: SiteHandle, tmp_path: Path
) -> None:
    site.clear_requests()
    done = run_scrapy(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}", f"url={site.base_url}/")
    assert done.returncode == 1
    assert "Not crawling: cannot open SQLite database" in done.stderr
    assert site.requests() == []


def test_a_database_at_another_revision_stops_the_crawl_with_what_to_run(
    site: SiteHandle, tmp_path: Path
) -> None:
    path = tmp_path / "other.sqlite"
    engine = create_engine_for(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('0000_from_the_future')")
        connection.exec_driver_sql("CREATE TABLE records (ncj_number INTEGER PRIMARY KEY)")
    engine.dispose()
    site.clear_requests()
    done = run_scrapy(f"sqlite:///{path}", f"url={site.base_url}/")
    assert done.returncode == 1
    assert "alembic upgrade head" in done.stderr
    assert site.requests() == []


def test_two_crawls_started_at_once_on_a_new_sqlite_file(site: SiteHandle, tmp_path: Path) -> None:
    """The file is migrated once, and the crawls do not overlap: the one that finds the other
    crawling stops at once (harvester/runlock.py); the other stores everything."""
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    command = [sys.executable, "-m", "scrapy", "crawl", "ncjrs", "-a"]
    command += [f"sitemap={site.base_url}/sitemap.xml"]
    for name, value in LOCAL.items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, "DATABASE_URL": url}
    runs = [
        subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    succeeded = 0
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        if run.returncode == 0:
            succeeded += 1
        else:
            assert run.returncode == 1, stderr[-3000:]
            assert "is still crawling into" in stderr, stderr[-3000:]
    assert succeeded >= 1
    engine = create_engine_for(url)
    try:
        assert_matches_truth(engine, site)
    finally:
        engine.dispose()


def test_feed_export_works_alongside_the_database(
    site: SiteHandle, tmp_path: Path, database_url: str, engine_for: Engine
) -> None:
    import json

    chosen = [t for t in site.truth() if t["kind"] == "record" and t["layout"] == "current"][:5]
    output = tmp_path / "records.jsonl"
    done = run_scrapy(database_url, "url=" + ",".join(t["url"] for t in chosen), output=output)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["ncj_number"] for line in lines) == sorted(t["ncj_number"] for t in chosen)
    assert all(line["raw"] is None and line["title"] for line in lines)
    with Session(engine_for) as session:
        assert len(session.scalars(select(models.Record)).all()) == len(chosen)


def test_a_failing_sitemap_and_record_page_do_not_stop_the_crawl(tmp_path: Path) -> None:
    from harvester.localsite.generator import Site

    url = f"sqlite:///{tmp_path / 'errors.sqlite'}"
    generated = Site(records=60, seed=9, per_sitemap=20)
    entries = [generated.entry_path(entry) for entry in generated.sitemap_entries()]
    later_paths = set(entries[20:])  # sitemap 1 (entries 0-19) will fail
    reachable = [
        t
        for t in generated.truth("")
        if t["kind"] == "record" and {t["url"], (t["publication"] or {}).get("url")} & later_paths
    ]
    broken = next(t for t in reachable if not t["publication"])
    overrides = {"/sitemaps/sitemap-1.xml": 500, broken["url"]: 500}
    with serve_site(records=60, seed=9, per_sitemap=20, status_overrides=overrides) as site:
        done = scrapy_crawl(
            url, f"sitemap={site.base_url}/sitemap.xml", settings={"RETRY_TIMES": "0"}
        )
    # The failed sitemap (an entry point) and the failed record page: exit 3.
    assert done.returncode == 3, done.stderr[-3000:]
    log = done.stderr
    assert "Giving up on" in log
    assert "Entry point failed: sitemap" in log
    engine = create_engine_for(url)
    try:
        with Session(engine) as session:
            stored = set(session.scalars(select(models.Record.ncj_number)))
            run = session.scalars(select(models.CrawlRun)).one()
    finally:
        engine.dispose()
    assert stored == {t["ncj_number"] for t in reachable} - {broken["ncj_number"]}
    assert run.errors == 2
    assert len(run.stats["harvester/failed_urls"]) == 2
    assert run.stats["harvester/failed_entry_points"] == [
        f"sitemap {site.base_url}/sitemaps/sitemap-1.xml: fetch_failed (answered HTTP 500)"
    ]
    assert len(run.alerts) == 2
    assert "sitemap-1.xml" in run.alerts[0]
    assert run.alerts[1].startswith("1 record page(s) could not be fetched (1 fetch_failed)")
