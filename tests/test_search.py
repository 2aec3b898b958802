"""Full-text search (harvester/search.py) and the views of migration 0004, on both databases."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from harvester.db import ensure_schema
from harvester.errors import SearchError
from harvester.items import Person, Record
from harvester.search import QueryWord, parse_query, search
from tests.support import fixture_records, store_records

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_record(ncj: int, title: str, **fields: object) -> Record:
    return Record(
        ncj_number=ncj,
        title=title,
        source_url=f"https://www.ojp.gov/ncjrs/virtual-library/abstracts/r{ncj}",
        fetched_at=T0,
        layout="current",
        **fields,  # type: ignore[arg-type]
    )


store = store_records


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def numbers(engine: Engine, query: str, limit: int = 50) -> list[int]:
    with engine.connect() as connection:
        return [hit.ncj_number for hit in search(connection, query, limit)]


def ranked(engine: Engine, query: str) -> list[tuple[int, int]]:
    with engine.connect() as connection:
        return [(hit.ncj_number, hit.tier) for hit in search(connection, query, 100)]


# --- the query language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("police", [QueryWord("police", False)]),
        ('"Police" AND chief!', [QueryWord("Police", False), QueryWord("AND", False),
                                 QueryWord("chief", False)]),
        ("polic* polic*", [QueryWord("polic", True)]),
        ("O'Brien 3.5", [QueryWord("O", False), QueryWord("Brien", False), QueryWord("3", False),
                         QueryWord("5", False)]),
        ("Müller_x", [QueryWord("Müller", False), QueryWord("x", False)]),
        ("Police police", [QueryWord("Police", False)]),
    ],
)  # fmt: skip
def test_parse_query(query: str, words: list[QueryWord]) -> None:
    assert parse_query(query) == words


@pytest.mark.parametrize("query", ["", "  ", "*", "-- ''"])
def test_a_query_without_words_is_refused(query: str) -> None:
    with pytest.raises(SearchError, match="no words"):
        parse_query(query)


def test_too_many_words_are_refused() -> None:
    with pytest.raises(SearchError, match="at most"):
        parse_query(" ".join(f"w{i}" for i in range(40)))


# --- searching stored fixtures -------------------------------------------------------------------


def test_finds_fixture_records_by_title_abstract_and_author_word(schema: Engine) -> None:
    records = fixture_records()
    store(schema, records)
    by_number = {r.ncj_number: r for r in records}
    chapter = by_number[206598]
    assert chapter.title
    assert chapter.abstract
    assert 206598 in numbers(schema, "juvenile justice sourcebook")
    abstract_word = next(w for w in chapter.abstract.split() if w.isalpha() and len(w) > 8)
    assert abstract_word.lower() not in chapter.title.lower()
    assert 206598 in numbers(schema, abstract_word)
    with_people = [r for r in records if r.authors]
    assert len(with_people) >= 5
    for record in with_people:
        for person in record.authors:
            assert person.family
            assert record.ncj_number in numbers(schema, person.family), person
    # Every hit holds every word somewhere.
    for hit in numbers(schema, "juvenile justice"):
        record = by_number[hit]
        haystack = " ".join(
            [
                record.title or "",
                record.annotation or "",
                record.abstract or "",
                *(p.name for p in record.authors + record.editors),
                *record.corporate_authors,
            ]
        ).lower()
        assert "juvenile" in haystack
        assert "justice" in haystack


def test_ranking_is_by_tier_then_newest_first(schema: Engine) -> None:
    store(
        schema,
        [
            make_record(1001, "Gangs in the title"),
            make_record(1002, "Nothing here", abstract="About gangs."),
            make_record(1003, "Nothing here", annotation="Gangs.", abstract="gangs again"),
            make_record(1004, "Nothing", authors=[Person("Ann Gangs", "Gangs", "Ann")]),
            make_record(1005, "Also gangs in the title"),
            make_record(1006, "gangs everywhere", annotation="gangs", abstract="gangs",
                        authors=[Person("Bo Gangs", "Gangs", "Bo")]),
            make_record(1007, "Unrelated", abstract="gangster is another word"),
            make_record(1008, "Street gangs", abstract="in Chicago",
                        corporate_authors=["Chicago Crime Commission"]),
            make_record(1009, "Chicago", abstract="youth gangs"),
        ],
    )  # fmt: skip
    assert ranked(schema, "gangs") == [
        (1008, 1), (1006, 1), (1005, 1), (1001, 1),
        (1004, 2),
        (1009, 3), (1003, 3), (1002, 3),
    ]  # fmt: skip
    # Tiers need every word in their fields: a word in the title and one in the people is
    # tier 2, one in the title and one in the abstract tier 3.
    assert ranked(schema, "gangs chicago") == [(1008, 2), (1009, 3)]
    # Prefix words reach gangster; all words must match.
    assert 1007 in numbers(schema, "gang*")
    assert numbers(schema, "gangs title also") == [1005]
    assert numbers(schema, "gangs nowhere") == []
    # The limit cuts the ranking, across tiers too.
    assert numbers(schema, "GANGS", limit=2) == [1008, 1006]
    assert numbers(schema, "GANGS", limit=5) == [1008, 1006, 1005, 1001, 1004]
    assert numbers(schema, "GANGS", limit=6) == [1008, 1006, 1005, 1001, 1004, 1009]


def test_the_index_follows_every_write_path(schema: Engine) -> None:
    record = make_record(2001, "Original heading", abstract="first text")
    store(schema, [record])
    assert numbers(schema, "original") == [2001]
    # A re-parse that changed the record (the crawl's upsert path): old words are gone.
    changed = dataclasses.replace(
        record, title="Revised heading", authors=[Person("Zed Quimby", "Quimby", "Zed")]
    )
    store(schema, [changed])
    assert numbers(schema, "original") == []
    assert numbers(schema, "revised quimby") == [2001]
    with schema.begin() as connection:  # hand SQL
        connection.execute(
            text("UPDATE records SET abstract = 'hand written words' WHERE ncj_number = 2001")
        )
        connection.execute(
            text("UPDATE record_contributors SET name_as_shown = 'Zed Xylander'"
                 " WHERE ncj_number = 2001")
        )  # fmt: skip
    assert numbers(schema, "handwritten") == []
    assert numbers(schema, "hand written xylander") == [2001]
    assert numbers(schema, "quimby") == []
    with schema.begin() as connection:
        connection.execute(text("DELETE FROM record_contributors WHERE ncj_number = 2001"))
    assert numbers(schema, "xylander") == []
    assert numbers(schema, "revised") == [2001]
    with schema.begin() as connection:
        connection.execute(text("DELETE FROM records WHERE ncj_number = 2001"))
    assert numbers(schema, "revised") == []


def test_words_are_letters_and_digits_without_stemming_or_accent_folding(schema: Engine) -> None:
    store(
        schema,
        [
            make_record(3001, "Prisons of 2009-IJ-CX-0001 at www.ojp.gov",
                        authors=[Person("Hans Müller", "Müller", "Hans"),
                                 Person("Sean O'Brien", "O'Brien", "Sean")]),
            make_record(3002, "A prison", abstract="Costs of 3.5 million"),
        ],
    )  # fmt: skip
    assert numbers(schema, "prison") == [3002]
    assert numbers(schema, "prison*") == [3002, 3001]
    assert numbers(schema, "costs") == [3002]
    assert numbers(schema, "ij cx 0001") == [3001]
    assert numbers(schema, "ojp") == [3001]
    assert numbers(schema, "MÜLLER") == [3001]
    assert numbers(schema, "muller") == []
    assert numbers(schema, "brien") == [3001]
    assert numbers(schema, "3.5") == [3002]


# --- views ------------------------------------------------------------------------------------

SUMMARY_COLUMNS = [
    "ncj_number", "title", "authors", "editors", "corporate_authors", "journal_citation", "year",
    "page_count", "url",
]  # fmt: skip
PEOPLE_COLUMNS = [
    "ncj_number", "role", "position", "name", "contributor_id", "kind", "family", "given",
    "suffix",
]  # fmt: skip


def test_views_have_the_documented_columns_and_page_order(schema: Engine) -> None:
    records = fixture_records()
    store(schema, records)
    with schema.connect() as connection:
        summary = connection.execute(text("SELECT * FROM record_summary ORDER BY ncj_number"))
        assert list(summary.keys()) == SUMMARY_COLUMNS
        rows = {row.ncj_number: row for row in summary}
        people = connection.execute(
            text("SELECT * FROM record_people ORDER BY ncj_number, role, position")
        )
        assert list(people.keys()) == PEOPLE_COLUMNS
        people_rows = people.all()
    assert set(rows) == {r.ncj_number for r in records}
    for record in records:
        row = rows[record.ncj_number]
        assert row.title == record.title
        assert row.authors == ("; ".join(p.name for p in record.authors) or None)
        assert row.editors == ("; ".join(p.name for p in record.editors) or None)
        assert row.corporate_authors == ("; ".join(record.corporate_authors) or None)
        assert row.journal_citation == (record.journal.raw if record.journal else None)
        assert row.year == (record.published.year if record.published else None)
        assert row.page_count == record.page_count
        assert row.url == record.source_url
        authors = [p for p in people_rows if p.ncj_number == record.ncj_number
                   and p.role == "author"]  # fmt: skip
        assert [p.name for p in authors] == [p.name for p in record.authors]
        assert [p.position for p in authors] == list(range(len(record.authors)))


def test_views_page_order_is_not_insertion_order(schema: Engine) -> None:
    store(schema, [make_record(4001, "Order")])
    with schema.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contributors (id, name, normalized_name, kind) VALUES"
                " (901, 'Third', 'third', 'person'), (902, 'First', 'first', 'person'),"
                " (903, 'Second', 'second', 'person')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO record_contributors"
                " (ncj_number, role, position, contributor_id, name_as_shown) VALUES"
                " (4001, 'author', 2, 901, 'Third'), (4001, 'author', 0, 902, 'First'),"
                " (4001, 'author', 1, 903, 'Second')"
            )
        )
    with schema.connect() as connection:
        authors = connection.execute(
            text("SELECT authors FROM record_summary WHERE ncj_number = 4001")
        ).scalar_one()
    assert authors == "First; Second; Third"
    assert numbers(schema, "second third") == [4001]


# --- the same order on both databases ------------------------------------------------------------

CROSS_QUERIES = [
    "police", "Police officers", "juvenile justice", "polic*", "smith", "greene jean",
    "restitution", "crime delinquency", "alcohol tobacco firearms", "1978", "n 17", "müller",
    "o brien", "correctional facilities", "evaluation", "j*", "probation* parole", "nlectc",
]  # fmt: skip


@pytest.mark.postgres
def test_both_databases_rank_the_same_records_in_the_same_order(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from benchmarks.generated_records import generated_records
    from harvester.db import create_engine_for
    from tests.conftest import drop_postgres_database, new_postgres_database, postgres_server_url

    server = postgres_server_url()
    postgres_url, name = new_postgres_database(server)
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('cross') / 'search.sqlite'}"
    engines = [create_engine_for(sqlite_url), create_engine_for(postgres_url)]
    try:
        records = [*generated_records(400, seed=11), *fixture_records()]
        for engine in engines:
            ensure_schema(engine, auto_migrate=True)
            store(engine, records)
        compared = 0
        for query in CROSS_QUERIES:
            on_sqlite, on_postgresql = (ranked(engine, query) for engine in engines)
            assert on_sqlite == on_postgresql, query
            compared += len(on_sqlite)
        # The queries must exercise the ranking, not compare empty lists.
        assert compared > 500
        assert all(ranked(engines[0], q) for q in CROSS_QUERIES[:6])
    finally:
        for engine in engines:
            engine.dispose()
        drop_postgres_database(server, name)


def documented_view_queries() -> list[str]:
    """The SQL statements of docs/schema.md's "Example queries on the views" block."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text(encoding="utf-8")
    section = doc.split("### Example queries on the views", 1)[1]
    block = section.split("```sql", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def test_the_documented_view_queries_run(schema: Engine) -> None:
    records = fixture_records()
    store(schema, records)
    queries = documented_view_queries()
    assert len(queries) == 5
    with schema.connect() as connection:
        results = [connection.execute(text(query)).all() for query in queries]
    newest, _, first_authors, prolific, hickman = results
    assert [row.ncj_number for row in newest] == sorted(
        (r.ncj_number for r in records), reverse=True
    )[:20]
    assert {row.name for row in first_authors} == {r.authors[0].name for r in records if r.authors}
    assert prolific
    assert [row.ncj_number for row in hickman] == [210296]


def test_the_migration_indexes_records_stored_before_it(engine: Engine) -> None:
    """Upgrading a database that already holds records backfills the index; downgrading
    removes every search object and leaves the records alone."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from harvester.db import alembic_config

    # Found by file name: the revision id is the chain's next number, whatever it is.
    migration = next(
        revision
        for revision in ScriptDirectory.from_config(alembic_config()).walk_revisions()
        if revision.path is not None and revision.path.endswith("_views_and_search.py")
    )
    before = migration.down_revision
    assert isinstance(before, str)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), before)
        connection.execute(
            text(
                "INSERT INTO records (ncj_number, title, abstract, document_urls, extra_fields,"
                " layout, source_url, first_seen_at, last_seen_at, last_changed_at, content_hash)"
                " VALUES (5001, 'Older record on truancy', 'Stored before the search index.',"
                " '[]', '{}', 'current', 'https://example.org/5001', :t, :t, :t, 'x')"
            ),
            {"t": T0},
        )
        connection.execute(
            text(
                "INSERT INTO contributors (id, name, normalized_name, kind)"
                " VALUES (1, 'Ada Lovelace', 'ada lovelace', 'person')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO record_contributors"
                " (ncj_number, role, position, contributor_id, name_as_shown)"
                " VALUES (5001, 'author', 0, 1, 'Ada Lovelace')"
            )
        )
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), migration.revision)
    assert ranked(engine, "truancy") == [(5001, 1)]
    assert ranked(engine, "lovelace truancy") == [(5001, 2)]
    assert ranked(engine, "index") == [(5001, 3)]
    with engine.connect() as connection:
        summary = connection.execute(text("SELECT authors FROM record_summary")).scalar_one()
    assert summary == "Ada Lovelace"
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), before)
    with engine.connect() as connection:
        inspector = inspect(connection)
        assert not {"record_summary", "record_people"} & set(inspector.get_view_names())
        assert not [t for t in inspector.get_table_names() if t.startswith("records_fts")]
        columns = {c["name"] for c in inspector.get_columns("records")}
        assert not [c for c in columns if c.startswith("search_vector")]
        assert connection.execute(text("SELECT COUNT(*) FROM records")).scalar_one() == 1
        if connection.dialect.name == "postgresql":
            leftovers = "SELECT proname FROM pg_proc WHERE proname LIKE 'record%search%'"
        else:
            leftovers = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        assert connection.execute(text(leftovers)).all() == []
