"""URL state: what each fetched record-page URL answered, kept so the next crawl can skip it,
and the withdrawals it shows.

Every fetch of a record-page URL ends up here as a row of ``record_urls`` keyed by the
canonical URL (``harvester.urls.canonical_url``): the record it showed, what kind of page it
was, the sitemap ``lastmod`` it was listed with, and its HTTP validators (``ETag``,
``Last-Modified``). The URLs that redirected to it get a row too, so a legacy URL listed in a
sitemap is recognised next time as well.

State is written by the store in the same transaction as the records it describes: a page
whose record was not stored (the crawl was killed first) has no state, and is fetched again.

Withdrawals: a URL that answers 404, 410 or a soft 404 starts a streak (``gone_runs``), one
more per run at least ``Withdrawal.min_interval`` after the last one counted; any other answer
ends it. A record whose every URL has a streak of ``Withdrawal.after_runs`` gets
``records.withdrawn_at``, a tombstone; seeing the record again clears it. Errors (5xx,
timeouts) never reach this module, so they never count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    update,
)

from harvester import models
from harvester.db import chunks, insert_for
from harvester.items import GapReason, PageKind, PageVisit, Record
from harvester.urls import canonical_url

RECORD_URLS: Table = models.RecordUrl.__table__
RECORDS: Table = models.Record.__table__
CRAWL_RUNS: Table = models.CrawlRun.__table__
# Answers that say the page is not there (any other answer says it is).
GONE_KINDS = ("gone", "soft_404")


class KnownPage(NamedTuple):
    kind: str
    ncj_number: int | None
    sitemap_lastmod: datetime | None
    etag: str | None
    last_modified: str | None
    gap_reason: str | None = None  # why its record is not stored (yet)
    retry_at: datetime | None = None  # when a run asks again

    def gap_due(self, now: datetime) -> bool:
        """A gap whose retry time has come: asked again whatever the sitemap says."""
        return self.gap_reason is not None and (self.retry_at is None or self.retry_at <= now)


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
        sitemap_url=record.sitemap_url,
    )


def known_pages(connection: Connection, canonical_urls: Iterable[str]) -> dict[str, KnownPage]:
    """Stored state of these URLs (in canonical form); unknown URLs are absent."""
    keys = list(dict.fromkeys(canonical_urls))
    table = RECORD_URLS
    found: dict[str, KnownPage] = {}
    for chunk in chunks(keys):
        query = select(
            table.c.url,
            table.c.kind,
            table.c.ncj_number,
            table.c.sitemap_lastmod,
            table.c.etag,
            table.c.last_modified,
            table.c.gap_reason,
            table.c.retry_at,
        ).where(table.c.url.in_(chunk))
        for url, *state in connection.execute(query):
            found[url] = KnownPage(*state)
    return found


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """When a record counts as withdrawn: every URL it lives under answered 404/410 or a soft
    404 on ``after_runs`` runs in a row, counted at most once per ``min_interval``."""

    after_runs: int = 3
    min_interval: timedelta = timedelta(days=1)


DEFAULT_WITHDRAWAL = Withdrawal()


@dataclass(frozen=True, slots=True)
class GapRetry:
    """When a URL whose record is not stored (a gap) is asked again, across runs.

    The first retry of a failure is due at once, so the next run, whatever its sitemap lastmod
    says, heals what an outage cost; a URL that keeps failing waits ``base``, then twice as
    long each time, up to ``cap``, so a page that is really not a record costs little. A
    quarantined record is a verdict on what the page says, not an accident of the fetch: it
    waits ``base`` from the start.
    """

    base: timedelta = timedelta(hours=1)
    cap: timedelta = timedelta(days=7)

    def retry_at(self, attempts: int, now: datetime, reason: str | None = None) -> datetime:
        if reason == "quarantined":
            attempts += 1
        if attempts <= 1:
            return now
        factor: int = 2 ** min(attempts - 2, 30)
        return now + min(self.cap, self.base * factor)


DEFAULT_GAP_RETRY = GapRetry()
# Pages at a record URL that hold no record: soft errors (an empty body, a captcha, an outage
# page) as often as real non-records, so they are gaps, asked again on a backoff.
NOT_A_RECORD_KINDS = ("no_record_fields", "several_records", "not_html")


def gap_reason_of(visit: PageVisit) -> GapReason | None:
    """Why the record at this visit's URL is not stored, or None when nothing is missing."""
    if visit.gap_reason is not None:
        return visit.gap_reason
    if visit.kind == "quarantined":
        return "quarantined"
    if visit.kind in NOT_A_RECORD_KINDS:
        return "not_a_record"
    return None


