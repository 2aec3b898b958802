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
