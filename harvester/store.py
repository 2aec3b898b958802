"""Writing records into the database: batched, idempotent upserts keyed on the NCJ number.

A batch is written in one transaction by one writer thread, so the crawl keeps fetching and
parsing while the database works. Per batch:

- records whose content hash is unchanged only get ``last_seen_at`` touched;
- new and changed records are upserted (``INSERT ... ON CONFLICT (ncj_number) DO UPDATE``),
  changed ones bump ``last_changed_at`` and have their list rows (people, agencies, grants,
  subjects) replaced;
- versions, parser version and raw pages are recorded as harvester.history describes;
- contributors and agencies are shared across records by normalized name.

Nothing is ever deleted from ``records``: a record missing from a crawl stays as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Container, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, Literal, TypeVar, cast, get_args, get_type_hints

from sqlalchemy import Connection, Engine, Table, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from harvester import models
from harvester import settings as defaults
from harvester.allocator import PeriodicRelease
from harvester.db import WRITE_TRANSACTION_OPTION, chunks, insert_for
from harvester.history import STORED_COLUMNS, RecordHistory
from harvester.items import (
    LAYOUT_RANK,
    AgencyRole,
    ContributorRole,
    FetchedPage,
    PageVisit,
    Person,
    RawRecord,
    Record,
    Rejection,
)
from harvester.normalize import known_content_hash, record_content
from harvester.runsets import RunKeys
from harvester.urlstate import (
    DEFAULT_GAP_RETRY,
    DEFAULT_WITHDRAWAL,
    GapRetry,
    Withdrawal,
    visit_of,
    write_url_states,
)
from harvester.writerprocess import NotSendable, WriterProcess, WriterProcessDied

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Which records of a batch another page of them supersedes (a distributed run's workers:
# harvester.distributed.SharedSightings.superseded), asked in the batch's transaction.
Superseded = Callable[[Connection, Sequence[tuple[Record, str]]], set[int]]

RECORDS: Table = models.Record.__table__
CONTRIBUTORS: Table = models.Contributor.__table__
RECORD_CONTRIBUTORS: Table = models.RecordContributor.__table__
AGENCIES: Table = models.Agency.__table__
RECORD_AGENCIES: Table = models.RecordAgency.__table__
RECORD_GRANTS: Table = models.RecordGrant.__table__
RECORD_SUBJECTS: Table = models.RecordSubject.__table__
QUARANTINE: Table = models.Quarantine.__table__
CRAWL_RUNS: Table = models.CrawlRun.__table__

# The columns of `records` that writing a new version of a record leaves as they are, and why.
# Every other column is rewritten from ``record_row`` and the record's provenance
# (``RecordHistory.prepare``): a new column is rewritten unless it is added here, and
# tests/test_store.py checks column by column that the upsert rewrites the rest.
KEPT_ON_REWRITE: dict[str, str] = {
    "ncj_number": "the key the upsert matches on",
    "first_seen_at": "when the record was first seen: the first write's",
    "withdrawn_at": "the tombstone, set and cleared by harvester.urlstate from URL evidence",
}
_REWRITTEN = tuple(c.name for c in RECORDS.columns if c.name not in KEPT_ON_REWRITE)
# A record's lists: replaced as a whole when the record changes.
LIST_TABLES = (RECORD_CONTRIBUTORS, RECORD_AGENCIES, RECORD_GRANTS, RECORD_SUBJECTS)


def normalized_name(name: str) -> str:
    """The key that makes 'J. Walsh', 'J Walsh' and 'J WALSH' one contributor."""
    return " ".join(re.sub(r"[.,]", " ", name).casefold().split())


def now_utc() -> datetime:
    return datetime.now(UTC)


def record_row(record: Record, digest: str, now: datetime, run_id: int | None) -> dict[str, Any]:
    published = record.published
    created = record.date_created
    journal = record.journal
    chapter = record.chapter_of
    created_day = (
        date(created.year, created.month, created.day)
        if created and created.year and created.month and created.day
        else None
    )
    return {
        "ncj_number": record.ncj_number,
        "title": record.title,
        "annotation": record.annotation,
        "abstract": record.abstract,
        "published_text": published.text if published else None,
        "published_year": published.year if published else None,
        "published_month": published.month if published else None,
        "published_day": published.day if published else None,
        "published_precision": published.precision if published else None,
        "date_created_text": created.text if created else None,
        "date_created": created_day,
        "page_count": record.page_count,
        "journal_citation": journal.raw if journal else None,
        "journal_name": journal.name if journal else None,
        "journal_volume": journal.volume if journal else None,
        "journal_issue": journal.issue if journal else None,
        "journal_dated": journal.dated if journal else None,
        "journal_pages": journal.pages if journal else None,
        "language": record.language,
        "country": record.country,
        "publication_type": record.publication_type,
        "publication_format": record.publication_format,
        "publication_series": record.publication_series,
        "sale_source": record.sale_source,
        "publisher": record.publisher,
        "note": record.note,
        "part_of": chapter.parent_ncj_number if chapter else None,
        "part_pages": chapter.pages if chapter else None,
        "book_title": chapter.book_title if chapter else None,
        "document_urls": list(record.document_urls),
        "extra_fields": dict(record.extra_fields),
        "text_repairs": list(record.text_repairs) or None,
        "layout": record.layout,
        "source_url": record.source_url,
        "first_seen_at": now,
        "last_seen_at": now,
        "last_changed_at": now,
        "content_hash": digest,
        "crawl_run_id": run_id,
    }


# How a RawRecord is kept in quarantine.raw: its fields but the page (stored in raw_pages and
# referenced by the row), datetimes as ISO text.
_RAW_JSON_FIELDS = tuple(f.name for f in dataclasses.fields(RawRecord) if f.name != "fetched_page")
_RAW_REQUIRED = frozenset(
    f.name
    for f in dataclasses.fields(RawRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_RAW_DATETIMES = tuple(
    name
    for name, hint in get_type_hints(RawRecord).items()
    if name in _RAW_JSON_FIELDS and datetime in (hint, *get_args(hint))
)


def raw_to_json(raw: RawRecord | None) -> dict[str, Any] | None:
    """A RawRecord as quarantine.raw keeps it; ``raw_from_json`` reads it back."""
    if raw is None:
        return None
    data = dataclasses.asdict(dataclasses.replace(raw, fetched_page=None))
    del data["fetched_page"]
    for name in _RAW_DATETIMES:
        if data[name] is not None:
            data[name] = data[name].isoformat()
    return data


def raw_from_json(data: Mapping[str, Any] | None) -> RawRecord | None:
    """The RawRecord ``raw_to_json`` kept, if the JSON holds one (older rows may not)."""
    if not data or not data.keys() >= _RAW_REQUIRED:
        return None
    values = {name: data[name] for name in _RAW_JSON_FIELDS if name in data}
    for name in _RAW_DATETIMES:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return RawRecord(**values)


@dataclasses.dataclass
class WriteCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    not_modified: int = 0  # 304 answers: known unchanged without a body
    withdrawn: int = 0
    reappeared: int = 0
    unwritten: int = 0  # records and quarantine rows fetched but not written
    unwritten_visits: int = 0  # URL states not written
    failed_batches: int = 0  # batches not (all) written after their retries
    refused: int = 0  # records the database refused: quarantined as store_error, a gap
    counted: set[int] = dataclasses.field(default_factory=set)

    def add(self, other: WriteCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        self.not_modified += other.not_modified
        self.withdrawn += other.withdrawn
        self.reappeared += other.reappeared
        self.unwritten += other.unwritten
        self.unwritten_visits += other.unwritten_visits
        self.failed_batches += other.failed_batches
        self.refused += other.refused


def written_figures(counts: WriteCounts) -> dict[str, int]:
    """The ``crawl_runs`` columns that count what a run's writes did."""
    return {
        "records_new": counts.new,
        "records_updated": counts.updated,
        "records_unchanged": counts.unchanged,
        "records_quarantined": counts.quarantined,
        "pages_not_modified": counts.not_modified,
    }