@dataclass(slots=True)
class UrlStateCounts:
    not_modified: int = 0  # 304 answers
    withdrawn: int = 0  # records that got their tombstone in this batch
    reappeared: int = 0  # withdrawn records seen again
    gaps: int = 0  # URLs left with a gap (their record not stored) by this batch


def write_url_states(
    connection: Connection,
    visits: Sequence[PageVisit],
    now: datetime,
    withdrawal: Withdrawal = DEFAULT_WITHDRAWAL,
    retry: GapRetry = DEFAULT_GAP_RETRY,
    run_id: int | None = None,
) -> UrlStateCounts:
    """Record these fetches, the gaps they leave, and the withdrawals and reappearances they
    show; ``run_id``: the crawl run they belong to (``visited_run_id``)."""
    counts = UrlStateCounts()
    rows: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, Any]] = {}
    not_modified: list[str] = []
    gone_urls: list[str] = []
    seen_records: set[int] = set()
    for visit in visits:
        if visit.kind == "failed":
            # No answer: what is stored about the URL stands; only its gap is recorded.
            url = canonical_url(visit.url)
            if url not in rows:
                failures[url] = _failure_row(url, visit, now) | {"visited_run_id": run_id}
            continue
        spelled = [*visit.redirect_urls, visit.url]
        urls = [canonical_url(url) for url in spelled]
        if visit.kind is None:  # 304: the stored state stands, it is only seen again
            not_modified += urls
            counts.not_modified += 1
            continue
        gone = visit.kind in GONE_KINDS
        if gone:
            gone_urls += urls
        elif visit.ncj_number is not None:
            seen_records.add(visit.ncj_number)
        reason = gap_reason_of(visit)
        final = urls[-1]
        for url, requested in zip(urls, spelled, strict=True):
            previous = rows.get(url)
            failures.pop(url, None)  # an answer in the same batch outranks a failure
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
                "gone_runs": 1 if gone else 0,
                "gone_since": now if gone else None,
                "gone_counted_at": now if gone else None,
                "sitemap_url": visit.sitemap_url,
                "requested_url": requested,
                "gap_reason": reason,
                "gap_detail": visit.gap_detail if reason else None,
                "visited_run_id": run_id,
            }
    _number_gaps([*rows.values(), *failures.values()], connection, now, retry)
    counts.gaps = sum(1 for row in (*rows.values(), *failures.values()) if row["gap_reason"])
    cutoff = now - withdrawal.min_interval
    table = RECORD_URLS.c
    due = or_(table.gone_counted_at.is_(None), table.gone_counted_at <= cutoff)
    if rows:
        stmt = insert_for(connection, RECORD_URLS)
        excluded = stmt.excluded
        # Not IN (...): an expanding parameter cannot go into an executemany.
        is_gone = or_(*(excluded.kind == literal_column(f"'{kind}'") for kind in GONE_KINDS))
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.url],
            set_={
                "ncj_number": func.coalesce(excluded.ncj_number, table.ncj_number),
                "kind": excluded.kind,
                # "Seen" is a page that is there: a 404 does not move it.
                "last_seen_at": case((is_gone, table.last_seen_at), else_=excluded.last_seen_at),
                "last_status": excluded.last_status,
                "sitemap_lastmod": func.coalesce(excluded.sitemap_lastmod, table.sitemap_lastmod),
                "etag": excluded.etag,
                "last_modified": excluded.last_modified,
                "redirect_chain": excluded.redirect_chain,
                "gone_runs": case(
                    (and_(is_gone, due), table.gone_runs + 1), (is_gone, table.gone_runs), else_=0
                ),
                "gone_since": case(
                    (is_gone, func.coalesce(table.gone_since, excluded.gone_since)), else_=null()
                ),
                "gone_counted_at": case(
                    (and_(is_gone, due), excluded.gone_counted_at),
                    (is_gone, table.gone_counted_at),
                    else_=null(),
                ),
                **_ledger_updates(excluded),
            },
        )
        connection.execute(stmt, list(rows.values()))
    if failures:
        stmt = insert_for(connection, RECORD_URLS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.url], set_=_ledger_updates(stmt.excluded)
        )
        connection.execute(stmt, list(failures.values()))
    for chunk in chunks(list(dict.fromkeys(not_modified))):
        connection.execute(
            update(RECORD_URLS)
            .where(table.url.in_(chunk))
            .values(last_seen_at=now, last_status=304, visited_run_id=run_id)
        )
        # A 304 from a page that was gone (a soft 404 with validators) is still gone.
        gone_again = update(RECORD_URLS).where(
            table.url.in_(chunk), table.kind.in_(GONE_KINDS), due
        )
        if connection.execute(
            gone_again.values(gone_runs=table.gone_runs + 1, gone_counted_at=now)
        ).rowcount:
            gone_urls += chunk
        shown = select(table.ncj_number).where(table.url.in_(chunk), table.kind.not_in(GONE_KINDS))
        connection.execute(
            update(RECORDS).where(RECORDS.c.ncj_number.in_(shown)).values(last_seen_at=now)
        )
    counts.withdrawn = _withdraw(connection, gone_urls, now, withdrawal)
    for numbers in chunks(sorted(seen_records)):
        counts.reappeared += connection.execute(
            update(RECORDS)
            .where(RECORDS.c.ncj_number.in_(numbers), RECORDS.c.withdrawn_at.is_not(None))
            .values(withdrawn_at=None)
        ).rowcount
    return counts


