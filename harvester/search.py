"""Full-text search over title, people, annotation and abstract, ranked alike on both databases.

The index is built by migration 0004 and kept in sync by triggers: an FTS5 table
``records_fts`` on SQLite, tsvector columns with GIN indexes on PostgreSQL. Neither engine's
own relevance score (FTS5 bm25, ``ts_rank``) is used, because the two disagree; the ranking is
defined here and computed the same way on both:

* a *word* is a run of letters and digits; words are compared case-insensitively, without
  stemming, stop words or accent folding (``Müller`` is not ``Muller``); ``word*`` matches
  every word that starts with ``word``;
* a record matches when every query word occurs in it (title, people, annotation or abstract;
  people are the authors, editors and corporate authors as the page names them);
* matches are ranked in three tiers: every word in the title (tier 1), else every word in the
  title or the people (tier 2), else the rest (tier 3); title > people > annotation/abstract;
* within a tier, by NCJ number, highest (most recently catalogued) first.

Each tier is one indexed query read newest-first and cut at the limit, so a search costs about
the same whether a word is in ten records or in half of them: both databases can stop early
because the order inside a tier is the index's own (rowid, primary key) order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text

from harvester.errors import SearchError

# The search tiers: (name, SQLite FTS5 columns, PostgreSQL tsvector column), best first.
# None: every field.
TIERS: tuple[tuple[str, str | None, str], ...] = (
    ("title", "title", "search_vector_title"),
    ("title or people", "title people", "search_vector_title_people"),
    ("anywhere", None, "search_vector"),
)

SQLITE_FTS_TABLE = "records_fts"
POSTGRESQL_SEARCH_COLUMNS = tuple(column for _, _, column in TIERS)
DEFAULT_LIMIT = 20
# A query of more words than this is almost certainly pasted text (and every word must match).
MAX_QUERY_WORDS = 16

# Letters and digits (Unicode categories L and N, which is what str.isalnum accepts), the same
# split as the unicode61 tokenizer with categories 'L* N*' and PostgreSQL's [[:alnum:]].
_WORD = re.compile(r"([^\W_]+)(\*?)")


@dataclass(frozen=True, slots=True)
class QueryWord:
    word: str
    prefix: bool  # written as word*

    def __str__(self) -> str:
        return f"{self.word}*" if self.prefix else self.word


@dataclass(frozen=True, slots=True)
class SearchHit:
    ncj_number: int
    tier: int  # 1 title, 2 title or people, 3 anywhere (see TIERS)
    title: str
    authors: str | None
    year: int | None
    url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ncj_number": self.ncj_number,
            "tier": self.tier,
            "matched_in": TIERS[self.tier - 1][0],
            "title": self.title,
            "authors": self.authors,
            "year": self.year,
            "url": self.url,
        }


def is_search_index_object(name: str | None, type_: str, table_name: str | None = None) -> bool:
    """True for the database objects of the search index (they are not models).

    For migrations/env.py's ``include_object`` and for tests that list a database's tables:
    the FTS5 table and its shadow tables on SQLite, the tsvector columns and their indexes on
    PostgreSQL.
    """
    if name is None:
        return False
    if type_ == "table":
        return name == SQLITE_FTS_TABLE or name.startswith(f"{SQLITE_FTS_TABLE}_")
    if type_ == "column":
        return table_name == "records" and name in POSTGRESQL_SEARCH_COLUMNS
    if type_ == "index":
        return name in {f"ix_records_{column}" for column in POSTGRESQL_SEARCH_COLUMNS}
    return False


def include_in_autogenerate(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """``include_object`` for Alembic autogenerate: leave the search index out.

    The FTS5 table and its shadow tables (SQLite), the tsvector columns of ``records`` and
    their GIN indexes (PostgreSQL) exist on one dialect each and are maintained by triggers,
    so they cannot be SQLAlchemy models; without this every autogenerate would propose
    dropping them. Views need no entry: autogenerate does not reflect views. Used by
    migrations/env.py and by the test that models match migrations.
    """
    table_name = getattr(getattr(obj, "table", None), "name", None)
    search_object = is_search_index_object(name, type_, table_name)
    return not (reflected and compare_to is None and search_object)


def parse_query(query: str) -> list[QueryWord]:
    """The distinct words of a query, in order; anything but letters, digits and ``*`` is a
    separator (so quotes and operators are ignored rather than misread)."""
    words: dict[tuple[str, bool], QueryWord] = {}
    for match in _WORD.finditer(query):
        word = QueryWord(match.group(1), bool(match.group(2)))
        words.setdefault((word.word.lower(), word.prefix), word)
    if not words:
        raise SearchError(f"no words to search for in {query!r}")
    if len(words) > MAX_QUERY_WORDS:
        raise SearchError(f"at most {MAX_QUERY_WORDS} words per search, got {len(words)}")
    return list(words.values())


def matching_sql(
    connection: Connection, words: Sequence[QueryWord], tier: int = len(TIERS)
) -> tuple[str, dict[str, Any]]:
    """SQL selecting ``ncj_number`` of the records in ``tier`` or better (unordered)."""
    _, fts5_columns, vector = TIERS[tier - 1]
    if connection.dialect.name == "postgresql":
        query = " & ".join(f"{w.word}:*" if w.prefix else w.word for w in words)
        return (
            f"SELECT ncj_number FROM records WHERE {vector} @@ to_tsquery('simple', :words)",
            {"words": query},
        )
    query = " AND ".join(f'"{w.word}"' + (" *" if w.prefix else "") for w in words)
    if fts5_columns is not None:
        query = f"{{{fts5_columns}}} : ({query})"
    return (
        f"SELECT rowid AS ncj_number FROM {SQLITE_FTS_TABLE} WHERE {SQLITE_FTS_TABLE} MATCH :words",
        {"words": query},
    )


def ranked_numbers(
    connection: Connection, words: Sequence[QueryWord], limit: int
) -> list[tuple[int, int]]:
    """``(ncj_number, tier)`` of the ``limit`` best matches, best first."""
    ranked: dict[int, int] = {}
    for tier in range(1, len(TIERS) + 1):
        sql, params = matching_sql(connection, words, tier)
        # A tier holds the tiers above it. Of its `limit` newest rows at most len(ranked) were
        # found already, so they hold every new row the page still needs.
        sql += " ORDER BY ncj_number DESC LIMIT :limit"
        params["limit"] = limit
        for (number,) in connection.execute(text(sql), params):
            ranked.setdefault(int(number), tier)
            if len(ranked) == limit:
                return list(ranked.items())
    return list(ranked.items())


def search(connection: Connection, query: str, limit: int = DEFAULT_LIMIT) -> list[SearchHit]:
    """The ``limit`` best matches of ``query``, best first."""
    if limit < 1:
        raise SearchError(f"limit must be at least 1, got {limit}")
    ranked = ranked_numbers(connection, parse_query(query), limit)
    if not ranked:
        return []
    summaries = {
        row.ncj_number: row
        for row in connection.execute(
            text(
                "SELECT ncj_number, title, authors, year, url FROM record_summary"
                " WHERE ncj_number IN :numbers"
            ).bindparams(bindparam("numbers", expanding=True)),
            {"numbers": [n for n, _ in ranked]},
        )
    }
    return [
        SearchHit(
            ncj_number=n,
            tier=tier,
            title=summaries[n].title,
            authors=summaries[n].authors,
            year=summaries[n].year,
            url=summaries[n].url,
        )
        for n, tier in ranked
    ]
