"""URL state (record_urls): written from fetches, read back by canonical URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import ensure_schema
from harvester.items import PageVisit
from harvester.urls import canonical_url
from harvester.urlstate import known_pages, write_url_states

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
    assert (row.first_seen_at, row.last_seen_at) == (NOW, later)
    assert row.kind == "soft_404"
    assert row.ncj_number == 78126
    assert row.etag is None  # what the last answer said


def test_a_304_touches_the_url_and_its_record_only(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        write_url_states(connection, [visit(sitemap_lastmod=None)], NOW)
        connection.execute(
            models.Record.__table__.insert(),
            [
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
                }
                for number in (78126, 5)
            ],
        )
    later = NOW + timedelta(hours=3)
    with engine.begin() as connection:
        not_modified = write_url_states(
            connection, [visit(status=304, kind=None, etag=None, redirect_urls=[])], later
        )
    assert not_modified == 1
    row = rows(engine)["https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"]
    assert (row.last_status, row.last_seen_at, row.kind, row.etag) == (304, later, "record", '"v1"')
    with Session(engine) as session:
        seen = dict(
            session.execute(select(models.Record.ncj_number, models.Record.last_seen_at)).all()
        )
    assert seen == {78126: later, 5: NOW}