def _failure_row(url: str, visit: PageVisit, now: datetime) -> dict[str, Any]:
    """A ``record_urls`` row for a URL that got no answer: inserted only when it is new."""
    return {
        "url": url,
        "ncj_number": None,
        "kind": "failed",
        "first_seen_at": now,
        "last_seen_at": now,
        "last_status": visit.status,
        "sitemap_lastmod": None,
        "etag": None,
        "last_modified": None,
        "redirect_chain": [],
        "gone_runs": 0,
        "gone_since": None,
        "gone_counted_at": None,
        "sitemap_url": visit.sitemap_url,
        "requested_url": visit.url,
        "gap_reason": visit.gap_reason or "fetch_failed",
        "gap_detail": visit.gap_detail,
    }


def _number_gaps(
    rows: Sequence[dict[str, Any]], connection: Connection, now: datetime, retry: GapRetry
) -> None:
    """Fill in each row's gap streak (since, attempts) and next retry from the stored one."""
    gapped = [row["url"] for row in rows if row["gap_reason"]]
    before: dict[str, tuple[datetime | None, int]] = {}
    for chunk in chunks(gapped):
        query = select(RECORD_URLS.c.url, RECORD_URLS.c.gap_since, RECORD_URLS.c.gap_attempts)
        query = query.where(RECORD_URLS.c.url.in_(chunk), RECORD_URLS.c.gap_reason.is_not(None))
        before.update(
            (url, (since, attempts)) for url, since, attempts in connection.execute(query)
        )
    for row in rows:
        if not row["gap_reason"]:
            row |= {"gap_detail": None, "gap_since": None, "gap_attempts": 0, "retry_at": None}
            continue
        since, attempts = before.get(row["url"], (None, 0))
        row["gap_since"] = since or now
        row["gap_attempts"] = attempts + 1
        row["retry_at"] = retry.retry_at(attempts + 1, now, row["gap_reason"])
        if row["gap_detail"]:
            row["gap_detail"] = row["gap_detail"][:500]


def _ledger_updates(excluded: Any) -> dict[str, Any]:
    """The ledger columns an upsert rewrites. An empty sitemap_url says "no longer listed"."""
    return {
        "gap_reason": excluded.gap_reason,
        "gap_detail": excluded.gap_detail,
        "gap_since": excluded.gap_since,
        "gap_attempts": excluded.gap_attempts,
        "retry_at": excluded.retry_at,
        "sitemap_url": func.nullif(
            func.coalesce(excluded.sitemap_url, RECORD_URLS.c.sitemap_url), ""
        ),
        "requested_url": excluded.requested_url,
        "visited_run_id": excluded.visited_run_id,
    }


def _withdraw(
    connection: Connection, gone_urls: list[str], now: datetime, withdrawal: Withdrawal
) -> int:
    """Tombstone the records behind these URLs whose every URL has been gone long enough."""
    withdrawn = 0
    other = RECORD_URLS.alias("other_url")
    for chunk in chunks(list(dict.fromkeys(gone_urls))):
        behind = select(RECORD_URLS.c.ncj_number).where(
            RECORD_URLS.c.url.in_(chunk), RECORD_URLS.c.ncj_number.is_not(None)
        )
        still_there = (
            select(other.c.id)
            .where(other.c.ncj_number == RECORDS.c.ncj_number)
            .where(other.c.gone_runs < withdrawal.after_runs)
        )
        withdrawn += connection.execute(
            update(RECORDS)
            .where(
                RECORDS.c.withdrawn_at.is_(None),
                RECORDS.c.ncj_number.in_(behind),
                ~exists(still_there),
            )
            .values(withdrawn_at=now)
        ).rowcount
    return withdrawn


# --- Sitemaps read to the end (the ``sitemaps`` table) ---------------------------------------

