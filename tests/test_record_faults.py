"""Faults at record URLs (tests/faultserver.py): each leaves a gap with its reason in the
ledger, the run says so where a page is missing (exit 3), and one further run without the
fault stores every record. Real `scrapy crawl` processes on a new SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for
from harvester.urls import canonical_url
from tests.faultserver import FaultServer
from tests.test_sitemap_faults import crawl_run, last_run, stored


def gap(database: str, url: str) -> tuple[str | None, int]:
    engine = create_engine_for(database)
    try:
        with Session(engine) as session:
            row = session.scalars(
                select(models.RecordUrl).where(models.RecordUrl.url == canonical_url(url))
            ).one()
            return row.gap_reason, row.gap_attempts
    finally:
        engine.dispose()


def expected(site: FaultServer) -> set[int]:
    return {t["ncj_number"] for t in site.truth() if t["kind"] == "record"}


def a_record(site: FaultServer) -> dict[str, Any]:
    return next(t for t in site.truth() if t["kind"] == "record" and not t["publication"])


CAPTCHA = b"<html><body><h1>Are you a robot?</h1><form><input name=c></form></body></html>"
MAINTENANCE = b"<html><body><p>The site is down for maintenance.</p></body></html>"


@pytest.mark.parametrize(
    ("fault", "reason", "exit_status"),
    [
        ({"body": b""}, "not_a_record", 0),  # 200 with an empty body
        ({"body": CAPTCHA}, "not_a_record", 0),
        ({"body": MAINTENANCE}, "not_a_record", 0),
        ({"status": 500}, "fetch_failed", 3),
        ({"delay": 3.0}, "timeout", 3),
        ({"drop": True}, "fetch_failed", 3),
        ({"truncate": 200}, "data_loss", 3),
    ],
    ids=["empty", "captcha", "maintenance", "500", "timeout", "dropped", "partial"],
)
def test_a_record_page_fault_is_a_gap_healed_by_the_next_run(
    fault_site: FaultServer,
    tmp_path: Path,
    fault: dict[str, Any],
    reason: str,
    exit_status: int,
) -> None:
    database = f"sqlite:///{tmp_path / 'faults.sqlite'}"
    record = a_record(fault_site)
    path = record["url"].removeprefix(fault_site.url(""))
    fault_site.fault(path, **fault)

    first = crawl_run(database, fault_site, DOWNLOAD_TIMEOUT="1")
    assert first.returncode == exit_status, first.stderr[-3000:]
    assert stored(database) == expected(fault_site) - {record["ncj_number"]}
    assert gap(database, record["url"]) == (reason, 1)

    fault_site.clear_faults()
    second = crawl_run(database, fault_site)
    assert second.returncode == 0, second.stderr[-3000:]
    assert stored(database) == expected(fault_site)
    assert gap(database, record["url"]) == (None, 0)
    assert last_run(database).stats["harvester/gap_retries"] >= 1


def test_a_page_that_drops_out_of_its_sitemap_is_rechecked_and_withdrawn(
    fault_site: FaultServer, tmp_path: Path
) -> None:
    """On the live site a withdrawal is a page that leaves its sitemap and answers 404: a
    default run (no full=1) finds it, and the runs after it count the streak."""
    database = f"sqlite:///{tmp_path / 'withdrawn.sqlite'}"
    record = a_record(fault_site)
    path = record["url"].removeprefix(fault_site.url(""))
    assert crawl_run(database, fault_site).returncode == 0
    sitemap = next(
        request.path
        for request in fault_site.requests
        if request.path.startswith("/sitemaps/")
        and record["url"] in _body(fault_site, request.path)
    )
    fault_site.fault(sitemap, rewrite=lambda body: _without(body, record["url"]))
    fault_site.fault(path, status=404)
    settings = {
        "HARVESTER_WITHDRAW_AFTER_RUNS": "2",
        "HARVESTER_WITHDRAW_MIN_INTERVAL": "0",
        # This site's index keeps the sitemap's lastmod (the newest entry's) when an entry
        # goes, so a run that trusts it would not read the sitemap at all; the revalidation
        # share is what finds such a page then (test_self_healing).
        "HARVESTER_SKIP_UNCHANGED_SITEMAPS": "0",
    }
    for _ in range(2):
        fault_site.clear_requests()
        done = crawl_run(database, fault_site, **settings)
        assert done.returncode == 0, done.stderr[-3000:]
        assert fault_site.requested(path)
    engine = create_engine_for(database)
    try:
        with Session(engine) as session:
            kept = session.get(models.Record, record["ncj_number"])
            assert kept is not None  # a tombstone, never a delete
            assert kept.withdrawn_at is not None
    finally:
        engine.dispose()


def _body(site: FaultServer, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(site.url(path)) as answer:  # loopback only
        return answer.read().decode("utf-8")


def _without(body: bytes, url: str) -> bytes:
    text = body.decode("utf-8")
    start = text.index(f"<url><loc>{url}</loc>")
    end = text.index("</url>", start) + len("</url>")
    return (text[:start] + text[end:]).encode("utf-8")


def test_an_alias_listed_beside_its_target_gets_state_and_costs_no_body(
    fault_site: FaultServer, tmp_path: Path
) -> None:
    """A legacy URL that redirects to a page the same run asks for (a legacy sitemap beside
    the current one) was dropped by Scrapy's duplicate filter, so it never got URL state and
    came back whole on every run. Now it is answered, and a re-check costs a redirect and a
    304."""
    database = f"sqlite:///{tmp_path / 'alias.sqlite'}"
    generated = fault_site.site
    index = next(i for i in range(generated.records) if generated.paths(i)["current"])
    paths = generated.paths(index)
    alias, target = paths["legacy"], paths["current"]
    assert alias is not None
    assert target is not None

    def listing_both(body: bytes) -> bytes:
        entry = f"<url><loc>{fault_site.url(alias)}</loc></url>"
        return body.replace(b"</urlset>", entry.encode() + b"</urlset>")

    sitemaps = [r.path for r in _requests_after(fault_site, database)]
    first_sitemap = next(path for path in sitemaps if target in _body(fault_site, path))
    fault_site.fault(first_sitemap, rewrite=listing_both)
    fault_site.clear_requests()
    sitemap = f"sitemap={fault_site.url('/sitemap.xml')}"
    done = crawl_run(database, fault_site, sitemap, "full=1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert gap(database, fault_site.url(alias)) == (None, 0)  # it has URL state now
    fault_site.clear_requests()
    assert crawl_run(database, fault_site, sitemap, "full=1").returncode == 0
    answers = [(r.target, r.status) for r in fault_site.requests if r.target in (alias, target)]
    assert sorted(answers) == sorted([(alias, 301), (target, 304), (target, 304)])


def _requests_after(site: FaultServer, database: str) -> list[Any]:
    """The sitemaps a first, plain crawl read."""
    assert crawl_run(database, site).returncode == 0
    return [r for r in site.requests if r.path.startswith("/sitemaps/")]
