"""Record versions written by store.write_batch, on real SQLite files and real PostgreSQL."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, select, text

from harvester import models
from harvester.conflicts import RunSightings
from harvester.db import alembic_config, ensure_schema, migration_connection
from harvester.history import RecordHistory, content_of, record_history
from harvester.items import RawRecord, Record
from harvester.normalize import content_hash, normalize_record, record_content
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.store import start_run, write_batch
from tests.support import response_from_file

T0 = datetime(2026, 10, 15, 8, 30, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def fixture_record(name: str) -> Record:
    page = parse_page(response_from_file(name))
    assert isinstance(page, RawRecord)
    return normalize_record(page)


def write(
    engine: Engine,
    records: list[Record],
    now: datetime,
    *,
    run_id: int | None = None,
    counted: set[int] | None = None,
    history: RecordHistory | None = None,
) -> None:
    with engine.begin() as connection:
        counts = write_batch(
            connection,
            [(r, content_hash(r)) for r in records],
            [],
            now=now,
            run_id=run_id,
            counted=counted if counted is not None else set(),
            history=history,
        )
    if counted is not None:
        counted |= counts.counted


def versions(engine: Engine, ncj_number: int) -> list[models.RecordVersion]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(models.RecordVersion)
            .where(models.RecordVersion.ncj_number == ncj_number)
            .order_by(models.RecordVersion.version)
        ).all()
    return [models.RecordVersion(**row._mapping) for row in rows]


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def test_the_first_sighting_is_version_1_with_every_field_new(schema: Engine) -> None:
    record = fixture_record("current_78126")
    run_id = start_run(schema, "test", {})
    write(schema, [record], T0, run_id=run_id)
    (first,) = versions(schema, 78126)
    content = record_content(record)
    assert first.version == 1
    assert first.changes == {name: {"new": value} for name, value in content.items()}
    assert first.changed_fields == ",".join(content)
    assert first.changed_fields.startswith("ncj_number,title,")
    assert first.content_hash == content_hash(record)
    assert (first.crawl_run_id, first.parser_version) == (run_id, PARSER_VERSION)
    assert first.source_url == record.source_url
    assert first.observed_at == T0
    assert first.raw_page_sha256 is None  # no page handed over
    with schema.connect() as connection:
        stored = connection.execute(select(models.Record.parser_version)).scalar_one()
    assert stored == PARSER_VERSION


def test_a_change_stores_the_changed_fields_with_old_and_new_values(schema: Engine) -> None:
    record = fixture_record("current_78126")
    write(schema, [record], T0)
    write(schema, [fixture_record("current_78126")], T0 + timedelta(days=1))  # unchanged
    changed = dataclasses.replace(record, abstract="A corrected abstract.", page_count=11)
    write(schema, [changed], T1)
    write(schema, [changed], T1 + timedelta(days=1))  # unchanged again
    first, second = versions(schema, 78126)
    assert second.version == 2
    assert second.changes == {
        "page_count": {"old": record.page_count, "new": 11},
        "abstract": {"old": record.abstract, "new": "A corrected abstract."},
    }
    assert second.changed_fields == "page_count,abstract"
    assert second.observed_at == T1
    # The versions replay to the stored content, and the last one's hash is the record's.
    assert content_of([first.changes, second.changes]) == record_content(changed)
    with schema.connect() as connection:
        digest = connection.execute(select(models.Record.content_hash)).scalar_one()
        history = record_history(connection, 78126)
    assert second.content_hash == digest == content_hash(changed)
    assert [h["content"] for h in history] == [record_content(record), record_content(changed)]


@pytest.mark.parametrize("richer_first", [True, False], ids=["richer-first", "richer-last"])
def test_a_run_keeps_one_version_per_record_whatever_the_arrival_order(
    schema: Engine, richer_first: bool
) -> None:
    """Two pages of one record in one run, in separate batches: one version, the richer page's."""
    base = fixture_record("current_78126")
    write(schema, [base], T0, run_id=start_run(schema, "test", {}))
    poorer = dataclasses.replace(base, abstract=None, note="poorer page")
    richer = dataclasses.replace(base, note="richer page")
    run_id = start_run(schema, "test", {})
    sightings, counted = RunSightings(), set[int]()
    for page in (richer, poorer) if richer_first else (poorer, richer):
        if sightings.offer(page, content_hash(page)).keep:  # what DedupePipeline does
            write(schema, [page], T1, run_id=run_id, counted=counted)
    first, second = versions(schema, 78126)
    assert (first.version, second.version, second.crawl_run_id) == (1, 2, run_id)
    assert second.changes == {"note": {"old": None, "new": "richer page"}}
    assert second.content_hash == content_hash(richer)


def test_a_run_that_ends_where_it_started_leaves_no_version(schema: Engine) -> None:
    base = fixture_record("current_78126")
    write(schema, [base], T0, run_id=start_run(schema, "test", {}))
    run_id = start_run(schema, "test", {})
    poorer = dataclasses.replace(base, abstract=None)
    write(schema, [poorer], T1, run_id=run_id)  # first page of the run: a change
    assert [v.version for v in versions(schema, 78126)] == [1, 2]
    write(schema, [base], T1, run_id=run_id)  # a richer page, as stored before the run
    assert [v.version for v in versions(schema, 78126)] == [1]