SITEMAPS: Table = models.SitemapState.__table__


def read_sitemaps(
    connection: Connection, canonical_urls: Sequence[str]
) -> dict[str, tuple[datetime, int]]:
    """(index lastmod, record pages) of these sitemaps when a run last handled all their pages."""
    found: dict[str, tuple[datetime, int]] = {}
    for chunk in chunks(list(dict.fromkeys(canonical_urls))):
        query = select(SITEMAPS.c.url, SITEMAPS.c.lastmod, SITEMAPS.c.entries).where(
            SITEMAPS.c.url.in_(chunk)
        )
        found.update(
            (url, (lastmod, entries)) for url, lastmod, entries in connection.execute(query)
        )
    return found


def save_sitemaps(
    connection: Connection,
    done: Sequence[tuple[str, datetime, int]],
    now: datetime,
    run_id: int | None,
) -> None:
    """Remember sitemaps (canonical URL, index lastmod, record pages) handled to the end."""
    if not done:
        return
    stmt = insert_for(connection, SITEMAPS)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SITEMAPS.c.url],
        set_={
            name: stmt.excluded[name] for name in ("lastmod", "entries", "read_at", "crawl_run_id")
        },
    )
    connection.execute(
        stmt,
        [
            {
                "url": url,
                "lastmod": lastmod,
                "entries": entries,
                "read_at": now,
                "crawl_run_id": run_id,
            }
            for url, lastmod, entries in done
        ],
    )


def forget_sitemaps(connection: Connection, canonical_urls: Sequence[str]) -> None:
    for chunk in chunks(list(dict.fromkeys(canonical_urls))):
        connection.execute(delete(SITEMAPS).where(SITEMAPS.c.url.in_(chunk)))


# --- What a run asks for besides its entry points (the spider asks, before the sitemaps) -----


def due_gaps(connection: Connection, now: datetime) -> list[str]:
    """URLs whose record is not stored and whose retry time has come, oldest retry first."""
    table = RECORD_URLS.c
    query = (
        select(_as_requested())
        .where(table.gap_reason.is_not(None), or_(table.retry_at.is_(None), table.retry_at <= now))
        .order_by(table.retry_at, table.id)
    )
    return list(connection.execute(query).scalars())


def gone_record_urls(connection: Connection) -> list[str]:
    """URLs of stored records that answered "gone": each run asks again, so a withdrawal
    streak grows (or ends) whether or not a sitemap still lists the page."""
    table = RECORD_URLS.c
    query = select(_as_requested()).where(table.kind.in_(GONE_KINDS), table.ncj_number.is_not(None))
    return list(connection.execute(query.order_by(table.id)).scalars())


def revalidation_due(
    connection: Connection, now: datetime, period: timedelta, run_started: datetime
) -> list[str]:
    """Stored records to re-check (conditionally) in this run, least recently verified first.

    Each run takes the share of the collection that the time since the previous run is of
    ``period``, so runs on any schedule re-check every record once per period, each carrying a
    bounded share; records not verified for longer than ``period`` are always taken.
    """
    runs = CRAWL_RUNS.c
    previous = connection.execute(
        select(func.max(runs.started_at)).where(runs.started_at < run_started)
    ).scalar()
    if previous is None or period <= timedelta(0):
        return []  # a new database: everything in it was verified by the run that filled it
    share = min(1.0, (now - previous) / period)
    live = RECORDS.c.withdrawn_at.is_(None)
    total = connection.execute(select(func.count()).where(live)).scalar() or 0
    overdue = connection.execute(
        select(func.count()).where(live, RECORDS.c.last_seen_at < now - period)
    ).scalar()
    query = (
        select(RECORDS.c.source_url)
        .where(live)
        .order_by(RECORDS.c.last_seen_at, RECORDS.c.ncj_number)
        .limit(max(math.floor(total * share), overdue or 0))
    )
    return list(connection.execute(query).scalars())


def dropped_from_sitemap(connection: Connection, sitemap: str, listed: Iterable[str]) -> list[str]:
    """Stored records' URLs that ``sitemap`` (canonical) listed before and lists no more."""
    still = set(listed)
    table = RECORD_URLS.c
    query = select(table.url, _as_requested()).where(
        table.sitemap_url == sitemap, table.ncj_number.is_not(None), table.kind == "record"
    )
    return [spelled for url, spelled in connection.execute(query) if url not in still]


def _as_requested() -> Any:
    """A stored URL as it was last requested (rows from before 0006: the canonical one)."""
    return func.coalesce(RECORD_URLS.c.requested_url, RECORD_URLS.c.url)
