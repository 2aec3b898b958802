"""Full-text search over title, people, annotation and abstract, ranked alike on both databases.

The index is built by migration 0004 and kept in sync by triggers: an FTS5 table
``records_fts`` on SQLite, the weighted ``records.search_vector`` with a GIN index on
PostgreSQL. Neither engine's own relevance score (FTS5 bm25, ``ts_rank``) is used, because
the two disagree; the ranking is defined here and computed in SQL on both:

* a *word* is a run of letters and digits; words are compared case-insensitively, without
  stemming, stop words or accent folding (``Müller`` is not ``Muller``); ``word*`` matches
  every word that starts with ``word``;
* a record matches when every query word occurs in at least one of its fields;
* its score is the sum, over the query words, of the weights of the fields the word occurs
  in: title 6, people 3, annotation 1, abstract 1 (a title hit outranks a hit in all three
  other fields, a people hit one in both texts);
* equal scores are ordered by NCJ number, highest (most recently catalogued) first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text

# Field weights of the ranking, in the order of the FTS5 columns and the tsvector weights.
FIELD_WEIGHTS: dict[str, int] = {"title": 6, "people": 3, "annotation": 1, "abstract": 1}
_POSTGRESQL_WEIGHT_LABELS = dict(zip(FIELD_WEIGHTS, "ABCD", strict=True))

SQLITE_FTS_TABLE = "records_fts"
POSTGRESQL_SEARCH_COLUMN = "search_vector"
POSTGRESQL_SEARCH_INDEX = "ix_records_search_vector"
DEFAULT_LIMIT = 20
# A query of more words than this is almost certainly pasted text, and would build a
# statement of 4 sub-searches per word.
MAX_QUERY_WORDS = 16

# Letters and digits (Unicode categories L and N, which is what str.isalnum accepts), the same
# split as the unicode61 tokenizer with categories 'L* N*' and PostgreSQL's [[:alnum:]].
_WORD = re.compile(r"([^\W_]+)(\*?)")


class SearchError(ValueError):
    """A query that cannot be searched (no words, too many words)."""


@dataclass(frozen=True, slots=True)
class QueryWord:
    word: str
    prefix: bool  # written as word*

    def __str__(self) -> str:
        return f"{self.word}*" if self.prefix else self.word


@dataclass(frozen=True, slots=True)
class SearchHit:
    ncj_number: int
    score: int
    title: str
    authors: str | None
    year: int | None
    url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ncj_number": self.ncj_number,
            "score": self.score,
            "title": self.title,
            "authors": self.authors,
            "year": self.year,
            "url": self.url,
        }


def is_search_index_object(name: str | None, type_: str, table_name: str | None = None) -> bool:
    """True for the database objects of the search index (they are not models).

    For migrations/env.py's ``include_object`` and for tests that list a database's tables:
    the FTS5 table and its shadow tables on SQLite, the tsvector column and its index on
    PostgreSQL.
    """
    if name is None:
        return False
    if type_ == "table":
        return name == SQLITE_FTS_TABLE or name.startswith(f"{SQLITE_FTS_TABLE}_")
    if type_ == "column":
        return table_name == "records" and name == POSTGRESQL_SEARCH_COLUMN
    if type_ == "index":
        return name == POSTGRESQL_SEARCH_INDEX
    return False


def include_in_autogenerate(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """``include_object`` for Alembic autogenerate: leave the search index out.

    The FTS5 table and its shadow tables (SQLite), ``records.search_vector`` and its GIN index
    (PostgreSQL) exist on one dialect each and are maintained by triggers, so they cannot be
    SQLAlchemy models; without this every autogenerate would propose dropping them. Views need
    no entry: autogenerate does not reflect views. Used by migrations/env.py and by the test
    that models match migrations.
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


