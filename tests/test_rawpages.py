"""Raw pages: stored compressed once per body, read back byte for byte, parsed as fetched."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from scrapy.http import HtmlResponse, Request
from sqlalchemy import Engine, func, select, update

from benchmarks.pages import bench_pages
from harvester import models
from harvester.db import ensure_schema
from harvester.history import RecordHistory
from harvester.items import FetchedPage, RawRecord, Record, Rejection
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.rawpages import (
    DICTIONARY_MIN_PAGES,
    RAW_PAGES,
    PageCodec,
    decoded_page,
    fetched_page,
    response_for,
)
from harvester.store import RecordWriter, write_batch
from tests.support import page_names, response_from_file

try:  # Python >= 3.14; the backport before, as in harvester.rawpages
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def fixture_page(name: str) -> tuple[RawRecord, FetchedPage]:
    response = response_from_file(name)
    raw = parse_page(response)
    assert isinstance(raw, RawRecord), name
    return raw, fetched_page(response, raw)


RECORD_FIXTURES = [
    name for name in page_names() if isinstance(parse_page(response_from_file(name)), RawRecord)
]


def stored_pages(engine: Engine) -> list[models.RawPage]:
    with engine.connect() as connection:
        rows = connection.execute(select(models.RawPage).order_by(models.RawPage.url)).all()
    return [models.RawPage(**row._mapping) for row in rows]


def count(engine: Engine, model: type[models.Base]) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def without_fetch_time(raw: RawRecord) -> RawRecord:
    return dataclasses.replace(raw, fetched_at=T0, fetched_page=None)


def test_every_fixture_page_parses_the_same_from_its_stored_copy(schema: Engine) -> None:
    pages = {name: fixture_page(name) for name in RECORD_FIXTURES}
    with schema.begin() as connection:
        PageCodec().store(connection, [page for _, page in pages.values()])
    with schema.connect() as connection:
        read = PageCodec().pages(connection, [page.sha256 for _, page in pages.values()])
    assert len(read) == len(pages) > 20
    for name, (raw, page) in pages.items():
        again = read[page.sha256]
        assert again == page, name
        reparsed = parse_page(response_for(again))  # type: ignore[arg-type]
        assert isinstance(reparsed, RawRecord)
        assert without_fetch_time(reparsed) == without_fetch_time(raw), name
    rows = {row.url: row for row in stored_pages(schema)}
    cp1252 = rows["https://www.ncjrs.gov/App/publications/Abstract.aspx?id=90001"]
    assert (cp1252.content_type, cp1252.encoding) == ("text/html; charset=windows-1252", "cp1252")
    assert all(row.codec == "zstd" and row.dictionary_id is None for row in rows.values())
    assert all(len(row.body) < row.size for row in rows.values())


def test_redirects_survive_the_round_trip(schema: Engine) -> None:
    legacy = "https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=78126"
    final = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/police-chief-78126"
    body = response_from_file("current_78126").body
    response = HtmlResponse(
        url=final,
        body=body,
        headers={"Content-Type": "text/html; charset=utf-8"},
        request=Request(final, meta={"redirect_urls": [legacy]}),
    )
    raw = parse_page(response)
    assert isinstance(raw, RawRecord)
    page = fetched_page(response, raw)
    with schema.begin() as connection:
        PageCodec().store(connection, [page])
    with schema.connect() as connection:
        again = PageCodec().pages(connection, [page.sha256])[page.sha256]
    reparsed = parse_page(response_for(again))  # type: ignore[arg-type]
    assert isinstance(reparsed, RawRecord)
    assert (reparsed.url, reparsed.final_url, reparsed.redirect_urls) == (legacy, final, [legacy])


def test_a_body_is_stored_once(schema: Engine) -> None:
    _, page = fixture_page("current_78126")
    elsewhere = dataclasses.replace(page, url="https://ojp.gov/elsewhere")
    for _ in range(2):
        with schema.begin() as connection:
            PageCodec().store(connection, [page, elsewhere])
    (row,) = stored_pages(schema)
    assert row.url == page.url  # the fetch that stored it first


def test_a_big_batch_trains_a_dictionary_that_later_pages_share(schema: Engine) -> None:
    generated = bench_pages(DICTIONARY_MIN_PAGES + 20, lean=False, seed=2)

    def as_page(url: str, body: bytes) -> FetchedPage:
        return fetched_page(
            HtmlResponse(url=url, body=body, encoding="utf-8", request=Request(url)),
            RawRecord(url=url, final_url=url, status=200, fetched_at=T0, layout="current"),
        )

    pages = [as_page(url, body) for url, body in generated]
    codec = PageCodec()
    with schema.begin() as connection:
        codec.store(connection, pages[:10])  # too few to train on: no dictionary yet
        codec.store(connection, pages[10:])
    with schema.begin() as connection:
        PageCodec().store(connection, [as_page("https://x/late", b"<html>late</html>")])
    rows = stored_pages(schema)
    with schema.connect() as connection:
        (dictionary_id,) = connection.execute(select(models.RawPageDictionary.id)).scalars()
    assert sum(row.dictionary_id is None for row in rows) == 10
    assert sum(row.dictionary_id == dictionary_id for row in rows) == len(pages) - 10 + 1
    with_dictionary = [row for row in rows if row.dictionary_id is not None and row.size > 9000]
    without = [row for row in rows if row.dictionary_id is None]
    ratio = sum(len(r.body) for r in with_dictionary) / sum(r.size for r in with_dictionary)
    assert ratio < 0.5 * sum(len(r.body) for r in without) / sum(r.size for r in without)
    with schema.connect() as connection:  # another process: loads the dictionary it needs
        read = PageCodec().pages(connection, [page.sha256 for page in pages])
    assert [read[page.sha256].body for page in pages] == [page.body for page in pages]
    with schema.connect() as connection:  # a judging process: no connection, given the dictionary
        rows_read = connection.execute(select(RAW_PAGES)).mappings().all()
        content = connection.execute(select(models.RawPageDictionary.dictionary)).scalar_one()
    dictionaries = {dictionary_id: zstd.ZstdDict(bytes(content))}
    decoded = {row["sha256"]: decoded_page(row, dictionaries) for row in rows_read}
    assert [decoded[page.sha256] for page in pages] == [read[page.sha256] for page in pages]
    needs_it = next(row for row in rows_read if row["dictionary_id"] is not None)
    with pytest.raises(ValueError, match=f"dictionary {dictionary_id} is not stored"):
        decoded_page(needs_it, {})


def test_a_damaged_page_is_refused_not_parsed(schema: Engine) -> None:
    _, page = fixture_page("current_78126")
    _, other = fixture_page("current_191386")
    with schema.begin() as connection:
        codec = PageCodec()
        codec.store(connection, [page, other])
        wrong_body = connection.execute(
            select(models.RawPage.body).where(models.RawPage.sha256 == other.sha256)
        ).scalar_one()
        connection.execute(
            update(models.RawPage)
            .where(models.RawPage.sha256 == page.sha256)
            .values(body=wrong_body)
        )
    with schema.connect() as connection, pytest.raises(ValueError, match="does not match"):
        PageCodec().pages(connection, [page.sha256])


def write(
    engine: Engine,
    records: list[tuple[Record, FetchedPage | None]],
    now: datetime,
    history: RecordHistory | None = None,
) -> None:
    with engine.begin() as connection:
        write_batch(
            connection,
            [(record, content_hash(record)) for record, _ in records],
            [],
            now=now,
            run_id=None,
            counted=set(),
            pages={r.ncj_number: p for r, p in records if p is not None},  # type: ignore[misc]
            history=history,
        )


def stored_reference(engine: Engine) -> tuple[str | None, int | None]:
    with engine.connect() as connection:
        row = connection.execute(
            select(models.Record.raw_page_sha256, models.Record.parser_version)
        ).one()
    return row[0], row[1]


def test_records_reference_the_page_that_gave_their_content(schema: Engine) -> None:
    raw, page = fixture_page("current_191386")
    record = normalize_record(raw)
    write(schema, [(record, page)], T0)
    assert stored_reference(schema) == (page.sha256, PARSER_VERSION)
    # The same content from another body (say, a changed footer): not stored again.
    refetched = dataclasses.replace(page, sha256="f" * 64, body=page.body + b"<!-- -->")
    write(schema, [(record, refetched)], T0 + timedelta(days=1))
    assert stored_reference(schema) == (page.sha256, PARSER_VERSION)
    assert count(schema, models.RawPage) == 1
    # A new parser version that gives the same content: it read the new body, keep that one.
    newer = RecordHistory(parser_version=PARSER_VERSION + 1)
    write(schema, [(record, refetched)], T0 + timedelta(days=2), newer)
    assert stored_reference(schema) == (refetched.sha256, PARSER_VERSION + 1)
    # A newer parser still, with raw pages off: no page is known to give this content now.
    write(schema, [(record, None)], T0 + timedelta(days=3), RecordHistory(PARSER_VERSION + 2))
    assert stored_reference(schema) == (None, PARSER_VERSION + 2)
    # The next sighting with a page fills the gap.
    write(schema, [(record, page)], T0 + timedelta(days=4), RecordHistory(PARSER_VERSION + 2))
    assert stored_reference(schema) == (page.sha256, PARSER_VERSION + 2)
    # A changed record written without its page must not keep pointing at the old page.
    changed = dataclasses.replace(record, note="changed")
    write(schema, [(changed, None)], T0 + timedelta(days=5), RecordHistory(PARSER_VERSION + 2))
    assert stored_reference(schema) == (None, PARSER_VERSION + 2)
    assert count(schema, models.RawPage) == 2


def test_quarantined_pages_are_stored_and_their_raw_values_leave_the_page_out(
    schema: Engine,
) -> None:
    raw, page = fixture_page("current_no_title")
    raw.fetched_page = page
    record = normalize_record(raw)
    writer = RecordWriter(schema, run_id=None, batch_size=10, batch_seconds=60)
    writer.add_quarantined(record, Rejection("missing_title", "no title"))
    writer.close()
    with schema.connect() as connection:
        row = connection.execute(select(models.Quarantine)).one()
    assert (row.raw_page_sha256, row.parser_version) == (page.sha256, PARSER_VERSION)
    assert "fetched_page" not in row.raw
    assert row.raw["fields"] == raw.fields
    assert [p.sha256 for p in stored_pages(schema)] == [page.sha256]
