"""The record writer under database faults, injected by real means: triggers that refuse one
record or fail like a lost serialization, a write lock held by another connection, a database
file that is full or read-only, a PostgreSQL database set read-only."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from benchmarks.pages import bench_pages
from harvester import db, models
from harvester.db import create_engine_for, ensure_schema
from harvester.items import FetchedPage, RawRecord, Record
from harvester.normalize import normalize_record
from harvester.parsing import parse_page
from harvester.rawpages import DICTIONARY_MIN_PAGES
from harvester.store import RecordWriter, WriteCounts, error_kind
from tests.support import hold_sqlite_write_lock as hold_file_lock
from tests.support import response_from_file

REFUSED = 1_000_007  # the NCJ number the trigger refuses


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def records_with_pages(count: int, first: int = 1_000_000) -> list[tuple[Record, FetchedPage]]:
    page = parse_page(response_from_file("current_191386"))
    assert isinstance(page, RawRecord)
    base = normalize_record(page)
    base.raw = None  # as StorePipeline hands it over
    result = []
    for index, (url, body) in enumerate(bench_pages(count, lean=False, seed=5)):
        number = first + index
        fetched = FetchedPage(
            sha256=hashlib.sha256(body).hexdigest(),
            body=body,
            url=url,
            status=200,
            content_type="text/html; charset=utf-8",
            encoding="utf-8",
            fetched_at=base.fetched_at,
            redirect_urls=[],
        )
        record = dataclasses.replace(
            base, ncj_number=number, source_url=f"https://www.ojp.gov/ncjrs/record/{number}"
        )
        result.append((record, fetched))
    return result


def write_all(writer: RecordWriter, items: list[tuple[Record, FetchedPage]]) -> WriteCounts:
    async def feed() -> None:
        for record, page in items:
            await writer.add_when_room(record, page)

    asyncio.run(feed())
    return writer.close()


def stored_numbers(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(models.Record.ncj_number)).scalars())


def count(engine: Engine, model: type[models.Base]) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def refuse_one_record(engine: Engine) -> None:
    """A trigger that refuses the record REFUSED, as a database constraint would."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records "
                    f"WHEN NEW.ncj_number = {REFUSED} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.ncj_number = {REFUSED} THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def test_a_record_refused_in_the_first_batch_does_not_poison_later_batches(
    schema: Engine,
) -> None:
    refuse_one_record(schema)
    # The first batch is big enough to train the raw page dictionary (the fault's trigger).
    items = records_with_pages(DICTIONARY_MIN_PAGES + 100)
    writer = RecordWriter(
        schema, run_id=None, batch_size=DICTIONARY_MIN_PAGES + 20, batch_seconds=60
    )
    counts = write_all(writer, items)
    assert (counts.new, counts.quarantined, counts.unwritten, writer.failed_batches) == (
        len(items) - 1,
        1,
        0,
        0,
    )
    assert stored_numbers(schema) == [r.ncj_number for r, _ in items if r.ncj_number != REFUSED]
    assert count(schema, models.RawPageDictionary) == 1
    assert count(schema, models.RawPage) == len(items)  # the refused record's page is kept too
    with Session(schema) as session:
        quarantined = session.scalars(select(models.Quarantine)).one()
        state = session.scalars(
            select(models.RecordUrl).where(models.RecordUrl.url.like(f"%/{REFUSED}"))
        ).one()
    assert quarantined.reason == "store_error"
    assert "refused" in quarantined.detail
    assert state.kind == "quarantined"
    # Every page stored references a dictionary that exists.
    with schema.connect() as connection:
        dangling = connection.scalar(
            select(func.count())
            .select_from(models.RawPage)
            .where(
                models.RawPage.dictionary_id.is_not(None),
                models.RawPage.dictionary_id.not_in(select(models.RawPageDictionary.id)),
            )
        )
    assert dangling == 0


