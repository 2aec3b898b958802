"""`harvester browse`: the database in a web page, read-only, through datasette.

Datasette (the optional extra ``browse``) serves a SQLite file as browsable tables, facets,
row pages and SQL. What this module adds is what makes it fit this database:

* the ``records`` table's search box (and ``record_summary``'s) uses the full-text index
  ``records_fts`` (declared to datasette, which cannot guess it: the index is not named after
  the table and is keyed by NCJ number), with the words read as ``harvester search`` reads
  them (harvester.browse_plugin);
* facets that suit the collection: year, publication type, journal, language;
* the example queries of the README and docs/schema.md as canned queries;
* record pages that list the record's people and agencies (harvester.browse_plugin and the
  template in harvester/browse_templates/).

Read-only twice over: datasette runs only SELECT statements, and every connection it opens
to the file, its "write" connection included, is ``mode=ro`` (or ``immutable=1`` when the
file cannot be opened otherwise), so not even a plugin can change the database. PostgreSQL is
not served: datasette reads SQLite files only.

Nothing here imports datasette at module level, so the CLI can say what to install when the
extra is missing.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from harvester.db import display_url, schema_state, script_heads, upgrade_command
from harvester.errors import SearchError
from harvester.search import SQLITE_FTS_TABLE, QueryWord, parse_query

if TYPE_CHECKING:
    from datasette.app import Datasette

INSTALL_HINT = "pip install 'ncjrs-harvester[browse]'"
DATABASE_NAME = "ncjrs"  # the database's name in datasette's URLs: /ncjrs/records
DEFAULT_PORT = 8001  # datasette's own default; `harvester serve` has 8000

# The columns people narrow a collection like this one by; language is only on legacy pages.
RECORD_FACETS = ("published_year", "publication_type", "journal_name", "language")

OpenMode = Literal["ro", "immutable"]


class BrowseUsageError(ValueError):
    """The command was asked for something browse cannot do (exit status 2)."""


class BrowseUnavailable(RuntimeError):
    """The database or the server could not be opened (exit status 1)."""


@dataclass(frozen=True, slots=True)
class CannedQuery:
    name: str  # its URL: /ncjrs/<name>
    title: str
    sql: str


# The README's SQL examples ("Using the data") that run on SQLite, and docs/schema.md's
# "Example queries on the views", as written there (line breaks aside): tests/test_browse.py
# checks that these are exactly the statements the two documents show.
CANNED_QUERIES: tuple[CannedQuery, ...] = (
    CannedQuery(
        "first_authors_2001_articles",
        "First authors of the 2001 journal articles",
        """SELECT s.ncj_number, s.title, p.name AS first_author, s.journal_citation
FROM record_summary s
LEFT JOIN record_people p ON p.ncj_number = s.ncj_number AND p.role = 'author' AND p.position = 0
WHERE s.year = 2001 AND s.journal_citation IS NOT NULL
ORDER BY s.ncj_number""",
    ),
    CannedQuery(
        "full_text_search_sql",
        "Full-text search in SQL: juvenile AND gangs (FTS5)",
        """SELECT s.ncj_number, s.title
FROM records_fts f JOIN record_summary s ON s.ncj_number = f.rowid
WHERE records_fts MATCH 'juvenile AND gangs' ORDER BY s.ncj_number DESC LIMIT 20""",
    ),
    CannedQuery(
        "reading_list",
        "A reading list: the newest records with their authors",
        """SELECT ncj_number, title, authors, year FROM record_summary
ORDER BY ncj_number DESC LIMIT 20""",
    ),
    CannedQuery(
        "journal_articles_2001",
        "Journal articles of 2001 with their citation",
        """SELECT ncj_number, title, journal_citation FROM record_summary
WHERE year = 2001 AND journal_citation IS NOT NULL ORDER BY ncj_number""",
    ),
    CannedQuery(
        "first_authors",
        "First authors",
        """SELECT ncj_number, name FROM record_people
WHERE role = 'author' AND position = 0 ORDER BY ncj_number""",
    ),
    CannedQuery(
        "most_prolific_people",
        "The most prolific people, under their shared contributor row",
        """SELECT contributor_id, MIN(name) AS name, COUNT(DISTINCT ncj_number) AS records
FROM record_people WHERE kind = 'person'
GROUP BY contributor_id ORDER BY records DESC, contributor_id LIMIT 10""",
    ),
    CannedQuery(
        "one_person",
        "Everything one person wrote or edited (Hickman)",
        """SELECT s.ncj_number, p.role, s.title, s.year
FROM record_people p JOIN record_summary s ON s.ncj_number = p.ncj_number
WHERE p.family = 'Hickman' ORDER BY s.year, s.ncj_number""",
    ),
)


def fts5_match(query: str) -> str:
    """The FTS5 MATCH expression for a search-box query, read as ``harvester search`` reads
    it: every word must occur, ``word*`` is a prefix, anything else is a separator (so a
    stray quote or hyphen cannot make a syntax error). A query without words matches
    nothing."""
    try:
        words = parse_query(query)
    except SearchError:
        if query.strip() and any(character.isalnum() for character in query):
            raise  # too many words: say so rather than search for part of the query
        return '""'
    return " AND ".join(_fts5_word(word) for word in words)


def _fts5_word(word: QueryWord) -> str:
    return f'"{word.word}"' + (" *" if word.prefix else "")


def metadata() -> dict[str, Any]:
    """Datasette's metadata for a harvester database served as DATABASE_NAME."""
    search = {"fts_table": SQLITE_FTS_TABLE, "fts_pk": "ncj_number"}
    return {
        "title": "NCJRS Virtual Library records",
        "description_html": (
            "Harvested by ncjrs-harvester, served read-only. Search covers titles, people, "
            "annotations and abstracts: every word must occur, <code>word*</code> matches "
            "words that start with <code>word</code>. Tables and columns: "
            "<code>docs/schema.md</code>."
        ),
        "databases": {
            DATABASE_NAME: {
                "tables": {
                    "records": {
                        **search,
                        "facets": list(RECORD_FACETS),
                        "sort_desc": "ncj_number",
                        "label_column": "title",
                    },
                    "record_summary": {
                        **search,
                        "facets": ["year"],
                        "sort_desc": "ncj_number",
                    },
                    "contributors": {"label_column": "name", "facets": ["kind"]},
                    "agencies": {"label_column": "name"},
                    "record_people": {"facets": ["role", "kind"]},
                    "record_agencies": {"facets": ["role"]},
                },
                "queries": {
                    query.name: {"title": query.title, "sql": query.sql} for query in CANNED_QUERIES
                },
            }
        },
    }