def write_batch(
    connection: Connection,
    records: Sequence[tuple[Record, str]],
    quarantined: Sequence[dict[str, Any]],
    *,
    now: datetime,
    run_id: int | None,
    counted: Container[int],
    visits: Sequence[PageVisit] = (),
    withdrawal: Withdrawal = DEFAULT_WITHDRAWAL,
    pages: Mapping[int, FetchedPage] | None = None,
    history: RecordHistory | None = None,
    retry: GapRetry = DEFAULT_GAP_RETRY,
    superseded: Superseded | None = None,
) -> WriteCounts:
    """Write one batch in the caller's transaction. ``records`` holds (record, content hash).

    ``counted`` holds the NCJ numbers already counted in this run: a record written twice in
    one run (a richer page for it came later) counts once. The numbers this batch counts are
    returned in ``WriteCounts.counted``, for the caller to add once the transaction commits.
    ``visits`` are fetches that carry no record to store (304s, non-record pages, duplicates,
    quarantined pages); the records' own URL state is written with them.
    ``superseded`` (a distributed run's): the NCJ numbers of records not to write, as a
    better page of them, kept by another worker, is theirs; their URL state is written.
    ``pages`` holds the fetched pages of records, by NCJ number, when raw pages are kept;
    quarantine rows carry theirs under ``fetched_page``.
    """
    history = history or RecordHistory()
    pages = pages or {}
    counts = WriteCounts(quarantined=len(quarantined))
    # First, before any row is written: its locks are then never waited for while holding one.
    dropped = superseded(connection, records) if superseded is not None and records else set()
    if quarantined:
        connection.execute(insert(QUARANTINE), history.quarantine_rows(connection, quarantined))
    if history.sighting:  # a re-derivation from stored pages fetched nothing
        state = write_url_states(
            connection,
            [*visits, *(visit_of(record) for record, _ in records)],
            now,
            withdrawal,
            retry,
            run_id=run_id,
        )
        counts.not_modified, counts.withdrawn = state.not_modified, state.withdrawn
        counts.reappeared = state.reappeared
    if dropped:
        records = [
            (record, digest) for record, digest in records if record.ncj_number not in dropped
        ]
    if not records:
        return counts
    keys = [record.ncj_number for record, _ in records]
    stored: dict[int, Any] = {}  # ncj_number -> row: content hash, layout, provenance
    for chunk in chunks(keys):
        query = select(
            RECORDS.c.ncj_number, RECORDS.c.content_hash, RECORDS.c.layout, *STORED_COLUMNS
        ).where(RECORDS.c.ncj_number.in_(chunk))
        stored.update((row.ncj_number, row) for row in connection.execute(query))

    def keeps_stored(record: Record, digest: str) -> bool:
        """Same content, or a poorer page (a publication page) of a record stored richer."""
        if record.ncj_number not in stored:
            return False
        row = stored[record.ncj_number]
        return row.content_hash == digest or LAYOUT_RANK.get(record.layout, 0) < LAYOUT_RANK.get(
            row.layout, 0
        )

    unchanged = [record.ncj_number for record, digest in records if keeps_stored(record, digest)]
    writes = [(record, digest) for record, digest in records if not keeps_stored(record, digest)]
    changed = [record.ncj_number for record, _ in writes if record.ncj_number in stored]
    for key in keys:
        if key in counted or key in counts.counted:
            continue
        counts.counted.add(cast(int, key))  # validation gave every record here its number
        if key not in stored:
            counts.new += 1
        elif key in changed:
            counts.updated += 1
        else:
            counts.unchanged += 1

    if seen := history.seen(now):
        for chunk in chunks(unchanged):
            connection.execute(update(RECORDS).where(RECORDS.c.ncj_number.in_(chunk)).values(seen))
    same_content = [
        record
        for record, digest in records
        if record.ncj_number in stored and stored[record.ncj_number].content_hash == digest
    ]
    history.confirm(connection, same_content, stored, pages)
    if not writes:
        return counts

    written = history.prepare(connection, writes, stored, pages, now=now, run_id=run_id)
    stmt = insert_for(connection, RECORDS)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RECORDS.c.ncj_number],
        set_={name: stmt.excluded[name] for name in history.rewritten(_REWRITTEN)},
    )
    connection.execute(
        stmt,
        [record_row(r, digest, now, run_id) | written.values_for(r) for r, digest in writes],
    )
    for table in LIST_TABLES:
        for chunk in chunks(changed):
            connection.execute(delete(table).where(table.c.ncj_number.in_(chunk)))
    _write_lists(connection, [record for record, _ in writes])
    written.write_versions(connection)
    return counts


