"""One bad entry point never ends the crawl (issue 10, deliverables 3 and 4).

Each test is a real `scrapy crawl ncjrs` against the fault server (tests/faultserver.py) on a
new SQLite file: with the fault, the records the rest of the site lists are stored, the run
exits 3 and names the entry point in crawl_runs.alerts; once the fault is gone, one more run
stores every record and exits 0.

The site (``fault_site``): 20 records, sitemap.xml indexes sitemap-1 .. sitemap-4.
"""

from __future__ import annotations

import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for
from harvester.localsite import Site
from tests.faultserver import FaultServer, broken_xml, entity_bomb, fault_server
from tests.support import scrapy_crawl

FAST = {"RETRY_TIMES": "0", "HARVESTER_PROGRESS_INTERVAL": "0"}
INDEX = "/sitemap.xml"
FIRST = "/sitemaps/sitemap-1.xml"


def crawl_run(
    database: str, site: FaultServer, *arguments: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    return scrapy_crawl(
        database,
        *(arguments or (f"sitemap={site.url(INDEX)}",)),
        settings={**FAST, **settings},
        timeout=120,
    )


def stored(database: str) -> set[int]:
    engine = create_engine_for(database)
    try:
        with Session(engine) as session:
            return set(session.scalars(select(models.Record.ncj_number)))
    finally:
        engine.dispose()


def last_run(database: str) -> models.CrawlRun:
    engine = create_engine_for(database)
    try:
        with Session(engine) as session:
            run = session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id.desc()))
            return run.first()  # type: ignore[return-value]
    finally:
        engine.dispose()


def listed_by(site: Site, paths: set[str]) -> set[int]:
    """NCJ numbers of the storable records one of whose pages is among ``paths``."""
    return {
        t["ncj_number"]
        for t in site.truth("")
        if t["kind"] == "record" and {t["url"], (t["publication"] or {}).get("url")} & paths
    }


def sitemap_paths(site: Site, *numbers: int) -> set[str]:
    per = site.options.per_sitemap
    entries = site.sitemap_entries()
    return {
        site.entry_path(entry)
        for number in numbers
        for entry in entries[(number - 1) * per : number * per]
    }


def every_record(site: Site) -> set[int]:
    return {t["ncj_number"] for t in site.truth("") if t["kind"] == "record"}


def assert_failed(
    done: subprocess.CompletedProcess[str], database: str, *texts: str
) -> dict[str, Any]:
    """The run exited 3 with an entry-point alert naming all ``texts``; returns its stats."""
    assert done.returncode == 3, done.stderr[-3000:]
    run = last_run(database)
    alerts = [a for a in run.alerts or [] if "entry point(s)" in a]
    assert len(alerts) == 1, run.alerts
    for text in texts:
        assert text in alerts[0], alerts[0]
    return dict(run.stats or {})


def assert_heals(database: str, site: FaultServer, *arguments: str) -> None:
    """With the fault gone, one more run stores every record and passes its checks."""
    site.clear_faults()
    done = crawl_run(database, site, *arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    assert last_run(database).alerts == []
    assert stored(database) == every_record(site.site)


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'harvester.sqlite'}"


def _index_child_fault(
    fault_site: FaultServer, tmp_path: Path, reason: str, **settings: str
) -> dict[str, Any]:
    database = db(tmp_path)
    done = crawl_run(database, fault_site, **settings)
    stats = assert_failed(done, database, f"sitemap {fault_site.url(FIRST)}: {reason}")
    assert stored(database) == listed_by(fault_site.site, sitemap_paths(fault_site.site, 2, 3, 4))
    assert stats["harvester/entry_points_failed"] == 1
    assert stats[f"harvester/entry_points_failed/{reason.split()[0]}"] == 1
    assert_heals(database, fault_site)
    return stats


# --- A sitemap index whose first sitemap fails: the others are read ---------------------------


def test_index_entry_404(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, status=404)
    _index_child_fault(fault_site, tmp_path, "fetch_failed (answered HTTP 404)")


def test_index_entry_500(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, status=500)
    _index_child_fault(fault_site, tmp_path, "fetch_failed (answered HTTP 500)")


