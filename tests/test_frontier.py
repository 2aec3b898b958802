"""The frontier: which record pages a run requests, and its sitemap ledger (real SQLite files;
the crawls that use it are in test_incremental.py and test_sitemap_faults.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scrapy.settings import Settings
from sqlalchemy import Engine

from harvester import settings as project_settings
from harvester.db import ensure_schema
from harvester.entrypoints import Scope
from harvester.frontier import GAP_PRIORITY, REVALIDATION_PRIORITY, Frontier
from harvester.items import PageVisit
from harvester.store import start_run
from harvester.urlstate import read_sitemaps, save_sitemaps, write_url_states
from tests.support import fixture_records, store_records

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
SITE = "http://127.0.0.1:8000"
SITEMAP = f"{SITE}/sitemap-1.xml"


def page(number: int) -> str:
    return f"{SITE}/ncjrs/virtual-library/abstracts/record-{number}"


def stored(engine: Engine, *visits: PageVisit) -> None:
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        write_url_states(connection, list(visits), NOW - timedelta(days=1))


def record_visit(number: int, **changes: object) -> PageVisit:
    values: dict[str, object] = {
        "url": page(number),
        "status": 200,
        "fetched_at": NOW - timedelta(days=1),
        "kind": "record",
        "etag": f'"v{number}"',
        "sitemap_lastmod": datetime(2026, 1, 1, tzinfo=UTC),
        "sitemap_url": SITEMAP,
        "ncj_number": number,
    }
    return PageVisit(**{**values, **changes})  # type: ignore[arg-type]


def frontier(
    engine: Engine, scope: Scope | None = None, full: bool = False, **settings: object
) -> Frontier:
    ensure_schema(engine, auto_migrate=True)
    values = Settings()
    values.setmodule(project_settings, priority="project")
    for name, value in settings.items():
        values.set(name, value, priority="cmdline")
    return Frontier.from_settings(values, engine, scope or Scope.of([SITEMAP]), full=full)


def test_sitemap_entries_new_or_changed_are_requested_once_unchanged_are_not(
    engine: Engine,
) -> None:
    stored(engine, record_visit(1), record_visit(2))
    urls = frontier(engine)
    entries = [
        (page(1), "2026-01-01"),  # not newer than stored: skipped
        (page(2), "2026-02-01"),  # changed: asked conditionally
        (page(3), "2026-01-01"),  # never stored: asked
        (page(3), "2026-01-01"),  # listed twice: asked once
    ]
    requests = urls.sitemap_requests(SITEMAP, entries)
    assert [(r.url, r.headers) for r in requests] == [
        (page(2), {"If-None-Match": '"v2"'}),
        (page(3), {}),
    ]
    assert requests[0].was_record
    assert not requests[1].was_record
    assert {r.from_sitemap for r in requests} == {SITEMAP}
    assert requests[1].sitemap_lastmod == datetime(2026, 1, 1, tzinfo=UTC)
    assert urls.sitemap_requests(f"{SITE}/sitemap-2.xml", [(page(3), None)]) == []


def test_conditional_requests_can_be_turned_off(engine: Engine) -> None:
    stored(engine, record_visit(1))
    urls = frontier(engine, HARVESTER_CONDITIONAL_REQUESTS=False)
    [request] = urls.named_requests([page(1)])
    assert request.headers == {}


def test_a_record_dropped_from_a_sitemap_read_to_the_end_is_rechecked(engine: Engine) -> None:
    stored(engine, record_visit(1), record_visit(2))
    urls = frontier(engine)
    requests = urls.sitemap_requests(SITEMAP, [(page(1), "2026-01-01")])
    [dropped] = requests
    assert dropped.url == page(2)
    assert dropped.sitemap_url == ""  # its answer clears the page's sitemap
    assert dropped.was_record
    assert dropped.from_sitemap == SITEMAP


def test_a_damaged_sitemap_does_not_make_its_missing_records_look_dropped(
    engine: Engine,
) -> None:
    stored(engine, record_visit(1), record_visit(2))
    urls = frontier(engine)
    urls.unreadable(SITEMAP)
    assert urls.sitemap_requests(SITEMAP, [(page(1), "2026-01-01")]) == []


def test_a_sitemap_is_complete_when_every_page_it_asked_for_was_answered(
    engine: Engine,
) -> None:
    urls = frontier(engine)
    urls.index_lists([(SITEMAP, "2026-03-01"), (f"{SITE}/sitemap-2.xml", "2026-03-01")])
    assert list(urls.sitemaps_waiting) == [SITEMAP, f"{SITE}/sitemap-2.xml"]
    assert urls.next_sitemap() == SITEMAP
    requests = urls.sitemap_requests(SITEMAP, [(page(1), None), (page(2), None)])
    assert len(requests) == 2
    urls.answered(SITEMAP)
    assert urls.completed_sitemaps() == []  # a page is still outstanding
    urls.answered(SITEMAP)
    [done] = urls.completed_sitemaps()
    assert (done.url, done.lastmod, done.entries) == (
        SITEMAP,
        datetime(2026, 3, 1, tzinfo=UTC),
        2,
    )
    assert urls.sitemaps_read() == [SITEMAP]
    assert urls.sitemaps_to_forget() == []


def test_a_failed_or_gone_page_makes_its_sitemap_read_again(engine: Engine) -> None:
    urls = frontier(engine)
    urls.index_lists([(SITEMAP, "2026-03-01")])
    urls.sitemap_requests(SITEMAP, [(page(1), None), (page(2), None)])
    urls.answered(SITEMAP)
    urls.failed(SITEMAP)
    assert urls.completed_sitemaps() == []
    assert urls.sitemaps_to_forget() == [SITEMAP]

    gone = frontier(engine)
    gone.index_lists([(SITEMAP, "2026-03-01")])
    gone.sitemap_requests(SITEMAP, [(page(1), None)])
    gone.answered(SITEMAP)
    gone.still_gone(SITEMAP, was_record=False)  # a page never stored: nothing to withdraw
    assert len(gone.completed_sitemaps()) == 1
    gone.still_gone(SITEMAP, was_record=True)
    assert gone.completed_sitemaps() == []
    assert gone.sitemaps_to_forget() == [SITEMAP]


def test_an_index_entry_unchanged_since_it_was_completed_is_not_read(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        save_sitemaps(connection, [(SITEMAP, datetime(2026, 3, 1, tzinfo=UTC), 7)], NOW, None)
    urls = frontier(engine)
    urls.index_lists([(SITEMAP, "2026-03-01"), (f"{SITE}/sitemap-2.xml", None)])
    assert list(urls.sitemaps_waiting) == [f"{SITE}/sitemap-2.xml"]
    assert urls.stats is None  # counted only in a crawl

    # Newer in the index, or a full re-check: read again.
    urls.index_lists([(SITEMAP, "2026-03-02")])
    full = frontier(engine, full=True)
    full.index_lists([(SITEMAP, "2026-03-01")])
    assert list(full.sitemaps_waiting) == [SITEMAP]
    with engine.connect() as connection:
        assert read_sitemaps(connection, [SITEMAP])[SITEMAP][1] == 7


def test_gaps_and_gone_records_come_first_on_the_runs_hosts_only(engine: Engine) -> None:
    gap = PageVisit(
        url=page(5),
        status=503,
        fetched_at=NOW - timedelta(days=1),
        kind="failed",
        gap_reason="fetch_failed",
        gap_detail="answered HTTP 503",
    )
    offsite_gap = PageVisit(
        url="http://elsewhere.example/ncjrs/virtual-library/abstracts/record-6",
        status=0,
        fetched_at=NOW - timedelta(days=1),
        kind="failed",
        gap_reason="timeout",
    )
    stored(engine, gap, offsite_gap, record_visit(7, status=404, kind="gone"))
    urls = frontier(engine)
    requests = urls.ledger_requests()
    assert [(r.url, r.priority, r.headers) for r in requests] == [
        (page(5), GAP_PRIORITY, {}),  # a gap is fetched without validators
        (page(7), 0, {"If-None-Match": '"v7"'}),
    ]
    # Asked once: the sitemap that lists them later does not ask again.
    assert urls.sitemap_requests(SITEMAP, [(page(5), None), (page(7), None)]) == []


def test_a_listing_stops_paging_at_a_page_of_stored_records(engine: Engine) -> None:
    stored(engine, record_visit(1), record_visit(2))
    urls = frontier(engine)
    requests, keep_paging = urls.listing_requests([page(1), page(2)])
    assert requests == []
    assert not keep_paging
    requests, keep_paging = urls.listing_requests([page(1), page(3)])
    assert [r.url for r in requests] == [page(3)]
    assert keep_paging


def test_revalidation_takes_the_stored_records_due_last(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    records = fixture_records()
    store_records(engine, records, now=datetime(2026, 1, 1, tzinfo=UTC))
    start_run(engine, "ncjrs", {})  # the previous run: a new database re-checks nothing
    hosts = Scope.of([record.source_url for record in records])
    overdue = frontier(engine, hosts, HARVESTER_REVALIDATE_DAYS=0.5).revalidation_requests()
    assert sorted(r.url for r in overdue) == sorted(r.source_url for r in records)
    assert {r.priority for r in overdue} == {REVALIDATION_PRIORITY}
    # Only on the run's hosts; none due in a longer period; 0 turns the re-check off.
    assert frontier(engine, HARVESTER_REVALIDATE_DAYS=0.5).revalidation_requests() == []
    assert frontier(engine, hosts, HARVESTER_REVALIDATE_DAYS=3650).revalidation_requests() == []
    assert frontier(engine, hosts, HARVESTER_REVALIDATE_DAYS=0).revalidation_requests() == []


def test_sitemaps_are_handed_out_one_ahead_of_the_pages_being_answered(engine: Engine) -> None:
    urls = frontier(engine)
    second, third, fourth = (f"{SITE}/sitemap-{n}.xml" for n in (2, 3, 4))
    urls.wait_for([SITEMAP, second, third, fourth])
    assert urls.next_sitemap() == SITEMAP
    assert urls.next_sitemap() == second  # one ahead
    assert urls.next_sitemap() is None  # a third waits for one of them to be answered
    urls.sitemap_requests(SITEMAP, [(page(1), None), (page(2), None)])
    urls.sitemap_requests(second, [(page(3), None)])
    assert urls.next_sitemap() is None
    assert not urls.answered(SITEMAP)  # a page of it is still outstanding
    assert urls.failed(SITEMAP)  # its last page: the next may be read
    assert urls.next_sitemap() == third
    assert urls.sitemap_requests(third, [(page(1), None)]) == []  # asked already: done
    assert urls.next_sitemap(force=False) == fourth
    urls.sitemap_failed(fourth)  # could not be fetched: nothing of it to wait for
    assert urls.answered(second)


def test_an_idle_crawl_reads_the_next_sitemap_whatever_is_outstanding(engine: Engine) -> None:
    urls = frontier(engine)
    urls.wait_for([SITEMAP, f"{SITE}/sitemap-2.xml", f"{SITE}/sitemap-3.xml"])
    urls.next_sitemap()
    urls.next_sitemap()
    assert urls.next_sitemap() is None
    assert urls.next_sitemap(force=True) == f"{SITE}/sitemap-3.xml"