def matching_sql(connection: Connection, words: Sequence[QueryWord]) -> tuple[str, dict[str, Any]]:
    """SQL selecting ``ncj_number`` of every record that matches all ``words`` (unranked)."""
    if connection.dialect.name == "postgresql":
        return (
            f"SELECT ncj_number FROM records WHERE {POSTGRESQL_SEARCH_COLUMN}"
            " @@ to_tsquery('simple', :all_words)",
            {"all_words": " & ".join(_tsquery_word(w) for w in words)},
        )
    return (
        f"SELECT rowid AS ncj_number FROM {SQLITE_FTS_TABLE} WHERE {SQLITE_FTS_TABLE} MATCH :m",
        {"m": " AND ".join(_fts5_phrase(w) for w in words)},
    )


def ranked_sql(
    connection: Connection, words: Sequence[QueryWord], limit: int | None
) -> tuple[str, dict[str, Any]]:
    """SQL selecting ``(ncj_number, score)`` of the matches, best first (see the module doc)."""
    if connection.dialect.name == "postgresql":
        sql, params = _postgresql_ranked(words)
    else:
        sql, params = _sqlite_ranked(words)
    sql += " ORDER BY score DESC, ncj_number DESC"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return sql, params


def _fts5_phrase(word: QueryWord) -> str:
    # Words hold letters and digits only, so the quotes need no escaping.
    return f'"{word.word}"' + (" *" if word.prefix else "")


def _tsquery_word(word: QueryWord, weight: str = "") -> str:
    return f"{word.word}:{'*' if word.prefix else ''}{weight}"


def _sqlite_ranked(words: Sequence[QueryWord]) -> tuple[str, dict[str, Any]]:
    # One FTS5 lookup per (word, column): each reads the word's posting list from the index
    # and yields a record at most once, so summing the weights per record gives the score.
    parts: list[str] = []
    params: dict[str, Any] = {"word_count": len(words)}
    for i, word in enumerate(words):
        for column, weight in FIELD_WEIGHTS.items():
            key = f"m{i}_{column}"
            params[key] = f"{column} : {_fts5_phrase(word)}"
            parts.append(
                f"SELECT rowid AS ncj_number, {i} AS word, {weight} AS weight"
                f" FROM {SQLITE_FTS_TABLE} WHERE {SQLITE_FTS_TABLE} MATCH :{key}"
            )
    sql = (
        "SELECT ncj_number, SUM(weight) AS score FROM ("
        + " UNION ALL ".join(parts)
        + ") AS hits GROUP BY ncj_number HAVING COUNT(DISTINCT word) = :word_count"
    )
    return sql, params


def _postgresql_ranked(words: Sequence[QueryWord]) -> tuple[str, dict[str, Any]]:
    # The GIN index finds the records holding every word; the weight-restricted matches
    # (word:A = word in the title, ...) are then checked on each found row's vector.
    params: dict[str, Any] = {"all_words": " & ".join(_tsquery_word(w) for w in words)}
    terms: list[str] = []
    for i, word in enumerate(words):
        for field, weight in FIELD_WEIGHTS.items():
            key = f"q{i}_{field}"
            params[key] = _tsquery_word(word, _POSTGRESQL_WEIGHT_LABELS[field])
            terms.append(
                f"CASE WHEN {POSTGRESQL_SEARCH_COLUMN} @@ to_tsquery('simple', :{key})"
                f" THEN {weight} ELSE 0 END"
            )
    sql = (
        f"SELECT ncj_number, ({' + '.join(terms)}) AS score FROM records"
        f" WHERE {POSTGRESQL_SEARCH_COLUMN} @@ to_tsquery('simple', :all_words)"
    )
    return sql, params


def search(connection: Connection, query: str, limit: int = DEFAULT_LIMIT) -> list[SearchHit]:
    """The ``limit`` best matches of ``query``, best first."""
    if limit < 1:
        raise SearchError(f"limit must be at least 1, got {limit}")
    words = parse_query(query)
    sql, params = ranked_sql(connection, words, limit)
    ranked = [(int(n), int(s)) for n, s in connection.execute(text(sql), params)]
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
            score=score,
            title=summaries[n].title,
            authors=summaries[n].authors,
            year=summaries[n].year,
            url=summaries[n].url,
        )
        for n, score in ranked
    ]
