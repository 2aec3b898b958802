"""`harvester reparse`: a real crawl of the local site, then re-parses from stored pages only.

The local site stays up during the re-parses and its request log is cleared before them: any
request a re-parse made would show up there.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from scrapy.http import TextResponse
from sqlalchemy import Engine, func, select

from harvester import models
from harvester.cli import main
from harvester.db import create_engine_for, ensure_schema
from harvester.items import FetchedPage, NonRecordPage, RawRecord, Record
from harvester.localsite import SiteHandle, serve_site
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.rawpages import fetched_page
from harvester.reparse import reparse
from harvester.store import write_batch
from tests.support import migrated, response_from_file
from tests.test_crawl import crawl

RECORDS = 120
NEXT_VERSION = PARSER_VERSION + 1


def parser_with_upper_case_types(response: TextResponse) -> RawRecord | NonRecordPage:
    """A new parser whose output differs in one field: publication types in upper case."""
    page = parse_page(response)
    if isinstance(page, RawRecord) and "publication_type" in page.fields:
        page.fields["publication_type"] = [v.upper() for v in page.fields["publication_type"]]
    return page


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=RECORDS, seed=11) as handle:
        yield handle


@pytest.fixture
def crawled(database_url: str, site: SiteHandle) -> Iterator[Engine]:
    migrated(database_url)
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


def records(engine: Engine) -> dict[int, models.Record]:
    with engine.connect() as connection:
        rows = connection.execute(select(models.Record)).all()
    return {row.ncj_number: models.Record(**row._mapping) for row in rows}


def record_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(models.Record))]


def versions_of_run(engine: Engine, run_id: int) -> list[models.RecordVersion]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(models.RecordVersion).where(models.RecordVersion.crawl_run_id == run_id)
        ).all()
    return [models.RecordVersion(**row._mapping) for row in rows]


def test_reparse_after_a_parser_change_versions_exactly_what_changed_with_no_request(
    crawled: Engine, site: SiteHandle
) -> None:
    before = records(crawled)
    expected_records = [t for t in site.truth() if t["kind"] == "record"]
    assert len(before) == len(expected_records)
    assert all(r.raw_page_sha256 and r.parser_version == PARSER_VERSION for r in before.values())
    site.clear_requests()

    same = reparse(crawled)
    assert (same.pages, same.unchanged, same.updated, same.new) == (len(before), len(before), 0, 0)
    assert (same.versions, same.quarantined, same.not_records, same.without_page) == (0, 0, 0, 0)

    changing = {
        n: r.publication_type
        for n, r in before.items()
        if r.publication_type and r.publication_type != r.publication_type.upper()
    }
    assert 10 < len(changing) < len(before)  # some records change, others do not
    bumped = reparse(crawled, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
    assert (bumped.updated, bumped.unchanged) == (len(changing), len(before) - len(changing))
    assert bumped.versions == len(changing)
    made = versions_of_run(crawled, bumped.run_id)
    assert {v.ncj_number for v in made} == set(changing)
    for version in made:
        old = changing[version.ncj_number]
        assert version.changes == {"publication_type": {"old": old, "new": old.upper()}}
        assert (version.version, version.parser_version) == (2, NEXT_VERSION)
        assert version.changed_fields == "publication_type"
    after = records(crawled)
    for number, record in after.items():
        assert record.parser_version == NEXT_VERSION
        assert record.last_seen_at == before[number].last_seen_at  # nothing was seen on the site
        assert record.raw_page_sha256 == before[number].raw_page_sha256
        if number in changing:
            assert record.publication_type == changing[number].upper()
            assert record.last_changed_at > before[number].last_changed_at
            assert record.crawl_run_id == bumped.run_id
        else:
            assert record.last_changed_at == before[number].last_changed_at

    again = reparse(crawled, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
    assert (again.versions, again.updated) == (0, 0)
    back = reparse(crawled)  # the old parser again: every change is undone, as version 3
    assert back.versions == len(changing)
    assert {v.version for v in versions_of_run(crawled, back.run_id)} == {3}
    assert site.requests() == []
    with crawled.connect() as connection:
        runs = connection.execute(
            select(models.CrawlRun.spider, models.CrawlRun.pages_fetched).order_by(
                models.CrawlRun.id
            )
        ).all()
    assert [tuple(r) for r in runs] == [("ncjrs", runs[0][1])] + [("reparse", 0)] * 4


def test_records_crawled_without_raw_pages_are_left_alone(
    database_url: str, site: SiteHandle
) -> None:
    migrated(database_url)
    crawl(
        database_url,
        f"sitemap={site.base_url}/sitemap.xml",
        settings={"HARVESTER_STORE_RAW_PAGES": "False"},
    )
    engine = create_engine_for(database_url)
    try:
        stored = records(engine)
        rows = record_rows(engine)
        with engine.connect() as connection:
            pages = connection.scalar(select(func.count()).select_from(models.RawPage))
            quarantine_pages = connection.scalar(
                select(func.count(models.Quarantine.raw_page_sha256))
            )
        assert (pages, quarantine_pages) == (0, 0)
        assert all(r.raw_page_sha256 is None for r in stored.values())
        site.clear_requests()
        report = reparse(engine, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
        assert (report.pages, report.without_page, report.versions) == (0, len(stored), 0)
        assert record_rows(engine) == rows
        assert site.requests() == []
    finally:
        engine.dispose()


def page_record(name: str) -> tuple[Record, FetchedPage]:
    response = response_from_file(name)
    raw = parse_page(response)
    assert isinstance(raw, RawRecord)
    page = fetched_page(response, raw)
    return normalize_record(raw), page


def test_a_page_that_no_longer_passes_keeps_its_record_and_is_quarantined(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    written = [page_record(name) for name in ("current_78126", "current_191386", "legacy_70780")]
    with engine.begin() as connection:
        write_batch(
            connection,
            [(record, content_hash(record)) for record, _ in written],
            [],
            now=datetime(2026, 1, 1, tzinfo=UTC),
            run_id=None,
            counted=set(),
            pages={record.ncj_number: page for record, page in written if record.ncj_number},
        )
    before = records(engine)

    def broken_parser(response: TextResponse) -> RawRecord | NonRecordPage:
        page = parse_page(response)
        assert isinstance(page, RawRecord)
        if "78126" in (page.first("ncj_number") or ""):
            return NonRecordPage(url=response.url, reason="no_record_fields")
        if "191386" in (page.first("ncj_number") or ""):
            page.fields.pop("title", None)
            page.heading = None
        return page

    report = reparse(engine, parse=broken_parser, parser_version=NEXT_VERSION)
    assert (report.pages, report.not_records, report.quarantined, report.unchanged) == (3, 1, 1, 1)
    assert report.not_record_reasons == {"no_record_fields": 1}
    after = records(engine)
    for number in (78126, 191386):  # kept as they were, parser version included
        assert after[number].content_hash == before[number].content_hash
        assert after[number].parser_version == PARSER_VERSION
    assert after[70780].parser_version == NEXT_VERSION
    with engine.connect() as connection:
        row = connection.execute(select(models.Quarantine)).one()
    assert (row.reason, row.crawl_run_id, row.parser_version) == (
        "missing_title",
        report.run_id,
        NEXT_VERSION,
    )
    assert row.raw_page_sha256 == before[191386].raw_page_sha256


def test_a_stored_body_that_is_not_html_is_counted_and_left_alone(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    record, page = page_record("current_78126")
    body = b"%PDF-1.4\n\x00\x01\x02"
    pdf = dataclasses.replace(
        page, sha256=hashlib.sha256(body).hexdigest(), body=body, content_type="application/pdf"
    )
    with engine.begin() as connection:
        write_batch(
            connection,
            [(record, content_hash(record))],
            [],
            now=datetime(2026, 1, 1, tzinfo=UTC),
            run_id=None,
            counted=set(),
            pages={78126: pdf},
        )
    before = records(engine)
    report = reparse(engine, parser_version=NEXT_VERSION)
    assert (report.pages, report.not_records, report.quarantined) == (1, 1, 0)
    assert report.not_record_reasons == {"not_html": 1}
    after = records(engine)
    assert after[78126].content_hash == before[78126].content_hash
    assert after[78126].parser_version == PARSER_VERSION


def test_the_reparse_command_reports_what_it_did(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_schema(engine, auto_migrate=True)
    record, page = page_record("current_78126")
    with engine.begin() as connection:
        write_batch(
            connection,
            [(record, content_hash(record))],
            [],
            now=datetime(2026, 1, 1, tzinfo=UTC),
            run_id=None,
            counted=set(),
            pages={78126: page},
        )
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["reparse"])
    assert result.exit_code == 0, result.output
    assert "1 stored pages, 0 new / 0 updated / 1 unchanged, 0 versions" in result.output
    result = CliRunner().invoke(main, ["history", "78126"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"version 1  2026-01-01 00:00:00  run None  parser {PARSER_VERSION}  https://"
    )