def _people(record: Record) -> list[tuple[ContributorRole, int, Person | str]]:
    return [
        *(("author", i, p) for i, p in enumerate(record.authors)),
        *(("editor", i, p) for i, p in enumerate(record.editors)),
        *(("corporate_author", i, name) for i, name in enumerate(record.corporate_authors)),
    ]


def _write_lists(connection: Connection, records: Sequence[Record]) -> None:
    contributor_rows: dict[str, dict[str, Any]] = {}
    agency_rows: dict[str, dict[str, Any]] = {}
    for record in records:
        for _, _, who in _people(record):
            if isinstance(who, Person):
                row: dict[str, Any] = {"name": who.name, "family": who.family, "given": who.given}
                row |= {"suffix": who.suffix, "kind": "person"}
            else:
                row = {"name": who, "family": None, "given": None, "suffix": None}
                row |= {"kind": "organization"}
            contributor_rows.setdefault(normalized_name(row["name"]), row)
        for name in (*record.sponsoring_agencies, *record.agencies):
            agency_rows.setdefault(normalized_name(name), {"name": name})

    contributor_ids = _ensure_named(connection, CONTRIBUTORS, contributor_rows)
    agency_ids = _ensure_named(connection, AGENCIES, agency_rows)

    links: list[dict[str, Any]] = []
    agency_links: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    for record in records:
        key = record.ncj_number
        for role, position, who in _people(record):
            person = who if isinstance(who, Person) else None
            name = person.name if person else str(who)
            links.append(
                {
                    "ncj_number": key,
                    "contributor_id": contributor_ids[normalized_name(name)],
                    "name_as_shown": name,
                    "family": person.family if person else None,
                    "given": person.given if person else None,
                    "suffix": person.suffix if person else None,
                    "role": role,
                    "position": position,
                }
            )
        agency_roles: tuple[tuple[AgencyRole, list[str]], ...] = (
            ("sponsor", record.sponsoring_agencies),
            ("agency", record.agencies),
        )
        for agency_role, names in agency_roles:
            for position, name in enumerate(names):
                agency_links.append(
                    {
                        "ncj_number": key,
                        "agency_id": agency_ids[normalized_name(name)],
                        "name_as_shown": name,
                        "role": agency_role,
                        "position": position,
                    }
                )
        grants += [
            {"ncj_number": key, "grant_number": g} for g in dict.fromkeys(record.grant_numbers)
        ]
        subjects += [{"ncj_number": key, "subject": s} for s in dict.fromkeys(record.subjects)]
    for table, rows in (
        (RECORD_CONTRIBUTORS, links),
        (RECORD_AGENCIES, agency_links),
        (RECORD_GRANTS, grants),
        (RECORD_SUBJECTS, subjects),
    ):
        if rows:
            connection.execute(insert(table), rows)


