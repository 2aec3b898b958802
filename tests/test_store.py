"""Batched upserts into real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import ensure_schema
from harvester.history import RecordHistory
from harvester.items import (
    LAYOUT_RANK,
    ChapterOf,
    FetchedPage,
    JournalCitation,
    Layout,
    PartialDate,
    Person,
    RawRecord,
    Record,
    Rejection,
)
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import parse_page
from harvester.store import (
    KEPT_ON_REWRITE,
    LIST_TABLES,
    RECORDS,
    RecordWriter,
    WriteCounts,
    normalized_name,
    raw_from_json,
    raw_to_json,
    record_row,
    start_run,
    write_batch,
)
from tests.support import response_from_file

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fixture_record(name: str) -> Record:
    page = parse_page(response_from_file(name))
    assert isinstance(page, RawRecord)
    return normalize_record(page)


def write(engine: Engine, records: list[Record], now: datetime, counted: set[int] | None = None):
    with engine.begin() as connection:
        return write_batch(
            connection,
            [(r, content_hash(r)) for r in records],
            [],
            now=now,
            run_id=None,
            counted=counted or set(),
        )


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def count(engine: Engine, model: type[models.Base]) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def test_new_records_fill_the_contract_columns(schema: Engine) -> None:
    chapter = fixture_record("legacy_206598")
    journal = fixture_record("current_78126")
    counts = write(schema, [chapter, journal], T0)
    assert (counts.new, counts.updated, counts.unchanged) == (2, 0, 0)
    with Session(schema) as connection:
        row = connection.scalars(
            select(models.Record).where(models.Record.ncj_number == 206598)
        ).one()
        assert row.title.startswith("Overview of Juvenile Justice")
        assert row.part_of == 206597
        assert row.part_pages == "5-40"
        assert (row.published_year, row.published_month, row.published_precision) == (
            2004,
            None,
            "year",
        )
        assert row.page_count == 36
        assert row.sale_source.startswith("Oxford University Press, Inc\n198 Madison Avenue")
        assert row.first_seen_at == row.last_seen_at == row.last_changed_at == T0
        assert row.content_hash == content_hash(chapter)
        agencies = connection.execute(
            select(models.Agency.name, models.RecordAgency.role)
            .join(models.RecordAgency)
            .where(models.RecordAgency.ncj_number == 206598)
        ).all()
        assert agencies == [("Oxford University Press, Inc", "sponsor")]
        row = connection.scalars(
            select(models.Record).where(models.Record.ncj_number == 78126)
        ).one()
        assert (row.journal_name, row.journal_volume, row.journal_issue) == (
            "Police Chief",
            "48",
            "7",
        )
        assert (row.journal_dated, row.journal_pages) == ("July 1981", "24,26,28,30-33")
        people = connection.execute(
            select(
                models.Contributor.name,
                models.Contributor.family,
                models.RecordContributor.position,
            )
            .join(models.RecordContributor)
            .where(models.RecordContributor.ncj_number == 78126)
            .order_by(models.RecordContributor.position)
        ).all()
        assert people == [
            ("J Walsh", "Walsh", 0),
            ("R T Foote", "Foote", 1),
            ("N Day", "Day", 2),
            ("L L Goldman", "Goldman", 3),
        ]


def test_unchanged_record_only_touches_last_seen(schema: Engine) -> None:
    record = fixture_record("current_191386")
    write(schema, [record], T0)
    later = T0 + timedelta(days=1)
    counts = write(schema, [fixture_record("current_191386")], later)
    assert (counts.new, counts.updated, counts.unchanged) == (0, 0, 1)
    with Session(schema) as connection:
        row = connection.scalars(select(models.Record)).one()
    assert row.first_seen_at == T0
    assert row.last_changed_at == T0
    assert row.last_seen_at == later


def test_changed_record_is_updated_and_its_lists_replaced(schema: Engine) -> None:
    record = fixture_record("current_78126")
    write(schema, [record], T0)
    changed = dataclasses.replace(
        record, abstract="A corrected abstract.", authors=[Person("N Day", "Day", "N")]
    )
    later = T0 + timedelta(days=2)
    counts = write(schema, [changed], later)
    assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 0)
    with Session(schema) as connection:
        row = connection.scalars(select(models.Record)).one()
        links = connection.scalars(select(models.RecordContributor)).all()
    assert row.abstract == "A corrected abstract."
    assert row.first_seen_at == T0
    assert row.last_changed_at == later
    assert len(links) == 1
    # Contributors are shared and never deleted: the people of the old version stay.
    assert count(schema, models.Contributor) == 4


def test_contributors_are_shared_by_normalized_name(schema: Engine) -> None:
    first = fixture_record("current_78126")
    second = dataclasses.replace(
        fixture_record("current_191386"), authors=[Person("J. WALSH", "WALSH", "J.")]
    )
    write(schema, [first, second], T0)
    assert normalized_name("J. WALSH") == normalized_name("J Walsh")
    assert count(schema, models.Contributor) == 4
    assert count(schema, models.RecordContributor) == 5


def test_a_crawl_never_deletes_records(schema: Engine) -> None:
    write(schema, [fixture_record("current_78126"), fixture_record("current_191386")], T0)
    write(schema, [fixture_record("current_191386")], T0 + timedelta(days=1))
    assert count(schema, models.Record) == 2


def test_a_record_counted_once_per_run(schema: Engine) -> None:
    counted: set[int] = set()
    first = write(schema, [fixture_record("current_78126")], T0, counted)
    counted |= first.counted
    richer = dataclasses.replace(fixture_record("current_78126"), note="more")
    second = write(schema, [richer], T0, counted)
    assert (first.new, second.new, second.updated, second.unchanged) == (1, 0, 0, 0)


def test_writer_batches_and_quarantines_a_row_the_database_refuses(schema: Engine) -> None:
    run_id = start_run(schema, "test", {})
    writer = RecordWriter(schema, run_id=run_id, batch_size=3, batch_seconds=60)
    base = fixture_record("current_191386")
    records = [dataclasses.replace(base, ncj_number=1000 + i) for i in range(7)]
    # A month the schema's CHECK constraint refuses: only this record may be lost to quarantine.
    records[4] = dataclasses.replace(
        records[4], published=PartialDate("Smarch 2001", 2001, 13, None, "month")
    )
    rejected = dataclasses.replace(base, ncj_number=None)

    async def feed() -> None:
        for record in records:
            await writer.add_when_room(record)
        writer.add_quarantined(rejected, Rejection("invalid_ncj_number", "NCJ Number is 'x'"))

    asyncio.run(feed())
    counts = writer.close()
    assert counts.new == 6
    assert counts.quarantined == 2
    with schema.connect() as connection:
        stored = connection.execute(select(models.Record.ncj_number)).scalars().all()
        reasons = connection.execute(
            select(models.Quarantine.reason, models.Quarantine.crawl_run_id)
        ).all()
    assert sorted(stored) == [1000, 1001, 1002, 1003, 1005, 1006]
    assert sorted(reasons) == [("invalid_ncj_number", run_id), ("store_error", run_id)]


def test_a_batch_is_full_once_its_pages_reach_their_size(schema: Engine) -> None:
    """Pages are held until their batch is written: their bytes bound a batch as its count
    does, and a record's page replaced by a later one counts once."""
    base = fixture_record("current_191386")
    page_size = len(stored_page(1).body)
    writer = RecordWriter(
        schema, run_id=None, batch_size=100, batch_seconds=60, batch_page_bytes=3 * page_size
    )
    try:
        assert not writer.add(dataclasses.replace(base, ncj_number=1), stored_page(1))
        assert not writer.add(dataclasses.replace(base, ncj_number=1), stored_page(2))
        assert not writer.add(dataclasses.replace(base, ncj_number=2))  # no page
        assert not writer.add(dataclasses.replace(base, ncj_number=3), stored_page(3))
        assert writer.add(dataclasses.replace(base, ncj_number=4), stored_page(4))
        writer.flush_if_idle()
        assert not writer.add(dataclasses.replace(base, ncj_number=5), stored_page(5))
    finally:
        counts = writer.close()
    assert counts.new == 5