@pytest.fixture
def short_busy_timeout(schema: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite waits this long for a lock before it says "database is locked" (default 30 s)."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    schema.dispose()  # connections made from now on wait that long


def hold_sqlite_write_lock(engine: Engine, seconds: float) -> threading.Thread:
    """Another connection takes the write lock and keeps it for ``seconds``."""
    path = engine.url.database
    assert path
    return hold_file_lock(path, seconds)


def fail_transiently(engine: Engine, times: int) -> None:
    """PostgreSQL: the next ``times`` inserts into records fail with a serialization failure."""
    with engine.begin() as connection:
        # A sequence: its counting survives the rollback of the transaction that failed.
        connection.execute(text("CREATE SEQUENCE failures"))
        connection.execute(
            text(
                "CREATE FUNCTION fail_transiently() RETURNS trigger AS $$ BEGIN "
                f"IF nextval('failures') <= {times} THEN "
                "  RAISE EXCEPTION 'could not serialize' USING ERRCODE = 'serialization_failure'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER fail_transiently BEFORE INSERT ON records "
                "FOR EACH STATEMENT EXECUTE FUNCTION fail_transiently()"
            )
        )


def test_a_transient_error_is_retried_not_quarantined(
    schema: Engine, database_url: str, short_busy_timeout: None
) -> None:
    items = records_with_pages(30)
    writer = RecordWriter(schema, run_id=None, batch_size=10, batch_seconds=60, retry_seconds=30)
    if database_url.startswith("sqlite"):
        holder = hold_sqlite_write_lock(schema, 2.0)
        counts = write_all(writer, items)
        holder.join()
    else:
        fail_transiently(schema, 3)
        counts = write_all(writer, items)
    assert (counts.new, counts.quarantined, counts.unwritten, writer.failed_batches) == (
        30,
        0,
        0,
        0,
    )
    assert count(schema, models.Quarantine) == 0
    assert len(stored_numbers(schema)) == 30


def test_records_not_written_after_the_retries_are_counted_one_by_one(
    schema: Engine, database_url: str, short_busy_timeout: None
) -> None:
    items = records_with_pages(25)
    writer = RecordWriter(schema, run_id=None, batch_size=10, batch_seconds=60, retry_seconds=1)
    if database_url.startswith("sqlite"):
        holder = hold_sqlite_write_lock(schema, 10.0)
        counts = write_all(writer, items)
        holder.join()
    else:
        fail_transiently(schema, 1_000_000)
        counts = write_all(writer, items)
    # Every batch failed for lack of the lock / serialization: 25 records, not 3 "errors".
    assert (counts.new, counts.quarantined, counts.unwritten) == (0, 0, 25)
    assert writer.failed_batches == 3
    assert count(schema, models.Quarantine) == 0
    assert stored_numbers(schema) == []


@pytest.fixture
def refusing_writes(database_url: str) -> Iterator[tuple[Engine, str]]:
    """An engine on a database that can be made to refuse all writes, and how it refuses."""
    engine = create_engine_for(database_url)
    ensure_schema(engine, auto_migrate=True)
    try:
        yield engine, database_url
    finally:
        engine.dispose()


def make_read_only(engine: Engine, database_url: str, how: str) -> None:
    if database_url.startswith("sqlite"):
        path = engine.url.database
        engine.dispose()  # new connections see the limit
        with sqlite3.connect(path) as connection:
            if how == "full":
                # The file may not grow: the next write that needs a page says "disk is full".
                pages = connection.execute("PRAGMA page_count").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count = {pages}")
        if how == "full":

            @sqlalchemy_event(engine)
            def _limit(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")
        else:

            @sqlalchemy_event(engine)
            def _read_only(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_connection.execute("PRAGMA query_only = 1")
    else:
        name = engine.url.database
        with engine.begin() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
        engine.dispose()


def sqlalchemy_event(engine: Engine):  # type: ignore[no-untyped-def]
    from sqlalchemy import event

    def register(function):  # type: ignore[no-untyped-def]
        event.listen(engine, "connect", function)
        return function

    return register


def refuse_all_writes(
    engine: Engine, database_url: str, how: str
) -> tuple[list[Record], list[str], WriteCounts]:
    """Write 10 records, make the database refuse writes (``how``), then try 30 more."""
    items = records_with_pages(40)
    reasons: list[str] = []
    first = write_all(
        RecordWriter(engine, run_id=None, batch_size=10, batch_seconds=60), items[:10]
    )
    assert first.new == 10
    make_read_only(engine, database_url, how)
    writer = RecordWriter(
        engine, run_id=None, batch_size=10, batch_seconds=60, on_fatal=reasons.append
    )
    counts = write_all(writer, items[10:])
    return [record for record, _ in items], reasons, counts


def test_a_read_only_database_stops_the_writer_and_keeps_what_was_written(
    refusing_writes: tuple[Engine, str],
) -> None:
    engine, database_url = refusing_writes
    records, reasons, counts = refuse_all_writes(engine, database_url, "read_only")
    assert (counts.new, counts.quarantined, counts.unwritten) == (0, 0, 30)
    assert len(reasons) == 1
    assert reasons[0].startswith("the database refuses writes: ")
    assert count(engine, models.Quarantine) == 0
    assert stored_numbers(engine) == [r.ncj_number for r in records[:10]]


def test_a_full_disk_stops_the_writer_and_keeps_what_was_written(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'full.sqlite'}"
    engine = create_engine_for(database_url)
    ensure_schema(engine, auto_migrate=True)
    try:
        records, reasons, counts = refuse_all_writes(engine, database_url, "full")
        assert (counts.new, counts.quarantined, counts.unwritten) == (0, 0, 30)
        assert len(reasons) == 1
        assert "disk is full" in reasons[0]
        assert count(engine, models.Quarantine) == 0
        assert stored_numbers(engine) == [r.ncj_number for r in records[:10]]
    finally:
        engine.dispose()


def test_error_kinds() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    def sqlite_error(cls: type, message: str) -> Exception:
        return cls("INSERT ...", {}, sqlite3.OperationalError(message))

    assert error_kind(sqlite_error(OperationalError, "database is locked")) == "transient"
    assert error_kind(sqlite_error(OperationalError, "database or disk is full")) == "fatal"
    assert error_kind(sqlite_error(OperationalError, "attempt to write a readonly database")) == (
        "fatal"
    )
    assert error_kind(sqlite_error(IntegrityError, "UNIQUE constraint failed")) == "refused"
    assert error_kind(OverflowError("int too big")) == "refused"