def test_index_entry_blocked_by_robots(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots("User-agent: *\nDisallow: /sitemaps/sitemap-1.xml\n")
    stats = _index_child_fault(fault_site, tmp_path, "robots_blocked")
    assert stats["harvester/ignored/robots"] == 1


def _index_pointing(site: FaultServer, replacement: str) -> None:
    site.fault(
        INDEX, rewrite=lambda body: body.replace(site.url(FIRST).encode(), replacement.encode())
    )


def test_index_entry_on_another_host(fault_site: FaultServer, tmp_path: Path) -> None:
    offsite = f"http://localhost:{fault_site.port}{FIRST}"  # same server, another host name
    _index_pointing(fault_site, offsite)
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert_failed(done, database, f"sitemap {offsite}: offsite")
    assert fault_site.requested(FIRST) == 0
    assert stored(database) == listed_by(fault_site.site, sitemap_paths(fault_site.site, 2, 3, 4))
    assert_heals(database, fault_site)


def test_index_entry_on_another_port(fault_site: FaultServer, tmp_path: Path) -> None:
    with fault_server(fault_site.site) as other:
        _index_pointing(fault_site, other.url(FIRST))
        database = db(tmp_path)
        done = crawl_run(database, fault_site)
        assert_failed(done, database, f"sitemap {other.url(FIRST)}: offsite")
        assert other.requests == []
    assert stored(database) == listed_by(fault_site.site, sitemap_paths(fault_site.site, 2, 3, 4))
    assert_heals(database, fault_site)


def test_index_entry_not_http(fault_site: FaultServer, tmp_path: Path) -> None:
    ftp = f"ftp://127.0.0.1:{fault_site.port}{FIRST}"
    _index_pointing(fault_site, ftp)
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert_failed(done, database, f"sitemap {ftp}: not_http")
    assert stored(database) == listed_by(fault_site.site, sitemap_paths(fault_site.site, 2, 3, 4))
    assert_heals(database, fault_site)


def test_index_entry_gzip_bomb(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, gzip_bomb=65 * 1024 * 1024)  # a .xml.gz body: inflated by the spider
    _index_child_fault(fault_site, tmp_path, "too_large (inflates beyond")


def test_index_entry_gzip_bomb_content_encoding(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, gzip_bomb=65 * 1024 * 1024, content_encoding=True)
    stats = _index_child_fault(fault_site, tmp_path, "too_large")
    assert stats["harvester/ignored/too_large"] == 1


def test_index_entry_times_out(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, delay=3.0)
    _index_child_fault(fault_site, tmp_path, "timeout", DOWNLOAD_TIMEOUT="1")


def test_index_entry_drops_the_connection(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, drop=True)
    _index_child_fault(fault_site, tmp_path, "fetch_failed")


def test_index_entry_partial_body(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, truncate=200)
    _index_child_fault(fault_site, tmp_path, "data_loss")


def test_index_entry_redirect_loop(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, redirect="/loop-a")
    fault_site.fault("/loop-a", redirect="/loop-b")
    fault_site.fault("/loop-b", redirect="/loop-a")
    stats = _index_child_fault(fault_site, tmp_path, "redirect_loop")
    assert stats["harvester/ignored/redirect_loop"] == 1  # /loop-a again: a loop


def test_index_entry_redirect_chain_too_long(fault_site: FaultServer, tmp_path: Path) -> None:
    chain = [FIRST] + [f"/hop-{n}" for n in range(7)]  # REDIRECT_MAX_TIMES is 5
    for here, there in pairwise(chain):
        fault_site.fault(here, redirect=there)
    stats = _index_child_fault(fault_site, tmp_path, "redirect_loop")
    assert stats["harvester/ignored/redirect_limit"] == 1


def test_index_entry_redirects_to_another_port(fault_site: FaultServer, tmp_path: Path) -> None:
    with fault_server(fault_site.site) as other:
        fault_site.fault(FIRST, redirect=other.url(FIRST))
        _index_child_fault(fault_site, tmp_path, "offsite_redirect")
        assert other.requests == []


def test_index_entry_not_xml(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(FIRST, body=b"<html><body>Site maintenance</body></html>")
    _index_child_fault(fault_site, tmp_path, "not_a_sitemap")


# --- Damaged sitemaps: what parses is used, the sitemap is read again -------------------------


def _damaged(fault_site: FaultServer, tmp_path: Path, rewrite: Any, reason: str) -> None:
    second = "/sitemaps/sitemap-2.xml"
    fault_site.fault(second, rewrite=rewrite)
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert_failed(done, database, f"sitemap {fault_site.url(second)}: {reason}")
    site = fault_site.site
    per = site.options.per_sitemap
    before_damage = {site.entry_path(e) for e in site.sitemap_entries()[per : per + 2]}
    expected = listed_by(site, sitemap_paths(site, 1, 3, 4) | before_damage)
    assert stored(database) == expected
    assert expected < every_record(site)  # the damage did hide records
    assert_heals(database, fault_site)


def test_entity_bomb(fault_site: FaultServer, tmp_path: Path) -> None:
    _damaged(fault_site, tmp_path, entity_bomb, "entity_declarations")


def test_broken_xml(fault_site: FaultServer, tmp_path: Path) -> None:
    _damaged(fault_site, tmp_path, broken_xml, "broken_xml")


# --- The entry point itself --------------------------------------------------------------------


def test_entry_sitemap_404(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.fault(INDEX, status=404)
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert_failed(done, database, f"sitemap {fault_site.url(INDEX)}: fetch_failed")
    assert stored(database) == set()
    assert_heals(database, fault_site)


def test_robots_disallows_everything(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots(f"User-agent: *\nDisallow: /\n\nSitemap: {fault_site.url(INDEX)}\n")
    database = db(tmp_path)
    entry = f"sitemap={fault_site.url('/robots.txt')}"
    done = crawl_run(database, fault_site, entry)
    stats = assert_failed(done, database, "robots_blocked")
    assert stored(database) == set()
    assert stats["harvester/ignored/robots"] == 1  # the index (robots.txt is always allowed)
    assert_heals(database, fault_site, entry)


def test_robots_txt_500(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots("down", status=500)  # RFC 9309: disallow everything
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert_failed(done, database, f"sitemap {fault_site.url(INDEX)}: robots_blocked")
    assert "robots.txt could not be read (5xx or network error)" in str(last_run(database).alerts)
    assert stored(database) == set()
    assert_heals(database, fault_site)


def test_robots_txt_404(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots("not here", status=404)
    database = db(tmp_path)
    entry = f"sitemap={fault_site.url('/robots.txt')}"
    done = crawl_run(database, fault_site, entry)
    assert_failed(done, database, f"sitemap {fault_site.url('/robots.txt')}: fetch_failed")
    assert stored(database) == set()
    assert_heals(database, fault_site, entry)


def test_robots_txt_without_sitemaps(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots("User-agent: *\nAllow: /\n")
    database = db(tmp_path)
    entry = f"sitemap={fault_site.url('/robots.txt')}"
    done = crawl_run(database, fault_site, entry)
    assert_failed(done, database, "no_sitemaps")
    assert stored(database) == set()
    assert_heals(database, fault_site, entry)


def test_listing_page_fails(tmp_path: Path) -> None:
    with fault_server(Site(records=20, seed=3, per_sitemap=6, page_size=8)) as fault_site:
        _listing_page_fails(fault_site, tmp_path)


def _listing_page_fails(fault_site: FaultServer, tmp_path: Path) -> None:
    site = fault_site.site
    listing = "/ncjrs/virtual-library/abstracts"
    fault_site.fault(f"{listing}?page=1", status=404)
    database = db(tmp_path)
    entry = f"listing={fault_site.url(listing)}"
    done = crawl_run(database, fault_site, entry)
    assert_failed(done, database, f"listing {fault_site.url(listing)}?page=1: fetch_failed")
    page_size = site.options.page_size
    assert stored(database) == {
        t["ncj_number"] for t in site.truth("") if t["kind"] == "record" and t["index"] < page_size
    }
    # Listings stop paging at a page of stored records; full=1 pages through them all.
    assert_heals(database, fault_site, entry, "full=1")


def test_nothing_stored_although_pages_were_listed(fault_site: FaultServer, tmp_path: Path) -> None:
    fault_site.robots(
        "User-agent: *\nDisallow: /ncjrs/virtual-library/abstracts/\nDisallow: /App/\n"
    )
    listing = "/ncjrs/virtual-library/abstracts"
    database = db(tmp_path)
    done = scrapy_crawl(database, f"listing={fault_site.url(listing)}", settings=FAST, timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    run = last_run(database)
    assert stored(database) == set()
    listed = run.stats["harvester/listed_record_pages"]
    assert listed == fault_site.site.records  # one listing page lists them all
    assert run.alerts == [
        f"the entry points listed {listed} record page(s) but the run stored none of them "
        "(see harvester/ignored and harvester/errors in crawl_runs.stats)",
        f"{listed} record page(s) could not be fetched ({listed} robots_blocked): the next run "
        "retries them first; `harvester coverage` lists every gap",
    ]
    assert run.stats["harvester/ignored/robots"] == listed
    assert done.stderr.count("Ignored (robots)") == listed


# --- Sitemap entries off the run's hosts and ports, or not http(s) ------------------------------


def test_sitemap_entries_stay_on_the_hosts_and_ports(
    fault_site: FaultServer, tmp_path: Path
) -> None:
    site = fault_site.site
    with fault_server(site) as other:
        first = sitemap_paths(site, 1)
        truth = next(
            t
            for t in site.truth("")
            if t["kind"] == "record" and not t["publication"] and t["url"] in first
        )
        moved = truth["url"]
        others = {fault_site.url(moved): other.url(moved)}

        def rewrite(body: bytes) -> bytes:
            for old, new in others.items():
                body = body.replace(f"<loc>{old}</loc>".encode(), f"<loc>{new}</loc>".encode())
            extra = (
                "<url><loc>ftp://127.0.0.1/x</loc></url><url><loc>javascript:void(0)</loc></url>"
                "<url><loc>mailto:a@b.c</loc></url></urlset>"
            )
            return body.replace(b"</urlset>", extra.encode())

        fault_site.fault(FIRST, rewrite=rewrite)
        database = db(tmp_path)
        done = crawl_run(database, fault_site)
        assert done.returncode == 0, done.stderr[-3000:]
        assert other.requests == []
    stats = last_run(database).stats
    assert stats["harvester/refused/offsite"] == 1
    assert stats["harvester/refused/not_http"] == 3
    assert stored(database) == every_record(site) - {truth["ncj_number"]}


def test_a_sitemap_listed_twice_does_not_break_the_chain(
    fault_site: FaultServer, tmp_path: Path
) -> None:
    # The second copy is dropped by the scheduler's duplicate filter, so no callback or errback
    # of it runs: the spider's request_dropped handler hands over to the next sitemap.
    first = f"<sitemap><loc>{fault_site.url(FIRST)}</loc></sitemap>"

    def listed_thrice(body: bytes) -> bytes:  # first, second and last in the index
        body = body.replace(b"<sitemap>", f"{first}<sitemap>".encode(), 1)
        return body.replace(b"</sitemapindex>", f"{first}</sitemapindex>".encode())

    fault_site.fault(INDEX, rewrite=listed_thrice)
    database = db(tmp_path)
    done = crawl_run(database, fault_site)
    assert done.returncode == 0, done.stderr[-3000:]
    run = last_run(database)
    assert run.alerts == []
    assert run.stats["harvester/ignored/duplicate"] == 2
    # The dropped copies hand over to the next sitemap themselves: left open, they held
    # back every sitemap after them until the crawl went idle.
    assert run.stats.get("harvester/sitemaps_read_when_idle", 0) == 0
    assert fault_site.requested(FIRST) == 1
    assert stored(database) == every_record(fault_site.site)


def test_sitemaps_are_read_one_ahead_of_the_pages_being_fetched(tmp_path: Path) -> None:
    """A sitemap is read only while at most one sitemap read before it has pages not answered
    yet: a large site's record requests are never all queued in memory at once, and every
    record is still stored. The first sitemap's pages answer slowly: before, the chain of
    sitemaps (each one's parse asks for the next) ran ahead of the pages meanwhile."""
    slow = 1.5
    with fault_server(Site(records=60, seed=3, per_sitemap=6)) as fault_site:
        site = fault_site.site
        for path in sitemap_paths(site, 1):
            fault_site.fault(path, delay=slow)
        database = db(tmp_path)
        local = {"AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0"}
        done = crawl_run(database, fault_site, CONCURRENT_REQUESTS="32", **local)
        assert done.returncode == 0, done.stderr[-3000:]
        assert stored(database) == every_record(site)
        requests = fault_site.requests
    sitemaps = -(-len(site.sitemap_entries()) // site.options.per_sitemap)
    assert sitemaps >= 8
    read_at = {r.path: r.time for r in requests if r.path.startswith("/sitemaps/")}
    assert len(read_at) == sitemaps
    first_answered = min(r.time for r in requests if r.target in sitemap_paths(site, 1)) + slow
    for number in range(3, sitemaps + 1):
        read = read_at[f"/sitemaps/sitemap-{number}.xml"]
        outstanding = {
            earlier
            for earlier in range(1, number)
            if (earlier == 1 and read < first_answered)
            or any(r.time > read for r in requests if r.target in sitemap_paths(site, earlier))
        }
        assert len(outstanding) <= 1, (number, outstanding)


def test_sitemaps_dropped_as_duplicates_do_not_hold_back_the_ones_after_them(
    tmp_path: Path,
) -> None:
    """Two sitemaps listed again in the index after they are read: the copies are dropped by
    the scheduler's duplicate filter, and neither their parse nor their errback runs. Left
    counted as being read, they held every later sitemap back until the crawl went idle (read
    one at a time by the spider_idle handler instead of one ahead of the pages)."""
    with fault_server(Site(records=60, seed=3, per_sitemap=6)) as fault_site:
        second = "/sitemaps/sitemap-2.xml"
        copies = "".join(
            f"<sitemap><loc>{fault_site.url(path)}</loc></sitemap>" for path in (FIRST, second)
        )

        def listed_twice(body: bytes) -> bytes:  # again after the fourth, once they are read
            entries = body.split(b"</sitemap>")
            entries[3] += b"</sitemap>" + copies.removesuffix("</sitemap>").encode()
            return b"</sitemap>".join(entries)

        fault_site.fault(INDEX, rewrite=listed_twice)
        database = db(tmp_path)
        local = {"AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0"}
        done = crawl_run(database, fault_site, **local)
        assert done.returncode == 0, done.stderr[-3000:]
        run = last_run(database)
        assert run.stats["harvester/ignored/duplicate"] == 2
        assert run.stats.get("harvester/sitemaps_read_when_idle", 0) == 0
        assert stored(database) == every_record(fault_site.site)