def slowly_written(
    writer: RecordWriter, fail_first: bool = False, queued: list[int] | None = None
) -> list[int]:
    """The sizes of the batches the writer writes, each taking 50 ms; the first raises (a
    bug) if ``fail_first``. ``queued``: the writes handed over and not done, at each write."""
    sizes: list[int] = []
    write = writer._write

    def slow_write(records: list[Any], *rest: Any) -> Any:
        if queued is not None:
            queued.append(len(writer._pending))
        sizes.append(len(records))
        time.sleep(0.05)
        if fail_first and len(sizes) == 1:
            raise RuntimeError("a bug in the writer")
        return write(records, *rest)

    writer._write = slow_write  # type: ignore[method-assign]
    return sizes


def items_at_once(writer: RecordWriter, count: int) -> list[Any]:
    base = fixture_record("current_191386")
    return [
        writer.add_when_room(dataclasses.replace(base, ncj_number=number))
        for number in range(1, count + 1)
    ]


def test_items_that_come_while_a_batch_is_written_wait_for_room(schema: Engine) -> None:
    """Thirty items at once, as a crawl's concurrent items come, batches of 4 written slowly:
    each waits for room before it is added (``CrawlRun.store``), so no batch holds more than
    its size; adding first and waiting after let 26 of them into one batch."""
    writer = RecordWriter(schema, run_id=None, batch_size=4, batch_seconds=60)
    queued: list[int] = []
    sizes = slowly_written(writer, queued=queued)

    async def crawl() -> None:
        await asyncio.gather(*items_at_once(writer, 30))
        while writer.holding():  # the rest, as the crawl's timer writes it
            writer.flush_if_idle()
            await asyncio.sleep(0.01)

    asyncio.run(crawl())
    counts = writer.close()
    assert (counts.new, max(sizes), sum(sizes)) == (30, 4, 30), sizes
    assert max(queued) == 1  # the batch being written, none handed over behind it


