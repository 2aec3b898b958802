"""URL state: what each fetched record-page URL answered, kept so the next crawl can skip it.

Every fetch of a record-page URL ends up here as a row of ``record_urls`` keyed by the
canonical URL (``harvester.urls.canonical_url``): the record it showed, what kind of page it
was, the sitemap ``lastmod`` it was listed with, and its HTTP validators (``ETag``,
``Last-Modified``). The URLs that redirected to it get a row too, so a legacy URL listed in a
sitemap is recognised next time as well.

State is written by the store in the same transaction as the records it describes: a page
whose record was not stored (the crawl was killed first) has no state, and is fetched again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from harvester import models
from harvester.items import PageKind, PageVisit, Record
from harvester.urls import canonical_url

RECORD_URLS: Table = models.RecordUrl.__table__  # type: ignore[assignment]
RECORDS: Table = models.Record.__table__  # type: ignore[assignment]
_IN_CHUNK = 500


class KnownPage(NamedTuple):
    kind: str
    ncj_number: int | None
    sitemap_lastmod: datetime | None
    etag: str | None
    last_modified: str | None


def visit_of(record: Record, kind: PageKind = "record") -> PageVisit:
    """The URL-state observation a normalized record carries."""
    return PageVisit(
        url=record.source_url,
        status=record.status,
        fetched_at=record.fetched_at,
        kind=kind,
        redirect_urls=list(record.redirect_urls),
        etag=record.etag,
        last_modified=record.last_modified,
        sitemap_lastmod=record.sitemap_lastmod,
        ncj_number=record.ncj_number,
    )


def known_pages(connection: Connection, canonical_urls: Iterable[str]) -> dict[str, KnownPage]:
    """Stored state of these URLs (in canonical form); unknown URLs are absent."""
    keys = list(dict.fromkeys(canonical_urls))
    table = RECORD_URLS
    found: dict[str, KnownPage] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        query = select(
            table.c.url,
            table.c.kind,
            table.c.ncj_number,
            table.c.sitemap_lastmod,
            table.c.etag,
            table.c.last_modified,
        ).where(table.c.url.in_(keys[start : start + _IN_CHUNK]))
        for url, *state in connection.execute(query):
            found[url] = KnownPage(*state)
    return found


def write_url_states(connection: Connection, visits: Sequence[PageVisit], now: datetime) -> int:
    """Record these fetches; returns how many were 304s (pages known to be unchanged)."""
    rows: dict[str, dict[str, Any]] = {}
    not_modified: list[str] = []
    for visit in visits:
        urls = [canonical_url(url) for url in (*visit.redirect_urls, visit.url)]
        if visit.kind is None:  # 304: the stored state stands, it is only seen again
            not_modified += urls
            continue
        final = urls[-1]
        for url in urls:
            previous = rows.get(url)
            rows[url] = {
                "url": url,
                "ncj_number": visit.ncj_number
                if visit.ncj_number is not None or previous is None
                else previous["ncj_number"],
                "kind": visit.kind,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_status": visit.status,
                "sitemap_lastmod": visit.sitemap_lastmod,
                "etag": visit.etag,
                "last_modified": visit.last_modified,
                "redirect_chain": list(visit.redirect_urls) if url == final else [],
            }
    if rows:
        stmt = _insert(connection)
        keep = RECORD_URLS.c
        stmt = stmt.on_conflict_do_update(
            index_elements=[keep.url],
            set_={
                "ncj_number": func.coalesce(stmt.excluded.ncj_number, keep.ncj_number),
                "kind": stmt.excluded.kind,
                "last_seen_at": stmt.excluded.last_seen_at,
                "last_status": stmt.excluded.last_status,
                "sitemap_lastmod": func.coalesce(
                    stmt.excluded.sitemap_lastmod, keep.sitemap_lastmod
                ),
                "etag": stmt.excluded.etag,
                "last_modified": stmt.excluded.last_modified,
                "redirect_chain": stmt.excluded.redirect_chain,
            },
        )
        connection.execute(stmt, list(rows.values()))
    unique = list(dict.fromkeys(not_modified))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start : start + _IN_CHUNK]
        connection.execute(
            update(RECORD_URLS)
            .where(RECORD_URLS.c.url.in_(chunk))
            .values(last_seen_at=now, last_status=304)
        )
        shown = select(RECORD_URLS.c.ncj_number).where(RECORD_URLS.c.url.in_(chunk))
        connection.execute(
            update(RECORDS).where(RECORDS.c.ncj_number.in_(shown)).values(last_seen_at=now)
        )
    return sum(1 for visit in visits if visit.kind is None)


def _insert(connection: Connection) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(RECORD_URLS)
    return sqlite.insert(RECORD_URLS)