def _ensure_named(
    connection: Connection, table: Table, rows: dict[str, dict[str, Any]]
) -> dict[str, int]:
    """Insert the names not stored yet; return normalized name -> id for all of them."""
    if not rows:
        return {}
    stmt = insert_for(connection, table).on_conflict_do_nothing(
        index_elements=[table.c.normalized_name]
    )
    connection.execute(stmt, [{**row, "normalized_name": key} for key, row in rows.items()])
    ids: dict[str, int] = {}
    keys = list(rows)
    for chunk in chunks(keys):
        query = select(table.c.normalized_name, table.c.id).where(
            table.c.normalized_name.in_(chunk)
        )
        ids.update(connection.execute(query).all())
    return ids


ErrorKind = Literal["transient", "fatal", "refused"]

# SQLite says what went wrong only in its message.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")
_SQLITE_FATAL = ("disk is full", "readonly database", "disk i/o error", "out of memory")
# PostgreSQL SQLSTATEs: connection lost (class 08), serialization failure, deadlock, the server
# shutting down or starting, a lock not available, too many connections.
_PG_TRANSIENT = ("40001", "40P01", "57P01", "57P02", "57P03", "55P03", "53300")
# Disk full, out of memory, read-only transaction, no permission to write.
_PG_FATAL = ("53100", "53200", "25006", "42501")


def error_kind(error: BaseException) -> ErrorKind:
    """How a failed write should be handled.

    ``transient``: the same write may well succeed in a moment (a dropped connection, a lock,
    a serialization failure or deadlock): retry it, never quarantine the records.
    ``fatal``: the database takes no writes at all (disk full, read-only): stop the crawl.
    ``refused``: this data is refused (a constraint, a value out of range, a trigger's RAISE):
    write the rest, quarantine what is refused.
    """
    if not isinstance(error, DBAPIError):
        return "refused"  # e.g. an integer the driver cannot bind
    original = error.orig
    message = str(original).lower()
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate:
        hint = str(getattr(getattr(original, "diag", None), "message_hint", None) or "")
        if sqlstate == "53200" and "max_locks_per_transaction" in f"{message} {hint}":
            # The lock table is full while many writers hold many locks (a distributed run's
            # per-record locks): it frees as their transactions end.
            return "transient"
        if sqlstate in _PG_FATAL:
            return "fatal"
        if sqlstate in _PG_TRANSIENT or sqlstate.startswith("08"):
            return "transient"
    elif any(text in message for text in _SQLITE_FATAL):
        return "fatal"
    if error.connection_invalidated or any(text in message for text in _SQLITE_TRANSIENT):
        return "transient"
    if isinstance(error, OperationalError) and not sqlstate:
        return "transient"  # no answer from the server: the connection is gone
    return "refused"


# How often the writer thread returns the allocator's free memory (harvester.allocator): after
# every batch (one every second or so in a fast crawl; a trim takes a few ms, off the reactor
# thread and without the GIL). Every 10 s let the free memory of several batches pile up, and
# the longer the crawl, the higher the highest such pile: the peak grew with the crawl.
RELEASE_MEMORY_SECONDS = 0.0
# A batch is also full once its pages' bodies reach this size: a batch of 500 record pages of
# the site (about 37 KiB each) held 18 MiB until written, and the next one filled meanwhile,
# so the crawl's peak memory rose by a batch whenever the database was slow for a moment.
BATCH_PAGE_BYTES = 8 * 2**20