def test_items_waiting_for_room_are_written_by_a_stop(schema: Engine) -> None:
    """A stop closes the writer from the event loop (``CrawlRun`` on a forced or unclean
    stop) while items still wait: they are written, and once only."""
    writer = RecordWriter(schema, run_id=None, batch_size=4, batch_seconds=60)
    slowly_written(writer)

    async def crawl() -> WriteCounts:
        items = [asyncio.ensure_future(item) for item in items_at_once(writer, 30)]
        while len(writer._waiting) < 20:
            await asyncio.sleep(0.001)
        counts = writer.close()
        await asyncio.gather(*items)  # they resume and add nothing more
        return counts

    counts = asyncio.run(crawl())
    assert counts.new == 30
    assert count(schema, models.Record) == 30


def test_a_failed_write_is_raised_once_and_the_waiting_items_are_kept(schema: Engine) -> None:
    writer = RecordWriter(schema, run_id=None, batch_size=4, batch_seconds=60)
    sizes = slowly_written(writer, fail_first=True)

    async def crawl() -> list[Any]:
        return await asyncio.gather(*items_at_once(writer, 30), return_exceptions=True)

    outcomes = asyncio.run(crawl())
    counts = writer.close()
    assert [str(o) for o in outcomes if isinstance(o, Exception)] == ["a bug in the writer"]
    assert (counts.new, writer.failed_batches) == (30 - sizes[0], 1)


def test_a_timer_flush_while_an_item_waits_for_room_loses_no_counts(schema: Engine) -> None:
    writer = RecordWriter(schema, run_id=None, batch_size=2, batch_seconds=0)
    base = fixture_record("current_191386")

    async def add(number: int) -> None:
        await writer.add_when_room(dataclasses.replace(base, ncj_number=number))

    async def crawl() -> None:
        await add(1)
        await add(2)  # full: batch 1 goes to the writer thread at once

        async def second_batch() -> None:
            await add(3)
            await add(4)  # full while batch 1 is written: handed over later
            await add(5)  # waits for batch 1

        waiting = asyncio.create_task(second_batch())
        await asyncio.sleep(0)  # record 5 now waits for batch 1
        time.sleep(0.5)  # batch 1 is written meanwhile; the event loop has not noticed yet
        writer.flush_if_idle()  # the periodic timer writes records 3 and 4
        await waiting  # the waiting item resumes and adds record 5

    asyncio.run(crawl())
    counts = writer.close()
    assert counts.new == 5
    assert count(schema, models.Record) == 5