def test_a_record_first_stored_in_a_run_and_rewritten_in_it_stays_version_1(
    schema: Engine,
) -> None:
    base = fixture_record("current_78126")
    run_id = start_run(schema, "test", {})
    write(schema, [dataclasses.replace(base, abstract=None)], T0, run_id=run_id)
    write(schema, [base], T0, run_id=run_id)
    (first,) = versions(schema, 78126)
    assert first.changes == {name: {"new": v} for name, v in record_content(base).items()}


def test_a_record_stored_before_versions_gets_version_1_at_its_first_change(
    schema: Engine,
) -> None:
    record = fixture_record("current_191386")
    write(schema, [record], T0)
    with schema.begin() as connection:  # as a record stored by schema 0001 would be
        connection.execute(delete(models.RecordVersion))
    changed = dataclasses.replace(record, title="A new title")
    write(schema, [changed], T1)
    (first,) = versions(schema, 191386)
    assert first.version == 1
    assert first.changes["title"] == {"new": "A new title"}


def test_a_reparse_touches_parser_version_but_not_last_seen(schema: Engine) -> None:
    record = fixture_record("current_191386")
    write(schema, [record], T0)
    write(schema, [record], T1, history=RecordHistory(parser_version=7, sighting=False))
    with schema.connect() as connection:
        row = connection.execute(
            select(models.Record.parser_version, models.Record.last_seen_at)
        ).one()
    assert tuple(row) == (7, T0)
    changed = dataclasses.replace(record, note="re-parsed")
    write(schema, [changed], T1, history=RecordHistory(parser_version=8, sighting=False))
    with schema.connect() as connection:
        row = connection.execute(
            select(
                models.Record.parser_version,
                models.Record.last_seen_at,
                models.Record.last_changed_at,
            )
        ).one()
    assert tuple(row) == (8, T0, T1)
    assert [v.parser_version for v in versions(schema, 191386)] == [PARSER_VERSION, 8]


def documented_queries() -> dict[str, str]:
    """The SQL of the history section of docs/schema.md, by its leading comment."""
    section = SCHEMA_DOC.read_text(encoding="utf-8").split("## Record history", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert block is not None
    queries = {}
    for statement in block.group(1).split(";"):
        lines = statement.strip().splitlines()
        if lines:
            assert lines[0].startswith("-- "), lines[0]
            queries[lines[0][3:]] = "\n".join(lines[1:])
    return queries


def test_the_documented_queries_run_unchanged_and_answer(schema: Engine) -> None:
    queries = documented_queries()
    journal = fixture_record("current_78126")
    chapter = fixture_record("legacy_206598")
    write(schema, [journal, chapter], T0, run_id=start_run(schema, "ncjrs", {}))
    run_id = start_run(schema, "ncjrs", {})
    changed = dataclasses.replace(journal, abstract="A corrected abstract.")
    added = fixture_record("current_191386")
    write(schema, [changed, added, chapter], T1, run_id=run_id)

    def run(title_start: str) -> list[Any]:
        (sql,) = [sql for title, sql in queries.items() if title.startswith(title_start)]
        with schema.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]

    since = run("What changed since a date")
    assert [(n, v, fields) for n, v, _, fields, _ in since] == [
        (78126, 2, "abstract"),
        (191386, 1, ",".join(record_content(added))),
    ]
    assert [(n, count) for n, count, _ in run("Records changed (not added)")] == [(78126, 1)]
    assert [(n, v) for n, v, _ in run("Records whose abstract changed")] == [(78126, 2)]
    history = run("History of NCJ 78126")
    assert [(v, run_, spider, fields) for v, _, run_, spider, _, _, fields, _ in history] == [
        (1, run_id - 1, "ncjrs", ",".join(record_content(journal))),
        (2, run_id, "ncjrs", "abstract"),
    ]
    assert [tuple(map(int, row[:2])) + row[2:] for row in run("Records a re-parse")] == [
        (0, PARSER_VERSION, 3)
    ]
    assert run("Open quarantine") == []


def test_upgrading_a_database_with_records_keeps_them(engine: Engine) -> None:
    """0001 -> head rebuilds tables on SQLite: no row of any table may be lost on the way."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO records (ncj_number, title, document_urls, extra_fields, layout,"
                " source_url, first_seen_at, last_seen_at, last_changed_at, content_hash)"
                " VALUES (1, 'Kept', '[]', '{}', 'current', 'https://x/1', :t, :t, :t, 'h')"
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO contributors (id, name, normalized_name, kind)"
                " VALUES (5, 'A', 'a', 'person')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO record_contributors (ncj_number, role, position, contributor_id,"
                " name_as_shown) VALUES (1, 'author', 0, 5, 'A')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO quarantine (url, reason, fetched_at)"
                " VALUES ('https://x/2', 'missing_title', :t)"
            ),
            {"t": T0},
        )
    with migration_connection(engine) as connection:  # what `harvester migrate` runs
        command.upgrade(alembic_config(connection), "head")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT title, parser_version FROM records")).all() == [
            ("Kept", None)
        ]
        assert connection.scalar(text("SELECT COUNT(*) FROM record_contributors")) == 1
        assert connection.execute(
            text("SELECT reason, resolved_at, raw_page_sha256 FROM quarantine")
        ).all() == [("missing_title", None, None)]
        assert connection.scalar(select(func.count()).select_from(models.RecordVersion)) == 0