def require_datasette() -> None:
    """Raise BrowseUnavailable, naming the extra to install, when datasette is missing."""
    try:
        import datasette.app  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise BrowseUnavailable(
            f"harvester browse needs datasette, which is not installed: {INSTALL_HINT}"
        ) from error


def sqlite_file(target: str) -> Path:
    """The SQLite file named by ``target``: a path, or a ``sqlite:///`` URL (DATABASE_URL).

    BrowseUsageError for what is not a SQLite file (PostgreSQL, in-memory), BrowseUnavailable
    when there is no file there.
    """
    if "://" in target:
        try:
            url = make_url(target)
        except ArgumentError as error:
            raise BrowseUsageError(f"{target!r} is neither a SQLite file nor a URL") from error
        if url.get_backend_name() != "sqlite":
            raise BrowseUsageError(
                f"harvester browse serves SQLite files, not {url.get_backend_name()} "
                f"({display_url(url)}): pass --database FILE.sqlite"
            )
        if url.database in (None, "", ":memory:") or str(url.database).startswith("file:"):
            raise BrowseUsageError(f"{display_url(url)} names no SQLite file to browse")
        target = str(url.database)
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise BrowseUnavailable(
            f"no database at {path}: crawl into it first (harvester demo makes "
            "ncjrs-demo.sqlite), or pass --database FILE.sqlite"
        )
    return path


def _sqlite_uri(path: Path, mode: OpenMode) -> str:
    parameter = "mode=ro" if mode == "ro" else "immutable=1"
    return f"file:{quote(str(path))}?{parameter}"


def open_mode(path: Path) -> OpenMode:
    """How to open the file without writing: ``mode=ro`` sees a crawl's writes as they are
    committed; a WAL database in a folder we may not write to cannot be opened so (SQLite
    needs its -shm file), and is then read as ``immutable``."""
    for mode in ("ro", "immutable"):
        try:
            connection = sqlite3.connect(_sqlite_uri(path, mode), uri=True)
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            if mode == "immutable":
                raise BrowseUnavailable(
                    f"cannot read {path} as a SQLite database: {error}"
                ) from error
            continue
        return mode
    raise AssertionError("unreachable")


def check_schema(path: Path, mode: OpenMode) -> None:
    """BrowseUnavailable unless the file has the schema this harvester knows (views, index)."""
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(_sqlite_uri(path, mode), uri=True),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            state = schema_state(connection)
    except DBAPIError as error:
        raise BrowseUnavailable(f"cannot read {path}: {error.orig}") from error
    finally:
        engine.dispose()
    heads = script_heads()
    if state.revisions and set(state.revisions) == set(heads):
        return
    if not state.revisions:
        raise BrowseUnavailable(f"{path} is not a harvester database (no schema version)")
    raise BrowseUnavailable(
        f"{path} is at schema {', '.join(state.revisions)}, this harvester reads "
        f"{', '.join(heads)}: upgrade it with {upgrade_command(f'sqlite:///{path}')}"
    )


def create_datasette(path: Path, mode: OpenMode = "ro") -> Datasette:
    """A Datasette serving ``path`` read-only as DATABASE_NAME, with this module's metadata.

    The one app both `harvester browse` and the tests run.
    """
    from datasette.app import Datasette

    from harvester import browse_plugin

    browse_plugin.register()
    datasette = Datasette(
        metadata=metadata(),
        template_dir=str(browse_plugin.TEMPLATES),
        settings={
            # Facets over a full harvest (235,000 records) need more than the default 200 ms.
            "facet_time_limit_ms": 1000,
            # Suggestions try a facet on every column: slow on a full harvest, and noise.
            "suggest_facets": False,
            "default_facet_size": 10,
            "sql_time_limit_ms": 3000,
        },
    )
    datasette.add_database(
        browse_plugin.ReadOnlyDatabase(datasette, path=str(path), is_mutable=mode == "ro"),
        name=DATABASE_NAME,
    )
    return datasette


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts, so a busy port is one clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise BrowseUsageError(f"--host {host}: {error.strerror}") from error
    family, kind, protocol, _, address = infos[0]
    server = socket.socket(family, kind, protocol)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
        server.listen(128)
    except OSError as error:
        server.close()
        raise BrowseUnavailable(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return server


def prepare(target: str) -> tuple[Path, OpenMode]:
    """Everything that can refuse to browse, before a socket is opened."""
    require_datasette()
    path = sqlite_file(target)
    mode = open_mode(path)
    check_schema(path, mode)
    return path, mode


def serve(path: Path, mode: OpenMode, server: socket.socket) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    datasette = create_datasette(path, mode)
    config = uvicorn.Config(datasette.app(), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[server])
