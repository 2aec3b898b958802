"""harvester.models on the migrated schema: types, constraints and names, on both dialects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from harvester.db import create_engine_for, ensure_schema, session_factory
from harvester.models import (
    NAMING_CONVENTION,
    Agency,
    Base,
    Contributor,
    CrawlRun,
    Quarantine,
    Record,
    RecordAgency,
    RecordContributor,
    RecordGrant,
    RecordSubject,
)
from harvester.search import is_search_index_object

T0 = datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


@pytest.fixture
def session(schema: Engine) -> Iterator[Session]:
    with session_factory(schema)() as session:
        yield session


def make_record(ncj_number: int = 191386, **overrides: object) -> Record:
    values: dict[str, object] = {
        "ncj_number": ncj_number,
        "title": "Juvenile Offenders and Victims: 2006 National Report",
        "source_url": f"https://www.ojp.gov/ncjrs/virtual-library/abstracts/{ncj_number}",
        "layout": "current",
        "first_seen_at": T0,
        "last_seen_at": T0,
        "last_changed_at": T0,
        "content_hash": "ab" * 32,
    }
    values.update(overrides)
    return Record(**values)


def test_every_constraint_and_index_is_named_by_the_convention() -> None:
    prefixes = tuple(f"{key}_" for key in NAMING_CONVENTION)
    for table in Base.metadata.tables.values():
        for constraint in table.constraints:
            assert isinstance(constraint.name, str), (table.name, constraint)
            assert constraint.name.startswith(prefixes), constraint.name
        for index in table.indexes:
            assert index.name == f"ix_{table.name}_{next(iter(index.columns)).name}"


def test_database_has_the_conventional_names(schema: Engine) -> None:
    inspector = inspect(schema)
    assert inspector.get_pk_constraint("records")["name"] == "pk_records"
    assert {c["name"] for c in inspector.get_unique_constraints("contributors")} == {
        "uq_contributors_normalized_name"
    }
    assert {c["name"] for c in inspector.get_check_constraints("record_contributors")} == {
        "ck_record_contributors_role",
        "ck_record_contributors_position",
    }
    assert {f["name"] for f in inspector.get_foreign_keys("record_contributors")} == {
        "fk_record_contributors_ncj_number_records",
        "fk_record_contributors_contributor_id_contributors",
    }
    # Less the search index's GIN indexes (PostgreSQL, migration 0004, not models).
    model_indexes = {
        i["name"] for i in inspector.get_indexes("records")
        if not is_search_index_object(i["name"], "index")
    }  # fmt: skip
    assert model_indexes == {
        "ix_records_published_year",
        "ix_records_journal_name",
        "ix_records_last_changed_at",
    }
    assert {i["name"] for i in inspector.get_indexes("quarantine")} == {"ix_quarantine_reason"}


def test_ncj_number_is_assigned_not_generated(schema: Engine) -> None:
    (column,) = [c for c in inspect(schema).get_columns("records") if c["name"] == "ncj_number"]
    assert column["default"] is None  # no sequence / serial behind it on PostgreSQL
    assert Record.__table__.c.ncj_number.autoincrement is False


def test_part_of_is_not_a_foreign_key(session: Session) -> None:
    """A chapter is stored even though its book (NCJ 206597) was never harvested."""
    session.add(make_record(206598, part_of=206597, part_pages="5-40", book_title="Sourcebook"))
    session.commit()
    assert session.get(Record, 206598).part_of == 206597
    assert not [
        fk
        for fk in inspect(session.get_bind()).get_foreign_keys("records")
        if "part_of" in fk["constrained_columns"]
    ]


def test_timestamps_come_back_as_aware_utc(session: Session) -> None:
    local = T0.astimezone(timezone(timedelta(hours=-5)))  # the same instant, elsewhere
    session.add(make_record(first_seen_at=local, last_seen_at=T0, last_changed_at=T0))
    session.commit()
    session.expire_all()
    record = session.get(Record, 191386)
    for value in (record.first_seen_at, record.last_seen_at, record.last_changed_at):
        assert value == T0
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


def test_sqlite_stores_naive_utc_text(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'utc.sqlite'}")
    try:
        ensure_schema(engine, auto_migrate=True)
        with session_factory(engine)() as session:
            session.add(make_record(first_seen_at=T0.astimezone(timezone(timedelta(hours=2)))))
            session.commit()
            raw = session.execute(text("SELECT first_seen_at FROM records")).scalar_one()
        assert raw == "2024-05-17 12:30:15.123456"  # sortable as text, always UTC
    finally:
        engine.dispose()


def test_timestamps_compare_in_utc(session: Session) -> None:
    session.add(make_record(last_changed_at=T0))
    session.commit()
    later_elsewhere = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=9)))
    found = session.scalars(
        select(Record.ncj_number).where(Record.last_changed_at < later_elsewhere)
    )
    assert list(found) == [191386]


def test_naive_timestamps_are_refused(session: Session) -> None:
    session.add(make_record(first_seen_at=datetime(2024, 5, 17, 12, 30)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.commit()


def test_json_columns_round_trip(session: Session) -> None:
    urls = ["https://www.ojp.gov/pdffiles1/ojjdp/212906.pdf"]
    extra = {"Dewey Decimal": ["364.36"], "Résumé": ["naïve café — “quoted”"]}
    session.add(make_record(document_urls=urls, extra_fields=extra, date_created=date(2006, 3, 1)))
    session.add(CrawlRun(spider="records", arguments={"start": 1, "ids": [1, 2]}, started_at=T0))
    session.commit()
    session.expire_all()
    record = session.get(Record, 191386)
    assert record.document_urls == urls
    assert record.extra_fields == extra
    assert record.date_created == date(2006, 3, 1)
    run = session.scalars(select(CrawlRun)).one()
    assert run.arguments == {"start": 1, "ids": [1, 2]}
    assert run.stats is None


def test_json_lists_default_to_empty(session: Session) -> None:
    session.add(make_record())
    session.commit()
    session.expire_all()
    record = session.get(Record, 191386)
    assert record.document_urls == []
    assert record.extra_fields == {}


def test_missing_raw_is_sql_null(session: Session) -> None:
    session.add(Quarantine(url="https://x/1", reason="missing_title", raw=None, fetched_at=T0))
    session.add(Quarantine(url="https://x/2", reason="missing_title", raw={"a": 1}, fetched_at=T0))
    session.commit()
    nulls = session.scalar(
        select(func.count()).select_from(Quarantine).where(Quarantine.raw.is_(None))
    )
    assert nulls == 1


def test_crawl_run_counters_default_to_zero_in_sql_too(schema: Engine) -> None:
    with schema.begin() as connection:
        connection.execute(
            text("INSERT INTO crawl_runs (spider, arguments, started_at) VALUES ('r', '{}', :t)"),
            {"t": T0 if schema.dialect.name == "postgresql" else "2024-05-17 12:30:15"},
        )
        row = connection.execute(select(CrawlRun.__table__)).mappings().one()
    for counter in (
        "pages_fetched",
        "records_new",
        "records_updated",
        "records_unchanged",
        "records_quarantined",
        "errors",
    ):
        assert row[counter] == 0


def add_full_record(session: Session) -> None:
    run = CrawlRun(spider="records", started_at=T0)
    hickman = Contributor(
        name="Matthew J Hickman Ph.D.",
        normalized_name="hickman, matthew j",
        family="Hickman",
        given="Matthew J",
        suffix="Ph.D.",
        kind="person",
    )
    bjs = Contributor(
        name="Bureau of Justice Statistics", normalized_name="bjs", kind="organization"
    )
    nij = Agency(
        name="National Institute of Justice", normalized_name="national institute of justice"
    )
    record = make_record(crawl_run=run)
    record.contributor_links = [
        RecordContributor(
            role="author", position=0, contributor=hickman, name_as_shown=hickman.name
        ),
        RecordContributor(
            role="corporate_author", position=0, contributor=bjs, name_as_shown=bjs.name
        ),
    ]
    record.agency_links = [
        RecordAgency(role="sponsor", position=0, agency=nij, name_as_shown=nij.name)
    ]
    record.grants = [RecordGrant(grant_number="2009-IJ-CX-0001")]
    record.subjects = [RecordSubject(subject="Police"), RecordSubject(subject="Juveniles")]
    session.add(record)
    session.commit()


def test_a_record_with_all_its_lists(session: Session) -> None:
    add_full_record(session)
    session.expire_all()
    record = session.get(Record, 191386)
    assert [(link.role, link.contributor.name) for link in record.contributor_links] == [
        ("author", "Matthew J Hickman Ph.D."),
        ("corporate_author", "Bureau of Justice Statistics"),
    ]
    assert [link.agency.name for link in record.agency_links] == ["National Institute of Justice"]
    assert [g.grant_number for g in record.grants] == ["2009-IJ-CX-0001"]
    assert [s.subject for s in record.subjects] == ["Juveniles", "Police"]
    assert record.crawl_run is not None
    assert record.crawl_run.spider == "records"


def test_deleting_a_record_cascades_in_the_database(session: Session) -> None:
    """ON DELETE CASCADE is enforced by the database itself (foreign_keys=ON on SQLite)."""
    add_full_record(session)
    session.execute(delete(Record.__table__).where(Record.__table__.c.ncj_number == 191386))
    session.commit()
    for model in (RecordContributor, RecordAgency, RecordGrant, RecordSubject):
        assert session.scalar(select(func.count()).select_from(model)) == 0
    # The shared rows stay: other records may name them.
    assert session.scalar(select(func.count()).select_from(Contributor)) == 2


def test_deleting_a_crawl_run_keeps_its_records(session: Session) -> None:
    add_full_record(session)
    session.execute(delete(CrawlRun.__table__))
    session.commit()
    session.expire_all()
    assert session.get(Record, 191386).crawl_run_id is None


def _link(**overrides: object) -> dict[str, object]:
    return {
        "ncj_number": 191386,
        "role": "author",
        "position": 0,
        "contributor_id": 1,
        "name_as_shown": "Joseph R. Greene",
        **overrides,
    }


VIOLATIONS: dict[str, Callable[[], Executable]] = {
    "subject of an unknown record": lambda: insert(RecordSubject.__table__).values(
        ncj_number=1, subject="Police"
    ),
    "grant of an unknown record": lambda: insert(RecordGrant.__table__).values(
        ncj_number=1, grant_number="X"
    ),
    "link to an unknown contributor": lambda: insert(RecordContributor.__table__).values(
        _link(contributor_id=999)
    ),
    "contributor role": lambda: insert(RecordContributor.__table__).values(_link(role="writer")),
    "negative position": lambda: insert(RecordContributor.__table__).values(_link(position=-1)),
    "contributor kind": lambda: insert(Contributor.__table__).values(
        name="B", normalized_name="b", kind="robot"
    ),
    "agency role": lambda: insert(RecordAgency.__table__).values(
        ncj_number=191386, role="funder", position=0, agency_id=1
    ),
    "date precision": lambda: insert(Record.__table__).values(
        _record_row(2, published_precision="decade")
    ),
    "layout": lambda: insert(Record.__table__).values(_record_row(2, layout="fancy")),
    "month": lambda: insert(Record.__table__).values(_record_row(2, published_month=13)),
}


@pytest.mark.parametrize("violation", list(VIOLATIONS))
def test_constraints_are_enforced(schema: Engine, violation: str) -> None:
    with schema.begin() as connection:
        connection.execute(insert(Record.__table__).values(_record_row()))
        connection.execute(
            insert(Contributor.__table__).values(id=1, name="A", normalized_name="a", kind="person")
        )
        connection.execute(insert(Agency.__table__).values(id=1, name="N", normalized_name="n"))
        connection.execute(insert(RecordContributor.__table__).values(_link(position=5)))
    with pytest.raises(IntegrityError), schema.begin() as connection:
        connection.execute(VIOLATIONS[violation]())


def _record_row(ncj_number: int = 191386, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "ncj_number": ncj_number,
        "title": "T",
        "source_url": "https://x",
        "layout": "current",
        "document_urls": [],
        "extra_fields": {},
        "first_seen_at": T0,
        "last_seen_at": T0,
        "last_changed_at": T0,
        "content_hash": "0" * 64,
    }
    row.update(overrides)
    return row


def test_normalized_names_are_unique(session: Session) -> None:
    session.add(Contributor(name="J. Walsh", normalized_name="walsh, j", kind="person"))
    session.add(Contributor(name="J Walsh", normalized_name="walsh, j", kind="person"))
    with pytest.raises(IntegrityError):
        session.commit()