def test_raw_values_kept_in_quarantine_read_back_as_they_were() -> None:
    page = parse_page(response_from_file("current_78126"))
    assert isinstance(page, RawRecord)
    page.sitemap_lastmod = T0 + timedelta(hours=5)
    page.etag = '"abc"'
    kept = json.loads(json.dumps(raw_to_json(page)))  # as the JSON column hands it back
    assert raw_from_json(kept) == page
    assert raw_from_json({"normalized": {"title": "x"}}) is None  # a row without raw values


def test_every_layout_has_a_rank() -> None:
    # A layout without one would rank lowest unnoticed: never replacing any stored page.
    assert set(LAYOUT_RANK) == set(get_args(Layout))


def test_a_poorer_page_never_replaces_a_richer_stored_one(schema: Engine) -> None:
    current = fixture_record("current_191386")
    write(schema, [current], T0)
    publication = dataclasses.replace(
        current, layout="publication", authors=[], journal=None, agencies=["NIJ"]
    )
    counts = write(schema, [publication], T0 + timedelta(days=1))
    assert (counts.new, counts.updated, counts.unchanged) == (0, 0, 1)
    with Session(schema) as session:
        row = session.scalars(select(models.Record)).one()
    assert row.layout == "current"
    assert row.journal_name == "Global Issues"
    assert row.last_changed_at == T0
    assert row.last_seen_at == T0 + timedelta(days=1)


def test_a_row_the_driver_refuses_is_quarantined_and_writing_goes_on(schema: Engine) -> None:
    writer = RecordWriter(schema, run_id=None, batch_size=3, batch_seconds=60)
    base = fixture_record("current_191386")
    base.raw = None  # as StorePipeline hands it over
    # An integer no database column holds: the driver itself raises (not SQLAlchemy).
    batches = [[1, 2**64, 3], [4, 5, 6]]

    async def crawl() -> None:
        for numbers in batches:
            for number in numbers:
                await writer.add_when_room(dataclasses.replace(base, ncj_number=number))

    asyncio.run(crawl())
    counts = writer.close()
    assert (counts.new, counts.quarantined, writer.failed_batches) == (5, 1, 0)
    with Session(schema) as session:
        stored = sorted(session.scalars(select(models.Record.ncj_number)))
        quarantined = session.scalars(select(models.Quarantine)).one()
    assert stored == [1, 3, 4, 5, 6]
    assert quarantined.reason == "store_error"
    assert quarantined.raw["normalized"]["ncj_number"] == 2**64


def every_field(variant: int) -> Record:
    """A record with every stored field set; variants 1 and 2 differ in every one of them.

    Variant 1 names fewer people and agencies, so that even the roles and positions of the
    list rows differ.
    """
    one = variant == 1
    person = Person(f"J Walsh{variant}", f"Walsh{variant}", "J", "Jr" if one else "Sr")
    return Record(
        ncj_number=4242,
        title=f"Title {variant}",
        source_url=f"https://www.ojp.gov/ncjrs/virtual-library/abstracts/title-{variant}",
        fetched_at=T0 + timedelta(days=variant),
        chapter_of=ChapterOf(1000 + variant, f"Book {variant}", f"{variant}-40"),
        journal=JournalCitation(
            f"Journal {variant} V {variant}",
            f"Journal {variant}",
            f"{variant}",
            f"{variant}0",
            f"May 198{variant}",
            f"{variant}-9",
        ),
        authors=[person] if one else [person, Person("R T Foote", "Foote", "R T")],
        editors=[] if one else [Person("N Day", "Day", "N")],
        corporate_authors=[] if one else ["Urban Institute"],
        published=PartialDate(f"198{variant}", 1980 + variant, variant, variant, "day")
        if one
        else PartialDate("Summer 1982", 1982, 6, None, "season"),
        date_created=PartialDate(
            f"0{variant}/0{variant}/199{variant}", 1990 + variant, variant, variant, "day"
        ),
        page_count=10 * variant,
        annotation=f"Annotation {variant}",
        abstract=f"Abstract {variant}",
        sponsoring_agencies=[f"Agency {variant}"] if one else ["Agency 2", "Agency 3"],
        agencies=[] if one else ["National Institute of Justice"],
        grant_numbers=[f"GRANT-{variant}"],
        sale_source=f"Sale source {variant}",
        publisher=f"Publisher {variant}",
        document_urls=[f"https://www.ojp.gov/pdffiles1/{variant}.pdf"],
        publication_type=f"Type {variant}",
        publication_format=f"Format {variant}",
        language=f"Language {variant}",
        country=f"Country {variant}",
        publication_series=f"Series {variant}",
        note=f"Note {variant}",
        subjects=[f"Subject {variant}"],
        extra_fields={f"Label {variant}": [f"value {variant}"]},
        layout="current" if one else "legacy",  # legacy ranks higher: it replaces current
        text_repairs=[f"title: mojibake {variant} -> text"],
    )


