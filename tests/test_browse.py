"""`harvester browse`: the database in datasette, read-only (harvester.browse).

Runs datasette's own test client against the app `harvester browse` serves, on a real SQLite
file with the fixture pages' records (and generated ones) stored as a crawl stores them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from benchmarks.generated_records import generated_records
from harvester import browse
from harvester.cli import main
from harvester.db import create_engine_for, ensure_schema
from harvester.search import search
from tests.conftest import in_ci
from tests.support import REPO, fixture_records, store_records

try:
    import datasette  # noqa: F401
except ImportError:
    if in_ci():
        raise  # CI installs the test extra, which has datasette: a skip there would hide a gap
    pytest.skip(f"datasette is not installed ({browse.INSTALL_HINT})", allow_module_level=True)

# The fixture record with both people and agencies whose page the tests look at.
HICKMAN = 210296


@pytest.fixture(scope="module")
def records() -> list[Any]:
    stored = [*generated_records(300, seed=11), *fixture_records()]
    # Neither the fixture pages nor the generated site say "gangs", which the README's SQL
    # example searches for; one record that does makes that canned query return a row.
    gangs = dataclasses.replace(
        stored[0], ncj_number=999_001, title="Juvenile Gangs in Three Cities"
    )
    return [*stored, gangs]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, records: list[Any]) -> Path:
    path = tmp_path_factory.mktemp("browse") / "browse.sqlite"
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        ensure_schema(engine, auto_migrate=True)
        store_records(engine, records)
    finally:
        engine.dispose()
    return path


def get_json(database: Path, *paths: str) -> list[Any]:
    """GET each path from the app `harvester browse` serves; the JSON answers."""
    return [response.json() for response in get(database, *paths)]


def get(database: Path, *paths: str) -> list[Any]:
    path, mode = browse.prepare(str(database))
    app = browse.create_datasette(path, mode)

    async def fetch() -> list[Any]:
        answers = [await app.client.get(p) for p in paths]
        for p, answer in zip(paths, answers, strict=True):
            assert answer.status_code == 200, (p, answer.text[:500])
        return answers

    try:
        return asyncio.run(fetch())
    finally:
        app.get_database(browse.DATABASE_NAME).close()


def ncj_numbers(answer: dict[str, Any]) -> set[int]:
    return {row["ncj_number"] for row in answer["rows"]}


# --- Search: the records table's search box uses the full-text index -----------------------


def test_the_search_box_finds_a_record_by_a_word_of_its_title(database: Path) -> None:
    (page,) = get(database, "/ncjrs/records?_search=complaints")
    html = page.text
    assert 'name="_search"' in html  # the box is there: datasette knows the index
    assert "Citizen Complaints About Police Use of Force" in html
    (answer,) = get_json(database, "/ncjrs/records.json?_search=Complaints&_shape=objects")
    assert HICKMAN in ncj_numbers(answer)
    # Searching narrows the table (before the index was declared, it was silently ignored).
    (everything,) = get_json(database, "/ncjrs/records.json?_shape=objects")
    assert answer["filtered_table_rows_count"] < everything["filtered_table_rows_count"]


@pytest.mark.parametrize(
    "query",
    ["police", "juvenile justice", "polic*", "Hickman", "use-of-force", "\"corrections'", "!!"],
)
def test_the_search_box_matches_what_harvester_search_finds(database: Path, query: str) -> None:
    """Same words, same prefixes, same separators: the same records (datasette orders them
    by NCJ number, not by harvester search's tiers)."""
    (answer,) = get_json(
        database,
        f"/ncjrs/records.json?_search={query.replace('*', '%2A')}&_shape=objects&_size=max",
    )
    engine = create_engine_for(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            expected = {hit.ncj_number for hit in search(connection, query, limit=10_000)}
    except ValueError:
        expected = set()  # no words: harvester search refuses, the box finds nothing
    finally:
        engine.dispose()
    assert ncj_numbers(answer) == expected
    if query in ("police", "polic*", "Hickman"):
        assert expected


def test_a_prefix_finds_more_than_the_word(database: Path) -> None:
    word, prefix = get_json(
        database,
        "/ncjrs/records.json?_search=polic&_shape=objects&_size=max",
        "/ncjrs/records.json?_search=polic%2A&_shape=objects&_size=max",
    )
    assert not ncj_numbers(word)
    assert HICKMAN in ncj_numbers(prefix)


def test_an_emptied_search_box_shows_every_record(database: Path, records: list[Any]) -> None:
    (answer,) = get_json(database, "/ncjrs/records.json?_search=+&_shape=objects")
    assert answer["filtered_table_rows_count"] == len(records)


def test_the_summary_view_is_searchable_too(database: Path) -> None:
    (answer,) = get_json(database, "/ncjrs/record_summary.json?_search=Hickman&_shape=objects")
    assert HICKMAN in ncj_numbers(answer)
    assert "year" in answer["facet_results"]


# --- Facets ----------------------------------------------------------------------------------


def test_records_have_facets_for_year_type_journal_and_language(database: Path) -> None:
    page, answer = get(database, "/ncjrs/records", "/ncjrs/records.json?_shape=objects")
    facets = answer.json()["facet_results"]
    assert set(browse.RECORD_FACETS) <= set(facets)
    with sqlite3.connect(database) as connection:
        years = dict(
            connection.execute(
                "SELECT published_year, COUNT(*) FROM records"
                " WHERE published_year IS NOT NULL GROUP BY published_year"
            ).fetchall()
        )
        types = connection.execute(
            "SELECT COUNT(DISTINCT publication_type) FROM records"
        ).fetchone()[0]
    shown = {item["value"]: item["count"] for item in facets["published_year"]["results"]}
    assert shown
    assert all(years[year] == count for year, count in shown.items())
    assert len(facets["publication_type"]["results"]) == min(types, 10)  # default_facet_size
    assert facets["publication_type"]["truncated"] == (types > 10)
    assert facets["journal_name"]["results"]
    assert facets["language"]["results"]  # the legacy fixture pages say which
    for column in browse.RECORD_FACETS:
        assert f'data-column="{column}"' in page.text


# --- Canned queries: the README's and docs/schema.md's examples ------------------------------


def documented_queries() -> set[str]:
    """The SQL examples of README.md ("Using the data") that run on SQLite, and of
    docs/schema.md's "Example queries on the views", whitespace collapsed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    using = readme.split("## Using the data", 1)[1].split("\n## ", 1)[0]
    schema = (REPO / "docs" / "schema.md").read_text(encoding="utf-8")
    views = schema.split("### Example queries on the views", 1)[1]
    views = views.split("```sql", 1)[1].split("```", 1)[0]
    blocks = [*re.findall(r"```sql\n(.*?)```", using, re.DOTALL), views]
    statements = set()
    for block in blocks:
        # A statement follows its `-- title` comment; the PostgreSQL-only one is left out.
        for part in re.split(r"^-- ", block, flags=re.MULTILINE):
            title, _, sql = part.partition("\n")
            if not sql.strip() or title.strip() == "PostgreSQL":
                continue
            statements |= {normalized(s) for s in sql.split(";") if s.strip()}
    return statements


def normalized(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";")


def test_the_canned_queries_are_the_documented_examples() -> None:
    documented = documented_queries()
    assert len(documented) == 7
    assert {normalized(query.sql) for query in browse.CANNED_QUERIES} == documented


def test_every_canned_query_runs_and_returns_rows(database: Path) -> None:
    names = [query.name for query in browse.CANNED_QUERIES]
    answers = get_json(database, *(f"/ncjrs/{name}.json?_shape=objects" for name in names))
    with sqlite3.connect(database) as connection:
        for query, answer in zip(browse.CANNED_QUERIES, answers, strict=True):
            assert answer["rows"], query.name
            assert len(answer["rows"]) == len(connection.execute(query.sql).fetchall())
    (page,) = get(database, "/ncjrs")
    for query in browse.CANNED_QUERIES:
        assert query.title in page.text


# --- Record pages: people and agencies ------------------------------------------------------


def test_a_record_page_shows_its_people_and_agencies(database: Path, records: list[Any]) -> None:
    record = next(
        r
        for r in records
        if len(r.authors) > 1 and r.sponsoring_agencies and r.ncj_number < 999_001
    )
    (page,) = get(database, f"/ncjrs/records/{record.ncj_number}")
    people = page.text.split("<h2>People</h2>", 1)[1].split("<h2>Agencies</h2>", 1)
    shown_people, shown_agencies = people
    positions = [shown_people.index(f">{person.name}</a>") for person in record.authors]
    assert positions == sorted(positions)  # page order
    for agency in record.sponsoring_agencies:
        assert f">{agency}</a>" in shown_agencies
    assert "/ncjrs/contributors/" in shown_people
    assert "/ncjrs/agencies/" in shown_agencies


def test_the_hickman_page_names_him(database: Path) -> None:
    (page,) = get(database, f"/ncjrs/records/{HICKMAN}")
    assert ">Matthew J Hickman Ph.D.</a>" in page.text


# --- Read-only -------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_database_cannot_be_written_through_datasette(database: Path) -> None:
    before = digest(database)
    path, mode = browse.prepare(str(database))
    assert mode == "ro"
    app = browse.create_datasette(path, mode)
    db = app.get_database(browse.DATABASE_NAME)

    async def attempts() -> list[Any]:
        answers = [
            await app.client.get("/ncjrs.json?sql=DELETE+FROM+records"),
            await app.client.get("/ncjrs.json?sql=UPDATE+records+SET+title%3D%27x%27"),
            await app.client.post("/ncjrs/records/-/insert", json={"row": {"title": "x"}}),
        ]
        # Even datasette's own write connection, which plugins use, is read-only.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.execute_write("DELETE FROM records")
        return answers

    try:
        answers = asyncio.run(attempts())
    finally:
        db.close()
    assert [answer.status_code for answer in answers[:2]] == [400, 400]
    assert answers[2].status_code in (403, 404, 405)
    assert not any(query.get("write") for query in _queries())
    assert digest(database) == before
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM records WHERE title = 'x'").fetchone() == (
            0,
        )


def _queries() -> list[dict[str, Any]]:
    return list(browse.metadata()["databases"][browse.DATABASE_NAME]["queries"].values())


def test_an_immutable_database_is_served_alike(database: Path) -> None:
    """The mode for a file in a folder we may not write to (see the next test)."""
    app = browse.create_datasette(database, "immutable")
    db = app.get_database(browse.DATABASE_NAME)

    async def attempts() -> Any:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.execute_write("DELETE FROM records")
        return await app.client.get("/ncjrs/records.json?_search=Hickman&_shape=objects")

    try:
        answer = asyncio.run(attempts())
    finally:
        db.close()
    assert HICKMAN in ncj_numbers(answer.json())


def test_a_wal_database_in_a_read_only_folder_is_opened_immutable(
    tmp_path: Path, database: Path
) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    copy = folder / "copy.sqlite"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user may write to any folder (root)")
        assert browse.open_mode(copy) == "immutable"
        (answer,) = get_json(copy, "/ncjrs/records.json?_search=Hickman&_shape=objects")
        assert HICKMAN in ncj_numbers(answer)
    finally:
        folder.chmod(0o755)


# --- The command: what it refuses, in one line -----------------------------------------------


def run_browse(*arguments: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["browse", *arguments], env=env)


def test_postgresql_is_a_usage_error(database: Path) -> None:
    for arguments, env in (
        (("--database", "postgresql://harvester:secret@db.example/ncjrs"), None),
        ((), {"DATABASE_URL": "postgresql://harvester:secret@db.example/ncjrs"}),
    ):
        result = run_browse(*arguments, env=env)
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [
            "Error: harvester browse serves SQLite files, not postgresql "
            "(postgresql://harvester:***@db.example/ncjrs): pass --database FILE.sqlite"
        ]


def test_no_database_file_cannot_start(tmp_path: Path) -> None:
    result = run_browse("--database", str(tmp_path / "missing.sqlite"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no database at {tmp_path / 'missing.sqlite'}")
    assert len(result.output.strip().splitlines()) == 1


def test_a_busy_port_cannot_start(database: Path) -> None:
    server = browse.listening_socket("127.0.0.1", 0)
    try:
        port = server.getsockname()[1]
        result = run_browse("--database", str(database), "--port", str(port))
    finally:
        server.close()
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_without_the_extra_it_says_what_to_install(database: Path) -> None:
    """A Python where datasette cannot be imported: one line naming the extra, exit 1."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('datasette', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from harvester.cli import main\n"
        "main(['browse', '--database', sys.argv[1]])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, str(database)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: harvester browse needs datasette, which is not installed: "
        "pip install 'ncjrs-harvester[browse]'"
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_a_schema_behind_the_code_is_refused(tmp_path: Path, database: Path) -> None:
    copy = tmp_path / "old.sqlite"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0003'")
    result = run_browse("--database", f"sqlite:///{copy}")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {copy} is at schema 0003, this harvester reads")
    assert "alembic upgrade head" in result.output