@dataclasses.dataclass(slots=True, eq=False)
class _Waiting:
    """An item waiting for room in the buffer: added once, by itself or by ``close``."""

    add: Callable[[], bool]
    added: bool = False

    def add_now(self) -> None:
        if not self.added:
            self.added = True
            self.add()


class RecordWriter:
    """Buffers records and writes them in batches on one background thread.

    Batches are bounded by size and by age; ``close`` flushes the rest and waits for it.
    A write that fails transiently is retried with a backoff for up to ``retry_seconds``;
    what is still not written then is counted in ``counts.unwritten`` (records and quarantine
    rows) and ``counts.unwritten_visits``, never quarantined. When the database refuses all
    writes, ``on_fatal`` is called (from the writer thread) and nothing more is attempted.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        run_id: int | None,
        batch_size: int,
        batch_seconds: float,
        withdrawal: Withdrawal = DEFAULT_WITHDRAWAL,
        history: RecordHistory | None = None,
        retry: GapRetry = DEFAULT_GAP_RETRY,
        retry_seconds: float = defaults.HARVESTER_DB_RETRY_SECONDS,
        on_fatal: Callable[[str], None] | None = None,
        superseded: Superseded | None = None,
        batch_page_bytes: int = BATCH_PAGE_BYTES,
        process: WriterProcess | None = None,
    ) -> None:
        self.engine = engine
        self.superseded = superseded
        self.batch_page_bytes = batch_page_bytes
        self.withdrawal = withdrawal
        self.retry = retry
        self.run_id = run_id
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.history = history or RecordHistory()
        self.retry_seconds = retry_seconds
        self.on_fatal = on_fatal
        self.fatal: str | None = None  # why the database takes no more writes
        self.counts = WriteCounts()
        self._records: dict[int, tuple[Record, str]] = {}
        self._pages: dict[int, FetchedPage] = {}  # held until their batch is written
        self._page_bytes = 0  # of the bodies in _pages
        self._quarantined: list[dict[str, Any]] = []
        self._visits: list[PageVisit] = []
        self._first_buffered: float | None = None
        # NCJ numbers counted in this run (see write_batch), out of memory (harvester.runsets).
        self._counted = RunKeys()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harvester-db")
        self._pending: list[Future[WriteCounts]] = []  # oldest first
        self._waiting: list[_Waiting] = []  # items waiting for room (add_when_room)
        self._raised = 0  # writes that raised (a bug, not a database error)
        # A written batch leaves its buffers free in the writer thread's arena, which glibc
        # keeps: give it back now and then so a long crawl's RSS stays where a short one's is.
        self._release_memory = PeriodicRelease(RELEASE_MEMORY_SECONDS)
        self.last_written = time.monotonic()  # when a batch last committed (the watchdog's)
        # process: the batches are written by that process (harvester.writerprocess),
        # connected to the same database and with a history of its own; the thread above is
        # then its courier, and writes only if that process dies.
        self._process = process
        self.process_deaths = 0
        if process is not None:
            options = {
                "run_id": run_id,
                "batch_size": batch_size,
                "batch_seconds": batch_seconds,
                "withdrawal": withdrawal,
                "retry": retry,
                "retry_seconds": retry_seconds,
                "batch_page_bytes": batch_page_bytes,
            }
            self._executor.submit(self._open_process, options)

    @property
    def failed_batches(self) -> int:
        return self._raised + self.counts.failed_batches

    def add(
        self, record: Record, page: FetchedPage | None = None, digest: str | None = None
    ) -> bool:
        """Buffer a record (and the page it was read from); True when the batch is full.

        ``digest``: the record's content hash, when the caller has it already.
        """
        assert record.ncj_number is not None
        replaced = self._records.get(record.ncj_number)
        if replaced is not None:  # a richer page of the same record: keep the poorer one's URL
            self._visits.append(visit_of(replaced[0]))
        self._records[record.ncj_number] = (record, digest or known_content_hash(record))
        dropped = self._pages.pop(record.ncj_number, None)
        if dropped is not None:
            self._page_bytes -= len(dropped.body)
        if page is not None:
            self._pages[record.ncj_number] = page
            self._page_bytes += len(page.body)
        return self._buffered()

    def add_quarantined(self, record: Record, rejection: Rejection) -> bool:
        self._quarantined.append(self.quarantine_row(record, rejection))
        self._visits.append(visit_of(record, "quarantined"))
        return self._buffered()

    def add_visit(self, visit: PageVisit) -> bool:
        """A fetch with no record to store: kept as URL state for the next crawl."""
        self._visits.append(visit)
        return self._buffered()

    def quarantine_row(self, record: Record, rejection: Rejection) -> dict[str, Any]:
        # Stored records no longer carry their raw values: keep what was normalized instead.
        raw = raw_to_json(record.raw) or {"normalized": record_content(record)}
        return {
            "url": record.source_url,
            "reason": rejection.reason,
            "detail": rejection.detail,
            "raw": raw,
            "fetched_at": record.fetched_at,
            "crawl_run_id": self.run_id,
            "fetched_page": record.raw.fetched_page if record.raw else None,
        }

    def buffered(self) -> int:
        """Records and quarantine rows not handed to the writer thread yet."""
        return len(self._records) + len(self._quarantined)

    def _buffered(self) -> bool:
        if self._first_buffered is None:
            self._first_buffered = time.monotonic()
        return self._full()

    def _full(self) -> bool:
        return (
            len(self._records) + len(self._quarantined) + len(self._visits) >= self.batch_size
            or self._page_bytes >= self.batch_page_bytes
        )

    async def add_when_room(self, record: Record, page: FetchedPage | None = None) -> None:
        """``add``, once the buffer has room: the crawl's back-pressure (see ``_when_room``)."""
        await self._when_room(lambda: self.add(record, page))

    async def add_visit_when_room(self, visit: PageVisit) -> None:
        await self._when_room(lambda: self.add_visit(visit))

    async def _when_room(self, add: Callable[[], bool]) -> None:
        """Add once the buffer is not full: a full one is handed over when the write under way
        is done. Waiting before adding bounds a batch; adding first and waiting after (as
        the crawl did) let every item that came meanwhile join the full buffer, so a batch grew
        with the time the previous one took to write (13.5 MiB of pages seen, for 8) and took
        longer still. Whatever ends the wait (room, a failed write raised here, ``close``
        from a stop, cancellation), the item is added, once."""
        waiting = _Waiting(add)
        self._waiting.append(waiting)
        try:
            while self._full() and (self._records or self._quarantined or self._visits):
                if self._pending:
                    await self._oldest_write_done()
                    self._collect()
                else:
                    self._submit()
        finally:
            if waiting in self._waiting:
                self._waiting.remove(waiting)
            added_by_close = waiting.added
            waiting.add_now()
        if self._full() and not added_by_close:
            self.flush_if_idle()

    async def _oldest_write_done(self) -> None:
        """Wait for the oldest write; its outcome is for ``_collect``. The exception of a failed
        one is marked seen on this waiter's future: otherwise asyncio logs "Future exception
        was never retrieved" when the future is dropped, formatting the traceback from a
        garbage collection, which can land inside another ``ast.parse`` of this thread and
        break it (Python 3.11: "AST constructor recursion depth mismatch")."""
        write = asyncio.wrap_future(self._pending[0])
        await asyncio.wait([write])
        if not write.cancelled():
            write.exception()

    def holding(self) -> bool:
        """Anything handed over and not written yet (buffered or being written)."""
        self._collect()
        return bool(
            self._records or self._quarantined or self._visits or self._pending or self._waiting
        )

    def is_stale(self) -> bool:
        return (
            self._first_buffered is not None
            and time.monotonic() - self._first_buffered >= self.batch_seconds
        )

    def flush_blocking(self) -> None:
        """Outside the crawl's event loop (re-parse): wait for the writes under way, then hand
        the buffer over."""
        while self._pending:
            self._pending[0].exception()  # waits for it
            self._collect()
        self._submit()

    def flush_if_idle(self) -> None:
        """From a timer: write a stale buffer unless a write is still under way."""
        self._collect()
        if not self._pending:
            self._submit()

    def _submit(self) -> None:
        if not self._records and not self._quarantined and not self._visits:
            return
        records = list(self._records.values())
        quarantined, visits, pages = self._quarantined, self._visits, self._pages
        self._records, self._quarantined, self._visits, self._pages = {}, [], [], {}
        self._page_bytes = 0
        self._first_buffered = None
        write = self._write if self._process is None else self._write_there
        self._pending.append(self._executor.submit(write, records, quarantined, visits, pages))

    def _open_process(self, options: dict[str, Any]) -> None:
        """In the writer thread: the writer process opens its writer (imports, connects)."""
        assert self._process is not None
        try:
            self._process.open(self.engine.url.render_as_string(hide_password=False), options)
        except WriterProcessDied:
            self._writer_process_died()
        except RuntimeError as error:  # it could not open: this thread writes instead
            logger.error("The writer process could not start writing: %s", error)
            self._process.close()

    def _write_there(
        self,
        records: list[tuple[Record, str]],
        quarantined: list[dict[str, Any]],
        visits: list[PageVisit],
        pages: dict[int, FetchedPage],
    ) -> WriteCounts:
        """In the writer thread: the batch written by the writer process, or here when it has
        died (or the batch cannot be sent). A batch it died with may have been committed:
        written again here, its records and URL states are upserts and stay one row each, but
        its quarantine rows are added again and its records count as unchanged. That takes a
        death between the commit and the answer; losing the batch is worse."""
        assert self._process is not None
        if not self._process.broken:
            try:
                counts, fatal, last_written = self._process.write(
                    (records, quarantined, visits, pages)
                )
            except WriterProcessDied:
                self._writer_process_died()
            except NotSendable as error:
                logger.warning("A batch is written by the crawl's process: %s", error)
            else:
                # time.monotonic: one clock for every process of the machine.
                self.last_written = max(self.last_written, last_written)
                if fatal is not None and self.fatal is None:
                    self.fatal = fatal
                    if self.on_fatal is not None:
                        self.on_fatal(fatal)
                return counts
        return self._write(records, quarantined, visits, pages)

    def _writer_process_died(self) -> None:
        self.process_deaths += 1
        logger.error(
            "The writer process died (killed, out of memory?): the batch it held and every "
            "batch after it are written by the crawl's process"
        )

    def _collect(self) -> None:
        """Add up the finished writes; a write that failed raises here, after leaving the queue."""
        while self._pending and self._pending[0].done():
            future = self._pending.pop(0)
            if future.exception() is not None:
                self._raised += 1
            self.counts.add(future.result())

    def _write(
        self,
        records: list[tuple[Record, str]],
        quarantined: list[dict[str, Any]],
        visits: list[PageVisit],
        pages: dict[int, FetchedPage],
    ) -> WriteCounts:
        size = len(records) + len(quarantined)
        lost = WriteCounts(unwritten=size, unwritten_visits=len(visits), failed_batches=1)
        if self.fatal is not None:
            return lost
        try:
            self._with_retries(
                lambda: self.history.codec.prepare(self.engine, list(pages.values()))
            )
        except Exception as error:  # the pages go without a dictionary; the batch goes on
            if error_kind(error) == "fatal":
                return self._refuse_all(error, lost)
            logger.warning("No raw page dictionary this batch: %s", error)
        try:
            return self._with_retries(
                lambda: self._write_in_one_transaction(records, quarantined, visits, pages)
            )
        except Exception as error:
            kind = error_kind(error)
            if kind == "fatal":
                return self._refuse_all(error, lost)
            if kind == "transient":
                logger.error(
                    "A batch of %d records and %d URL states could not be written after "
                    "retrying for %.0f s: %s",
                    size,
                    len(visits),
                    self.retry_seconds,
                    _first_line(error),
                )
                return lost
            # One bad row must not cost the whole batch: write them one by one, and put what
            # the database refuses into quarantine with its reason.
            logger.error(
                "A batch of %d records was refused (%s); writing them one by one",
                len(records),
                _first_line(error),
            )
            return self._one_by_one(records, quarantined, visits, pages)

    def _one_by_one(
        self,
        records: list[tuple[Record, str]],
        quarantined: list[dict[str, Any]],
        visits: list[PageVisit],
        pages: dict[int, FetchedPage],
    ) -> WriteCounts:
        counts = WriteCounts()
        attempt = self._with_retries

        left = len(records) + len(quarantined)
        try:
            for row in quarantined:
                try:
                    counts.add(attempt(partial(self._write_in_one_transaction, [], [row])))
                except Exception as error:  # keep the verdict, lose only what was refused
                    if error_kind(error) != "refused":
                        raise
                    logger.error("Quarantine row for %s could not be stored: %s", row["url"], error)
                    row = {**row, "raw": None, "detail": f"{row['detail']} (raw values refused)"}
                    counts.add(
                        self._with_retries(partial(self._write_in_one_transaction, [], [row]))
                    )
                left -= 1
            for record, digest in records:
                try:
                    counts.add(
                        attempt(
                            partial(
                                self._write_in_one_transaction, [(record, digest)], [], (), pages
                            )
                        )
                    )
                except Exception as error:
                    if error_kind(error) == "transient":
                        logger.error(
                            "NCJ %s could not be written (retried): %s",
                            record.ncj_number,
                            _first_line(error),
                        )
                        counts.unwritten += 1
                    elif error_kind(error) == "fatal":
                        raise
                    else:
                        counts.add(self._quarantine_refused(record, pages, error))
                left -= 1
            if visits:
                counts.add(
                    self._with_retries(lambda: self._write_in_one_transaction([], [], visits))
                )
        except Exception as error:
            if error_kind(error) == "fatal":
                counts.unwritten += left
                counts.unwritten_visits += len(visits)
                return self._refuse_all(error, counts)
            if error_kind(error) == "transient":
                counts.unwritten += left
                counts.unwritten_visits += len(visits)
                counts.failed_batches += 1
                return counts
            raise
        return counts

    def _quarantine_refused(
        self, record: Record, pages: Mapping[int, FetchedPage], error: BaseException
    ) -> WriteCounts:
        """A record the database refuses: into quarantine, its URL a gap the next run retries."""
        logger.error("NCJ %s could not be stored: %s", record.ncj_number, error)
        rejection = Rejection("store_error", _first_line(error)[:500])
        row = self.quarantine_row(record, rejection)
        row["fetched_page"] = pages.get(cast(int, record.ncj_number))  # a validated record
        visit = visit_of(record, "quarantined")
        visit.ncj_number = None  # the number itself may be what the database refused
        visit.gap_reason = "store_error"
        visit.gap_detail = rejection.detail
        counts = self._with_retries(lambda: self._write_in_one_transaction([], [row], [visit]))
        counts.refused += 1
        return counts

    def _refuse_all(self, error: BaseException, counts: WriteCounts) -> WriteCounts:
        """The database takes no writes: say so once, write nothing more."""
        if self.fatal is None:
            self.fatal = f"the database refuses writes: {_first_line(error)}"
            logger.critical("%s; stopping the crawl (what was written stays)", self.fatal)
            if self.on_fatal is not None:
                self.on_fatal(self.fatal)
        return counts

    def _with_retries(self, write: Callable[[], T]) -> T:
        """``write``, again after a backoff while it fails transiently, for ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.5
        while True:
            try:
                return write()
            except Exception as error:
                if error_kind(error) != "transient" or time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "Database write failed (%s); retrying in %.1f s", _first_line(error), delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _write_in_one_transaction(
        self,
        records: list[tuple[Record, str]],
        quarantined: list[dict[str, Any]],
        visits: Sequence[PageVisit] = (),
        pages: Mapping[int, FetchedPage] | None = None,
    ) -> WriteCounts:
        try:
            with (
                self.engine.connect().execution_options(
                    **{WRITE_TRANSACTION_OPTION: True}
                ) as connection,
                connection.begin(),
            ):
                counts = write_batch(
                    connection,
                    records,
                    quarantined,
                    now=now_utc(),
                    run_id=self.run_id,
                    counted=self._counted,
                    visits=visits,
                    withdrawal=self.withdrawal,
                    pages=pages,
                    history=self.history,
                    retry=self.retry,
                    superseded=self.superseded,
                )
        except BaseException:
            # Nothing the rolled-back transaction did (a dictionary it trained, lookups it
            # cached) may be relied on by the next one.
            self.history.codec.reset()
            raise
        self._counted.update(counts.counted)
        self.last_written = time.monotonic()
        self._release_memory()
        return counts

    def close(self) -> WriteCounts:
        """Write what is buffered and wait for every write: blocking, for shutdown.

        A failed batch is logged and counted in ``failed_batches``; the others still count.
        """
        for waiting in self._waiting:  # items waiting for room (a stop while a write is slow)
            waiting.add_now()
        self._waiting.clear()
        self._submit()
        try:
            for future in self._pending:
                error = future.exception()  # waits
                if error is not None:
                    logger.error("A batch could not be written: %s", error)
                    self._raised += 1
                else:
                    self.counts.add(future.result())
            self._pending = []
        finally:
            self._executor.shutdown(wait=True)
            if self._process is not None:
                self._process.close()
        return self.counts


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def start_run(
    engine: Engine, spider: str, arguments: dict[str, Any], *, distributed_run_id: int | None = None
) -> int:
    """A new crawl_runs row; ``distributed_run_id``: a worker of that distributed run, named in
    the row from the start (the lock of a starting worker tells plain crawls by it)."""
    with engine.begin() as connection:
        result = connection.execute(
            insert(CRAWL_RUNS)
            .values(
                spider=spider,
                arguments=arguments,
                started_at=now_utc(),
                distributed_run_id=distributed_run_id,
            )
            .returning(CRAWL_RUNS.c.id)
        )
        return int(result.scalar_one())


def finish_run(engine: Engine, run_id: int, values: dict[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(update(CRAWL_RUNS).where(CRAWL_RUNS.c.id == run_id).values(**values))


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Scrapy stats hold datetimes and other objects: keep them readable in a JSON column."""
    return cast(dict[str, Any], json.loads(json.dumps(data, default=str)))