def stored_page(variant: int) -> FetchedPage:
    body = f"<html><body>page {variant}</body></html>".encode()
    return FetchedPage(
        sha256=hashlib.sha256(body).hexdigest(),
        body=body,
        url=f"https://www.ojp.gov/page-{variant}",
        status=200,
        content_type="text/html; charset=utf-8",
        encoding="utf-8",
        fetched_at=T0,
    )


def test_writing_a_changed_record_rewrites_every_stored_column(schema: Engine) -> None:
    """Every column of `records` but the documented keep-first ones takes the new version's
    value, and so does every column of its list tables: a column added to the schema and
    forgotten in the upsert fails here."""

    def write_version(variant: int, ncj_number: int = 4242) -> dict[str, Any]:
        run_id = start_run(schema, f"run {variant}", {})
        record = dataclasses.replace(every_field(variant), ncj_number=ncj_number)
        page = stored_page(variant)
        now = T0 + timedelta(days=variant)
        with schema.begin() as connection:
            write_batch(
                connection,
                [(record, content_hash(record))],
                [],
                now=now,
                run_id=run_id,
                counted=set(),
                pages={ncj_number: page},
                history=RecordHistory(parser_version=variant),
            )
        # What the upsert is given for the record; the test checks the row holds it.
        provenance = {"parser_version": variant, "raw_page_sha256": page.sha256}
        return record_row(record, content_hash(record), now, run_id) | provenance

    def read(ncj_number: int = 4242) -> tuple[dict[str, Any], dict[str, set[tuple[Any, ...]]]]:
        with schema.connect() as connection:
            query = select(RECORDS).where(RECORDS.c.ncj_number == ncj_number)
            row = dict(connection.execute(query).mappings().one())
            lists = {
                table.name: {
                    tuple(getattr(r, c.name) for c in table.columns if c.name != "ncj_number")
                    for r in connection.execute(
                        select(table).where(table.c.ncj_number == ncj_number)
                    )
                }
                for table in LIST_TABLES
            }
        return row, lists

    write_version(1)
    first_row, first_lists = read()
    given = write_version(2)
    row, lists = read()
    for column in RECORDS.columns:
        name = column.name
        if name in KEPT_ON_REWRITE:
            assert row[name] == first_row[name], f"records.{name} must keep its first value"
            continue
        assert name in given, f"records.{name} is not written (store.record_row?)"
        assert row[name] != first_row[name], f"records.{name} kept its first value"
        assert row[name] == given[name], f"records.{name} did not take the new value"

    # The list rows are what writing the new version afresh gives (shared contributors and
    # agencies keep their ids), and none of their columns kept a first-version value set.
    write_version(2, ncj_number=4343)
    _, fresh_lists = read(4343)
    assert lists == fresh_lists
    for table in LIST_TABLES:
        columns = [c.name for c in table.columns if c.name != "ncj_number"]
        for index, name in enumerate(columns):
            before = {values[index] for values in first_lists[table.name]}
            after = {values[index] for values in lists[table.name]}
            assert before, f"{table.name}: the first version leaves it empty"
            assert after, f"{table.name}: the second version leaves it empty"
            assert after != before, f"{table.name}.{name} kept its first values"
