"""The datasette plugin of `harvester browse` (harvester.browse): imported only with datasette.

* ``escape_fts``: datasette turns the search box's text into an FTS MATCH expression with
  this SQL function; ours reads the words as ``harvester search`` does (``word*`` a prefix,
  punctuation a separator) instead of quoting every term, which made ``polic*`` a search for
  the word "polic".
* A record's row page lists its people and agencies (template ``row-ncjrs-records.html``).
* ``ReadOnlyDatabase``: no connection to the file can write, not even datasette's own.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette import hookimpl
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils import urlsafe_components

from harvester.browse import DATABASE_NAME, fts5_match
from harvester.models import AGENCY_ROLES, CONTRIBUTOR_ROLES

TEMPLATES = Path(__file__).parent / "browse_templates"
PLUGIN_NAME = "harvester-browse"


class ReadOnlyDatabase(Database):  # type: ignore[misc]  # datasette has no type hints
    """A database file every connection opens read-only (``mode=ro`` or ``immutable=1``),
    the one datasette keeps for writes included: a write by any route fails in SQLite."""

    def connect(self, write: bool = False) -> sqlite3.Connection:
        connection: sqlite3.Connection = super().connect(write=False)
        return connection


def register() -> None:
    """Register this module with datasette's plugin manager (once per process)."""
    if pm.get_plugin(PLUGIN_NAME) is None:
        pm.register(sys.modules[__name__], name=PLUGIN_NAME)


# trylast: datasette's own prepare_connection defines escape_fts too; ours must come after.
@hookimpl(trylast=True)
def prepare_connection(conn: sqlite3.Connection, database: str) -> None:
    if database == DATABASE_NAME:
        conn.create_function("escape_fts", 1, fts5_match, deterministic=True)


def _order(column: str, values: tuple[str, ...]) -> str:
    """ORDER BY term putting ``column`` in the order of ``values`` (the page's order)."""
    cases = " ".join(f"WHEN '{value}' THEN {rank}" for rank, value in enumerate(values))
    return f"CASE {column} {cases} END"


PEOPLE_SQL = f"""
SELECT role, position, name, contributor_id, kind FROM record_people
WHERE ncj_number = :ncj ORDER BY {_order("role", CONTRIBUTOR_ROLES)}, position
"""
AGENCIES_SQL = f"""
SELECT ra.role, ra.position, ra.name_as_shown AS name, ra.agency_id
FROM record_agencies ra WHERE ra.ncj_number = :ncj
ORDER BY {_order("ra.role", AGENCY_ROLES)}, ra.position
"""


@hookimpl
def extra_template_vars(
    database: str | None, table: str | None, view_name: str, request: Any, datasette: Any
) -> Any:
    if not (view_name == "row" and database == DATABASE_NAME and table == "records"):
        return {}

    async def people_and_agencies() -> dict[str, Any]:
        (ncj,) = urlsafe_components(request.url_vars["pks"])
        db = datasette.get_database(DATABASE_NAME)
        people = await db.execute(PEOPLE_SQL, {"ncj": ncj})
        agencies = await db.execute(AGENCIES_SQL, {"ncj": ncj})
        return {
            "record_people": [dict(row) for row in people.rows],
            "record_agencies": [dict(row) for row in agencies.rows],
        }

    return people_and_agencies


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    """Drop blank ``_search`` arguments: an emptied search box shows every row again, where
    datasette would search for nothing."""

    def wrap(app: Any) -> Any:
        async def without_blank_search(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") == "http" and b"_search" in scope.get("query_string", b""):
                pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                kept = [(k, v) for k, v in pairs if not (k.startswith("_search") and not v.strip())]
                scope = {**scope, "query_string": urlencode(kept).encode("latin-1")}
            await app(scope, receive, send)

        return without_blank_search

    return wrap
