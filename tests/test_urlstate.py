"""URL state (record_urls): written from fetches, read back by canonical URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import ensure_schema
from harvester.items import PageVisit
from harvester.urls import canonical_url
from harvester.urlstate import Withdrawal, known_pages, write_url_states

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
LEGACY = "https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=78126"
CURRENT = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/some-record"


def visit(**changes: object) -> PageVisit:
    values: dict[str, object] = {
        "url": CURRENT,
        "status": 200,
        "fetched_at": NOW,
        "kind": "record",
        "redirect_urls": [LEGACY],
        "etag": '"v1"',
        "last_modified": "Wed, 01 May 2024 00:00:00 GMT",
        "sitemap_lastmod": datetime(2024, 5, 1, tzinfo=UTC),
        "ncj_number": 78126,
    }
    return PageVisit(**{**values, **changes})  # type: ignore[arg-type]


def rows(engine: Engine) -> dict[str, models.RecordUrl]:
    with Session(engine) as session:
        return {row.url: row for row in session.scalars(select(models.RecordUrl))}


def insert_record(engine: Engine, number: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            models.Record.__table__.insert(),
            {
                "ncj_number": number,
                "title": "T",
                "layout": "current",
                "source_url": CURRENT,
                "first_seen_at": NOW,
                "last_seen_at": NOW,
                "last_changed_at": NOW,
                "content_hash": "0" * 64,
                "document_urls": [],
                "extra_fields": {},
            },
        )


def withdrawn_at(engine: Engine, number: int) -> datetime | None:
    with Session(engine) as session:
        record = session.get(models.Record, number)
        assert record is not None
        return record.withdrawn_at


def test_a_redirected_fetch_records_both_urls_canonically(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        write_url_states(connection, [visit()], NOW)
    stored = rows(engine)
    legacy = "https://ncjrs.gov/app/publications/abstract.aspx?id=78126"
    current = "https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"
    assert set(stored) == {legacy, current}
    assert stored[current].redirect_chain == [LEGACY]
    assert stored[legacy].redirect_chain == []
    assert {row.ncj_number for row in stored.values()} == {78126}
    assert stored[current].etag == '"v1"'
    with engine.connect() as connection:
        variant = "https://ncjrs.gov./App/Publications/Abstract.aspx?id=78126"
        known = known_pages(connection, [canonical_url(variant)])
    assert known[legacy].sitemap_lastmod == datetime(2024, 5, 1, tzinfo=UTC)
    assert known[legacy].etag == '"v1"'


def test_later_fetches_update_state_and_keep_first_seen(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    later = NOW + timedelta(days=1)
    with engine.begin() as connection:
        write_url_states(connection, [visit()], NOW)
    with engine.begin() as connection:
        # The same URL twice in one batch, once as a soft 404 without a number: last one wins,
        # the number it had stays.
        write_url_states(
            connection,
            [
                visit(etag='"v2"'),
                visit(kind="soft_404", ncj_number=None, redirect_urls=[], etag=None),
            ],
            later,
        )
    row = rows(engine)["https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"]
    # A soft 404 is not the page being there: last_seen_at stays, a withdrawal streak starts.
    assert (row.first_seen_at, row.last_seen_at) == (NOW, NOW)
    assert (row.gone_runs, row.gone_since) == (1, later)
    assert row.kind == "soft_404"
    assert row.ncj_number == 78126
    assert row.etag is None  # what the last answer said


def test_a_304_touches_the_url_and_its_record_only(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    insert_record(engine, 78126)
    insert_record(engine, 5)
    with engine.begin() as connection:
        write_url_states(connection, [visit(sitemap_lastmod=None)], NOW)
    later = NOW + timedelta(hours=3)
    with engine.begin() as connection:
        not_modified = write_url_states(
            connection, [visit(status=304, kind=None, etag=None, redirect_urls=[])], later
        )
    assert not_modified.not_modified == 1
    row = rows(engine)["https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"]
    assert (row.last_status, row.last_seen_at, row.kind, row.etag) == (304, later, "record", '"v1"')
    with Session(engine) as session:
        seen = dict(
            session.execute(select(models.Record.ncj_number, models.Record.last_seen_at)).all()
        )
    assert seen == {78126: later, 5: NOW}


def test_a_record_is_withdrawn_when_all_its_urls_stay_gone_and_restored_when_seen(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    insert_record(engine, 78126)
    policy = Withdrawal(after_runs=3, min_interval=timedelta(hours=12))
    with engine.begin() as connection:
        write_url_states(connection, [visit()], NOW, policy)

    def gone(at: datetime) -> int:
        with engine.begin() as connection:
            answer = visit(status=404, kind="gone", etag=None, last_modified=None)
            return write_url_states(connection, [answer], at, policy).withdrawn

    day = timedelta(days=1)
    assert gone(NOW + day) == 0
    assert gone(NOW + day + timedelta(hours=1)) == 0  # too soon after the last: not counted
    assert gone(NOW + 2 * day) == 0
    assert withdrawn_at(engine, 78126) is None
    assert gone(NOW + 3 * day) == 1  # third run in a row, for both URLs
    assert withdrawn_at(engine, 78126) == NOW + 3 * day
    row = rows(engine)["https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"]
    assert (row.gone_runs, row.gone_since, row.kind, row.last_status) == (3, NOW + day, "gone", 404)

    with engine.begin() as connection:
        back = write_url_states(connection, [visit()], NOW + 4 * day, policy)
    assert back.reappeared == 1
    assert withdrawn_at(engine, 78126) is None
    assert {row.gone_runs for row in rows(engine).values()} == {0}


def test_a_record_with_one_live_url_is_not_withdrawn(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    insert_record(engine, 78126)
    policy = Withdrawal(after_runs=1, min_interval=timedelta(0))
    other = "https://nij.ojp.gov/library/publications/some-record"
    with engine.begin() as connection:
        write_url_states(connection, [visit(), visit(url=other, redirect_urls=[])], NOW, policy)
        answer = visit(status=410, kind="gone", etag=None)
        assert write_url_states(connection, [answer], NOW, policy).withdrawn == 0
    assert withdrawn_at(engine, 78126) is None


def test_withdrawal_end_to_end_never_counts_server_errors(
    database_url: str, engine_for: Engine
) -> None:
    from harvester.localsite import serve_site
    from tests.support import scrapy_crawl

    quick = {
        "HARVESTER_WITHDRAW_AFTER_RUNS": "2",
        "HARVESTER_WITHDRAW_MIN_INTERVAL": "0",
        "HARVESTER_BACKOFF_BASE": "0.05",  # the 503s pause the host; keep the pauses short
        "RETRY_TIMES": "1",
    }
    with serve_site(records=40, seed=12) as site:
        records = [t for t in site.truth() if t["kind"] == "record" and not t["publication"]]
        gone, failing = records[0], records[1]
        sitemap = f"sitemap={site.base_url}/sitemap.xml"

        def crawl(*arguments: str) -> None:
            done = scrapy_crawl(database_url, sitemap, *arguments, settings=quick)
            assert done.returncode in (0, 3), done.stderr[-3000:]

        crawl()
        path = site.url("")
        site.configure(
            statuses={
                gone["url"].removeprefix(path): 404,
                failing["url"].removeprefix(path): 503,
            }
        )
        crawl()  # incremental: the 404 page is not even asked for, nothing changes
        assert withdrawn_at(engine_for, gone["ncj_number"]) is None
        crawl("full=1")  # 404 once
        assert withdrawn_at(engine_for, gone["ncj_number"]) is None
        crawl()  # asked again without full=1, because it was gone: 404 twice -> withdrawn
        assert withdrawn_at(engine_for, gone["ncj_number"]) is not None
        crawl("full=1")
        assert withdrawn_at(engine_for, failing["ncj_number"]) is None  # 503s never count
        site.configure(statuses={})
        crawl()
    assert withdrawn_at(engine_for, gone["ncj_number"]) is None  # seen again: no tombstone
    with Session(engine_for) as session:
        record = session.get(models.Record, gone["ncj_number"])
        assert record is not None  # a tombstone is never a delete
