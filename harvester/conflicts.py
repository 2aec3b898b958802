"""Which page of a record a run keeps when it reaches the record under several URLs.

The rule, a total order over pages, so the page kept does not depend on arrival order:

1. the layout that shows the most fields wins: legacy, then current, then generic, then
   publication pages (``items.LAYOUT_RANK``);
2. then the page with more filled-in fields (``richness``);
3. then the smaller canonical URL (``harvester.urls.canonical_url``, the form ``record_urls``
   keys on: no ``www.``, host case, trailing dot, default port or trailing slash), and the
   smaller URL as fetched if those are equal.

A *conflict* is a page of an NCJ number already seen in the run, under another URL, with other
content (another content hash). Each is logged with both URLs, the page kept and why, and
counted in the crawl stat ``harvester/conflicts`` (``crawl_runs.conflicts``). A record shown by
its abstract page and its bureau publication page is a conflict too: the pages show different
fields, and the abstract page is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from harvester.items import LAYOUT_RANK, Record
from harvester.runsets import temporary_database
from harvester.urls import canonical_url

logger = logging.getLogger(__name__)

Reason = Literal["layout", "filled_fields", "url"]


def richness(record: Record) -> int:
    """How many of the fields that vary between page types the page fills in."""
    return sum(
        1
        for value in (
            record.journal,
            record.published,
            record.page_count,
            record.annotation,
            record.abstract,
            record.authors,
            record.editors,
            record.corporate_authors,
            record.sponsoring_agencies,
            record.grant_numbers,
            record.publication_type,
            record.language,
        )
        if value
    )


def tie_break_url(url: str) -> tuple[str, str]:
    """The key that orders two URLs of one record: canonical form first, then as fetched."""
    return canonical_url(url), url


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a run remembers of the page it keeps for an NCJ number (small: one per record)."""

    layout_rank: int
    filled: int
    url: str
    content_key: int  # the first 60 bits of the content hash (an SQLite INTEGER)

    @classmethod
    def of(cls, record: Record, digest: str) -> Sighting:
        return cls(
            layout_rank=LAYOUT_RANK.get(record.layout, 0),
            filled=richness(record),
            url=record.source_url,
            content_key=int(digest[:15], 16),
        )


def preferred(page: Sighting, other: Sighting) -> tuple[bool, Reason]:
    """Whether ``page`` wins over ``other``, and the rule that decided."""
    if page.layout_rank != other.layout_rank:
        return page.layout_rank > other.layout_rank, "layout"
    if page.filled != other.filled:
        return page.filled > other.filled, "filled_fields"
    return tie_break_url(page.url) < tie_break_url(other.url), "url"


@dataclass(frozen=True, slots=True)
class Conflict:
    ncj_number: int
    kept_url: str
    dropped_url: str
    reason: Reason

    def __str__(self) -> str:
        return (
            f"NCJ {self.ncj_number} has other content at {self.dropped_url} than at"
            f" {self.kept_url}: keeping {self.kept_url} (by {self.reason.replace('_', ' ')})"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    keep: bool  # pass this page on: it beats every page of the record seen so far
    conflict: Conflict | None


def judged(ncj_number: int, page: Sighting, previous: Sighting | None) -> Verdict:
    """Whether ``page`` is to be kept over the page kept so far, and the conflict if any."""
    if previous is None:
        return Verdict(keep=True, conflict=None)
    keep, reason = preferred(page, previous)
    conflict = None
    if page.url != previous.url and page.content_key != previous.content_key:
        kept, dropped = (page, previous) if keep else (previous, page)
        conflict = Conflict(ncj_number, kept.url, dropped.url, reason)
    return Verdict(keep=keep, conflict=conflict)


class RunSightings:
    """The page kept so far for each NCJ number of one run, in a temporary SQLite file
    (harvester.runsets), so that a run's memory does not grow with its records."""

    def __init__(self) -> None:
        self._db = temporary_database()
        self._db.execute(
            "CREATE TABLE kept (ncj_number INTEGER PRIMARY KEY, layout_rank INTEGER,"
            " filled INTEGER, url TEXT, content_key INTEGER)"
        )

    def kept(self, ncj_number: int) -> Sighting | None:
        row = self._db.execute(
            "SELECT layout_rank, filled, url, content_key FROM kept WHERE ncj_number = ?",
            (ncj_number,),
        ).fetchone()
        return Sighting(*row) if row is not None else None

    def _keep(self, ncj_number: int, page: Sighting) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO kept VALUES (?, ?, ?, ?, ?)",
            (ncj_number, page.layout_rank, page.filled, page.url, page.content_key),
        )

    def offer(self, record: Record, digest: str) -> Verdict:
        assert record.ncj_number is not None
        page = Sighting.of(record, digest)
        previous = self.kept(record.ncj_number)
        verdict = judged(record.ncj_number, page, previous)
        if verdict.keep:
            self._keep(record.ncj_number, page)
        return verdict

    def close(self) -> None:
        self._db.close()
