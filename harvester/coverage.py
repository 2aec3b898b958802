"""The completeness ledger: what the database holds, what it knows it is missing, and why.

`harvester coverage` prints it; the crawl's summary line ends with ``missing_summary``. Every
figure is one aggregate query over the tables (no per-row Python), in SQLAlchemy Core that
runs unchanged on SQLite and PostgreSQL; ages and retry times are compared with bound UTC
timestamps computed here, never with a dialect's date functions.

What the figures mean (docs/schema.md has the columns):

- **known record URLs**: rows of ``record_urls`` (every URL a record page was expected at and
  requested, answered or not, alias URLs that redirected included), grouped by the sitemap that
  last listed them (``sitemap_url``; NULL: reached from a listing page or from ``url``/``ncj``
  arguments, or last written before migration 0006 recorded the sitemap). ``listed`` is the
  sitemap's entry count when it was read to the end (the ``sitemaps`` table), else None.
- **records**: rows of ``records``; withdrawn ones have ``withdrawn_at`` (a tombstone).
- **quarantine**: open rows (``resolved_at`` NULL), counted as distinct URLs, by reason (a URL
  quarantined for two reasons counts once in the total and once under each reason).
- **gaps**: ``record_urls`` rows with a ``gap_reason``: the URL's record is not stored (yet).
  Per reason: URLs, the oldest ``gap_since``, the next ``retry_at``, the most attempts in a
  row, and how many are due (``retry_at`` NULL or not after now).
- **never fetched**: the database only knows URLs that were requested. ``failed_urls`` are the
  rows of kind ``failed`` (the last request got no page: an HTTP error after retries, a
  timeout, a robots.txt block, ...); ``never_answered`` are those whose gap began when the URL
  became known (``gap_since <= first_seen_at``): no request for them ever brought a page. A
  sitemap entry that was never requested at all (a run stopped before it, or a sitemap that
  could not be read) leaves no row anywhere, so it cannot be counted here; what is known is
  which sitemaps were read to the end and how many pages they listed (``listed``).
- **last verification**: for each stored, not withdrawn record, the newest ``last_seen_at``
  (the last 200 or 304) of its URLs of kind ``record``, bucketed by age; ``unverified`` are
  the records with no such URL (stored before URL state existed, or every URL now answers
  otherwise).
- **missing parents**: NCJ numbers that chapters name as their book (``records.part_of``) with
  no ``records`` row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, case, exists, func, or_, select

from harvester import models

RECORD_URLS = models.RecordUrl.__table__
RECORDS = models.Record.__table__
QUARANTINE = models.Quarantine.__table__
SITEMAPS = models.SitemapState.__table__
CRAWL_RUNS = models.CrawlRun.__table__

TOP_SITEMAPS = 10
FIRST_MISSING_PARENTS = 10
# Upper bounds of the verification-age buckets; the last bucket is everything older.
AGE_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<1 day", timedelta(days=1)),
    ("<7 days", timedelta(days=7)),
    ("<30 days", timedelta(days=30)),
    ("<90 days", timedelta(days=90)),
    ("<365 days", timedelta(days=365)),
)
OLDER = ">=365 days"
ARGUMENTS_LABEL = "listing/url/ncj arguments"

SourceKind = Literal["sitemap", "arguments", "other_sitemaps"]


@dataclass(frozen=True, slots=True)
class SourceCount:
    """Known URLs from one source: a sitemap, the crawl arguments, or the smaller sitemaps."""

    kind: SourceKind
    sitemap: str | None  # the canonical sitemap URL for kind "sitemap"
    sitemaps: int  # sitemaps summed in this row (1, 0 for arguments, n for the rest)
    urls: int
    record_pages: int  # of which the last answer was a stored record (kind 'record')
    gaps: int  # of which have a gap reason
    listed: int | None  # entries of the sitemap(s) read to the end (table sitemaps)

    @property
    def label(self) -> str:
        if self.kind == "sitemap":
            return str(self.sitemap)
        if self.kind == "arguments":
            return ARGUMENTS_LABEL
        return f"{self.sitemaps} more sitemap{'s' if self.sitemaps != 1 else ''}"


@dataclass(frozen=True, slots=True)
class KnownUrls:
    total: int
    sources: tuple[SourceCount, ...]  # top sitemaps by URLs, then the rest summed, arguments
    sitemaps: int  # distinct sitemaps that listed a known URL
    sitemaps_read: int  # rows of the sitemaps table
    sitemap_entries: int  # their entries, summed


@dataclass(frozen=True, slots=True)
class Records:
    stored: int
    withdrawn: int

    @property
    def current(self) -> int:
        return self.stored - self.withdrawn


@dataclass(frozen=True, slots=True)
class Quarantined:
    open_urls: int  # distinct URLs with an open row
    open_rows: int
    by_reason: dict[str, int]  # distinct URLs per reason, by reason name


@dataclass(frozen=True, slots=True)
class GapCount:
    reason: str
    urls: int
    due: int  # retry_at NULL or not after the report's time
    oldest_since: datetime | None
    next_retry: datetime | None
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Gaps:
    total: int
    due: int
    by_reason: tuple[GapCount, ...]  # most URLs first, then by reason

    def counts(self) -> dict[str, int]:
        return {gap.reason: gap.urls for gap in self.by_reason}


@dataclass(frozen=True, slots=True)
class NeverFetched:
    failed_urls: int  # kind 'failed': the last request brought no page
    never_answered: int  # of which no request ever brought one


@dataclass(frozen=True, slots=True)
class Verification:
    buckets: dict[str, int]  # AGE_BUCKETS labels then OLDER, in that order
    unverified: int  # current records with no URL of kind 'record'


@dataclass(frozen=True, slots=True)
class MissingParents:
    numbers: int  # distinct NCJ numbers named by part_of with no records row
    chapters: int  # records naming one of them
    first: tuple[int, ...]  # the lowest of them


@dataclass(frozen=True, slots=True)
class LastRun:
    id: int
    spider: str
    started_at: datetime
    finished_at: datetime | None
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class CoverageReport:
    generated_at: datetime
    known_urls: KnownUrls
    records: Records
    quarantine: Quarantined
    gaps: Gaps
    never_fetched: NeverFetched
    verification: Verification
    missing_parents: MissingParents
    crawl_runs: int
    last_run: LastRun | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """The `--json` shape (README, "Coverage"): plain JSON types, ISO 8601 UTC times."""
        data: dict[str, Any] = _plain(asdict(self))
        data["records"]["current"] = self.records.current
        for source, row in zip(data["known_urls"]["sources"], self.known_urls.sources, strict=True):
            source["label"] = row.label
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def coverage_report(
    connection: Connection,
    now: datetime | None = None,
    top_sitemaps: int = TOP_SITEMAPS,
    first_missing_parents: int = FIRST_MISSING_PARENTS,
) -> CoverageReport:
    """The ledger of the database ``connection`` is on, as of ``now`` (default: the clock).

    The figures come from several queries: for figures that add up while a crawl writes, run
    them in one snapshot (`harvester coverage` asks PostgreSQL for REPEATABLE READ).
    """
    now = now or datetime.now(UTC)
    records = _records(connection)
    return CoverageReport(
        generated_at=now,
        known_urls=_known_urls(connection, top_sitemaps),
        records=records,
        quarantine=_quarantine(connection),
        gaps=_gaps(connection, now),
        never_fetched=_never_fetched(connection),
        verification=_verification(connection, now, records.current),
        missing_parents=_missing_parents(connection, first_missing_parents),
        crawl_runs=int(connection.scalar(select(func.count()).select_from(CRAWL_RUNS)) or 0),
        last_run=_last_run(connection),
    )


def _by_sitemap(connection: Connection) -> list[tuple[str | None, int, int, int]]:
    u = RECORD_URLS.c
    query = select(
        u.sitemap_url,
        func.count(),
        _count_if(u.kind == "record"),
        _count_if(u.gap_reason.is_not(None)),
    ).group_by(u.sitemap_url)
    return [(sitemap, int(n), int(r), int(g)) for sitemap, n, r, g in connection.execute(query)]


def _listed(connection: Connection) -> dict[str, int]:
    return {
        url: int(entries)
        for url, entries in connection.execute(select(SITEMAPS.c.url, SITEMAPS.c.entries))
    }


def _known_urls(connection: Connection, top: int) -> KnownUrls:
    groups = _by_sitemap(connection)
    listed = _listed(connection)
    sitemap_groups = sorted(
        (g for g in groups if g[0] is not None), key=lambda g: (-g[1], str(g[0]))
    )
    sources = [
        SourceCount("sitemap", sitemap, 1, n, records, gaps, listed.get(str(sitemap)))
        for sitemap, n, records, gaps in sitemap_groups[:top]
    ]
    rest = sitemap_groups[top:]
    if rest:
        rest_listed = [listed[str(g[0])] for g in rest if g[0] in listed]
        sources.append(
            SourceCount(
                "other_sitemaps",
                None,
                len(rest),
                sum(g[1] for g in rest),
                sum(g[2] for g in rest),
                sum(g[3] for g in rest),
                sum(rest_listed) if rest_listed else None,
            )
        )
    for sitemap, n, records, gaps in groups:
        if sitemap is None:
            sources.append(SourceCount("arguments", None, 0, n, records, gaps, None))
    return KnownUrls(
        total=sum(g[1] for g in groups),
        sources=tuple(sources),
        sitemaps=len(sitemap_groups),
        sitemaps_read=len(listed),
        sitemap_entries=sum(listed.values()),
    )


def _records(connection: Connection) -> Records:
    stored, withdrawn = connection.execute(
        select(func.count(), _count_if(RECORDS.c.withdrawn_at.is_not(None)))
    ).one()
    return Records(stored=int(stored), withdrawn=int(withdrawn))


def _quarantine(connection: Connection) -> Quarantined:
    q = QUARANTINE.c
    open_ = q.resolved_at.is_(None)
    urls, rows = connection.execute(
        select(func.count(q.url.distinct()), func.count()).where(open_)
    ).one()
    by_reason = connection.execute(
        select(q.reason, func.count(q.url.distinct()))
        .where(open_)
        .group_by(q.reason)
        .order_by(q.reason)
    )
    return Quarantined(
        open_urls=int(urls),
        open_rows=int(rows),
        by_reason={reason: int(n) for reason, n in by_reason},
    )


def _gaps(connection: Connection, now: datetime) -> Gaps:
    u = RECORD_URLS.c
    due = or_(u.retry_at.is_(None), u.retry_at <= now)
    query = (
        select(
            u.gap_reason,
            func.count(),
            _count_if(due),
            func.min(u.gap_since),
            func.min(u.retry_at),
            func.max(u.gap_attempts),
        )
        .where(u.gap_reason.is_not(None))
        .group_by(u.gap_reason)
    )
    rows = [
        GapCount(reason, int(n), int(d), since, retry, int(attempts or 0))
        for reason, n, d, since, retry, attempts in connection.execute(query)
    ]
    rows.sort(key=lambda gap: (-gap.urls, gap.reason))
    return Gaps(
        total=sum(g.urls for g in rows), due=sum(g.due for g in rows), by_reason=tuple(rows)
    )


def _never_fetched(connection: Connection) -> NeverFetched:
    u = RECORD_URLS.c
    failed, never = connection.execute(
        select(func.count(), _count_if(u.gap_since <= u.first_seen_at)).where(u.kind == "failed")
    ).one()
    return NeverFetched(failed_urls=int(failed), never_answered=int(never))


def _verification(connection: Connection, now: datetime, current: int) -> Verification:
    u = RECORD_URLS.c
    # The freshest URL of each current record: records without one are the unverified rest.
    seen = (
        select(func.max(u.last_seen_at).label("seen"))
        .select_from(RECORD_URLS.join(RECORDS, RECORDS.c.ncj_number == u.ncj_number))
        .where(u.kind == "record", RECORDS.c.withdrawn_at.is_(None))
        .group_by(u.ncj_number)
        .subquery()
    )
    # One CASE per bucket in a single row, not a GROUP BY over a CASE with bound parameters
    # (PostgreSQL would not match it to the SELECT's).
    cuts = [now - age for _, age in AGE_BUCKETS]
    columns = []
    newer = None
    for cut in cuts:
        bounded = (
            seen.c.seen >= cut if newer is None else and_(seen.c.seen >= cut, seen.c.seen < newer)
        )
        columns.append(_count_if(bounded))
        newer = cut
    columns.append(_count_if(seen.c.seen < cuts[-1]))
    *counts, verified = (int(n) for n in connection.execute(select(*columns, func.count())).one())
    labels = [label for label, _ in AGE_BUCKETS] + [OLDER]
    return Verification(
        buckets=dict(zip(labels, counts, strict=True)), unverified=current - verified
    )


def _missing_parents(connection: Connection, first: int) -> MissingParents:
    chapter = RECORDS.alias("chapter")
    book = RECORDS.alias("book")
    missing = and_(
        chapter.c.part_of.is_not(None),
        ~exists().where(book.c.ncj_number == chapter.c.part_of),
    )
    numbers, chapters = connection.execute(
        select(func.count(chapter.c.part_of.distinct()), func.count()).where(missing)
    ).one()
    lowest = connection.scalars(
        select(chapter.c.part_of).where(missing).distinct().order_by(chapter.c.part_of).limit(first)
    )
    return MissingParents(numbers=int(numbers), chapters=int(chapters), first=tuple(lowest))


def _last_run(connection: Connection) -> LastRun | None:
    r = CRAWL_RUNS.c
    row = connection.execute(
        select(r.id, r.spider, r.started_at, r.finished_at, r.finish_reason)
        .order_by(r.id.desc())
        .limit(1)
    ).first()
    return LastRun(*row) if row is not None else None


def missing_summary(report: CoverageReport) -> str:
    """The end of the crawl's summary line: what is still missing and why.

    "still missing: 12 (7 timeout, 3 not_a_record, 2 store_error), 4 quarantined", or
    "nothing missing". Missing counts URLs with a gap; quarantined counts URLs with an open
    quarantine row (a gap of reason ``quarantined`` or ``store_error`` usually has one too).
    """
    return _missing_phrase(report.gaps, report.quarantine)


def still_missing(connection: Connection, now: datetime | None = None) -> str:
    """``missing_summary`` from the two queries it needs, not the whole report: for the end of
    a crawl, where the rest of the ledger would be computed for nothing."""
    return _missing_phrase(_gaps(connection, now or datetime.now(UTC)), _quarantine(connection))


def _missing_phrase(gaps: Gaps, quarantine: Quarantined) -> str:
    if gaps.total:
        reasons = ", ".join(f"{gap.urls} {gap.reason}" for gap in gaps.by_reason)
        text = f"still missing: {gaps.total} ({reasons})"
    else:
        text = "nothing missing"
    if quarantine.open_urls:
        text += f", {quarantine.open_urls} quarantined"
    return text


def format_report(report: CoverageReport, database: str) -> str:
    """The readable text of `harvester coverage`."""
    lines: list[str] = [f"Coverage of {database} at {_when(report.generated_at)} UTC", ""]
    known = report.known_urls
    lines.append(
        f"Known record URLs: {known.total}, from {_n(known.sitemaps, 'sitemap')} and the"
        f" arguments; {_n(known.sitemaps_read, 'sitemap')} read to the end listed"
        f" {_n(known.sitemap_entries, 'page')}"
    )
    if known.sources:
        lines.extend(
            _table(
                ("source", "urls", "records", "gaps", "listed"),
                [
                    (s.label, s.urls, s.record_pages, s.gaps, "" if s.listed is None else s.listed)
                    for s in known.sources
                ],
            )
        )
    records = report.records
    lines.append(
        f"Records: {records.stored} stored, {records.withdrawn} withdrawn,"
        f" {records.current} current"
    )
    quarantine = report.quarantine
    reasons = ", ".join(f"{n} {reason}" for reason, n in quarantine.by_reason.items())
    lines.append(
        f"Quarantined (open): {_n(quarantine.open_urls, 'URL')}"
        + (f" ({reasons}; {_n(quarantine.open_rows, 'row')})" if reasons else "")
    )
    gaps = report.gaps
    lines.append(
        f"Gaps: {_n(gaps.total, 'URL')} without a stored record, {gaps.due} due for a retry now"
    )
    if gaps.by_reason:
        lines.extend(
            _table(
                ("reason", "urls", "due", "attempts", "oldest gap since", "next retry"),
                [
                    (
                        g.reason,
                        g.urls,
                        g.due,
                        g.max_attempts,
                        _when(g.oldest_since),
                        _when(g.next_retry),
                    )
                    for g in gaps.by_reason
                ],
            )
        )
    never = report.never_fetched
    lines.append(
        f"Never fetched: {_n(never.never_answered, 'URL')} no request ever brought a page for"
        f" ({never.failed_urls} whose last request failed)"
    )
    verification = report.verification
    ages = ", ".join(f"{label} {n}" for label, n in verification.buckets.items())
    lines.append(f"Last verified (current records): {ages}; never {verification.unverified}")
    parents = report.missing_parents
    first = ", ".join(str(n) for n in parents.first)
    more = ", ..." if parents.numbers > len(parents.first) else ""
    lines.append(
        f"Books named by chapters but not stored: {parents.numbers}"
        + (
            f" (NCJ {first}{more}; named by {_n(parents.chapters, 'chapter')})"
            if parents.numbers
            else ""
        )
    )
    run = report.last_run
    if run is None:
        lines.append("Crawl runs: none")
    else:
        lines.append(
            f"Crawl runs: {report.crawl_runs}; the last, #{run.id} ({run.spider}), started"
            f" {_when(run.started_at)}: {run.finish_reason or 'not finished'}"
        )
    summary = missing_summary(report)
    lines.append(summary[:1].upper() + summary[1:])
    return "\n".join(lines)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """Indented columns of text, numbers right-aligned."""
    cells = [header, *[tuple(str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    # Numbers right-aligned; an empty cell is an unknown number.
    numeric = [
        all(isinstance(row[i], int) or row[i] == "" for row in rows) for i in range(len(header))
    ]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    ]


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"
