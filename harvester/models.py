"""The relational schema the harvester writes: one row per NCJRS record plus its lists.

Tables (names and columns are a contract for downstream SQL):

``records``
    One row per NCJ number: the normalized fields of the latest version of the record page,
    bookkeeping of when it was first seen, last seen and last changed, and the hash of its
    content that decides whether a re-crawl changed it.
``contributors`` / ``record_contributors``
    People and organizations, each stored once under a normalized name, and which record
    names them as author, editor or corporate author, in page order.
``agencies`` / ``record_agencies``
    Sponsoring agencies and the publication-page "Agencies" field, deduplicated the same way.
``record_grants`` / ``record_subjects``
    The grant numbers and subject terms of each record.
``quarantine``
    Pages that looked like records but could not be trusted (see ``items.Rejection``), kept
    raw so that a parser fix can replay them instead of re-fetching.
``record_urls``
    Every URL a record page (or a page that was expected to be one) was fetched under, in
    canonical form: when it was first and last seen, what it answered, the sitemap
    ``lastmod`` and the HTTP validators (``ETag``, ``Last-Modified``) that make the next crawl
    incremental, and the redirects that led to it.
``crawl_runs``
    One row per crawl: its arguments, counters, field coverage, the checks that failed, and
    Scrapy's final stats. A worker of a distributed run has its own row, naming the run.
``distributed_runs``
    One row per distributed run (harvester/distributed.py): a crawl shared by many worker
    processes, from the first worker that started it to the coordinator that finished it.
``record_versions``
    Every change of a record's normalized content: the fields that changed, old and new.
``raw_pages`` / ``raw_page_dictionaries``
    The fetched HTML records and quarantine rows were read from, zstd-compressed, keyed by
    the SHA-256 of the body, so that a parser fix re-derives them without fetching again.

Every timestamp is UTC. ``UTCDateTime`` stores it timezone-aware where the database can
(PostgreSQL ``timestamptz``) and always hands back aware UTC datetimes, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, get_args

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from harvester.items import (
    AgencyRole,
    ContributorKind,
    ContributorRole,
    DatePrecision,
    GapReason,
    Layout,
    PageKind,
    QuarantineResolution,
)

# Deterministic constraint names: Alembic can only drop or alter a constraint it can name,
# and SQLite batch migrations recreate tables by name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The values the CHECK constraints allow, from the one definition of each list (harvester.items).
PUBLISHED_PRECISIONS: tuple[str, ...] = get_args(DatePrecision)
LAYOUTS: tuple[str, ...] = get_args(Layout)
CONTRIBUTOR_KINDS: tuple[str, ...] = get_args(ContributorKind)
CONTRIBUTOR_ROLES: tuple[str, ...] = get_args(ContributorRole)
AGENCY_ROLES: tuple[str, ...] = get_args(AgencyRole)
PAGE_KINDS: tuple[str, ...] = get_args(PageKind)
# Why the record at a URL is not stored (yet): record_urls.gap_reason (harvester.urlstate).
GAP_REASONS: tuple[str, ...] = get_args(GapReason)
# quarantine.resolution; no CHECK constraint holds it (schema 0003 has none).
QUARANTINE_RESOLUTIONS: tuple[str, ...] = get_args(QuarantineResolution)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is UTC on the way in and aware UTC on the way out, on every dialect.

    SQLite has no time zone type, so it gets naive UTC text (which also keeps its string
    ordering chronological); PostgreSQL gets ``timestamptz``. Naive datetimes are refused
    rather than guessed at: a local time silently stored as UTC is wrong by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value!r}: pass an aware UTC datetime "
                "(datetime.now(timezone.utc), not datetime.utcnow())"
            )
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def json_type(*, none_as_null: bool = True) -> TypeEngine[Any]:
    """JSON text on SQLite, JSONB (indexable, compact) on PostgreSQL.

    ``none_as_null`` makes Python ``None`` SQL NULL, not the JSON literal ``null``, so that
    ``IS NULL`` means what a reader of the SQL expects.
    """
    return JSON(none_as_null=none_as_null).with_variant(
        JSONB(none_as_null=none_as_null), "postgresql"
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model here is mapped to a Table (none to a join or a select), so the code that
    # writes through SQLAlchemy Core gets a Table, with its columns under .c, without a cast.
    __table__: ClassVar[Table]


class CrawlRun(Base):
    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spider: Mapped[str] = mapped_column(Text)
    arguments: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Moved by the live run every few seconds: a run without finished_at whose heartbeat is
    # fresh is alive, whoever holds the lock (harvester.runlock).
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finish_reason: Mapped[str | None] = mapped_column(Text)
    # Server defaults too, so a run row inserted by hand or by raw SQL still adds up.
    pages_fetched: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    records_new: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    records_updated: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    records_unchanged: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    records_quarantined: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    errors: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Incremental crawling: record pages answered 304, and sitemap entries not requested at
    # all because their lastmod was not newer than what is stored.
    pages_not_modified: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    pages_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    requests: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Share of this run's records that have each field, for drift checks against past runs.
    coverage: Mapped[dict[str, float] | None] = mapped_column(json_type())
    # The monitoring checks this run failed (harvester.monitoring); empty when all passed.
    alerts: Mapped[list[str] | None] = mapped_column(json_type())
    # One NCJ number seen with different content under two URLs (harvester.conflicts).
    conflicts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    stats: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    # A worker of a distributed run (harvester.distributed): the run it works for, and since
    # when it has had nothing in hand (NULL: busy), written with each heartbeat. Not foreign
    # keys: SQLite cannot add one to an existing table (migration 0008).
    distributed_run_id: Mapped[int | None] = mapped_column(Integer)
    idle_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"CrawlRun(id={self.id!r}, spider={self.spider!r}, started_at={self.started_at!r})"


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        CheckConstraint(
            _in("published_precision", PUBLISHED_PRECISIONS), name="published_precision"
        ),
        CheckConstraint("published_month BETWEEN 1 AND 12", name="published_month"),
        CheckConstraint("published_day BETWEEN 1 AND 31", name="published_day"),
        CheckConstraint(_in("layout", LAYOUTS), name="layout"),
    )

    # The NCJ number is NCJRS's own identifier, so it is assigned, never generated.
    ncj_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(Text)
    annotation: Mapped[str | None] = mapped_column(Text)
    abstract: Mapped[str | None] = mapped_column(Text)

    # Publication dates are partial ("Summer 1977"): the text as shown plus only the parts
    # the page actually gives, never a guessed day or month.
    published_text: Mapped[str | None] = mapped_column(Text)
    published_year: Mapped[int | None] = mapped_column(Integer, index=True)
    published_month: Mapped[int | None] = mapped_column(Integer)
    published_day: Mapped[int | None] = mapped_column(Integer)
    published_precision: Mapped[str | None] = mapped_column(String(16))
    date_created_text: Mapped[str | None] = mapped_column(Text)
    date_created: Mapped[dt.date | None] = mapped_column(Date)  # only when the page gives a day
    page_count: Mapped[int | None] = mapped_column(Integer)

    journal_citation: Mapped[str | None] = mapped_column(Text)  # as shown; the parts may be wrong
    journal_name: Mapped[str | None] = mapped_column(Text, index=True)
    journal_volume: Mapped[str | None] = mapped_column(Text)
    journal_issue: Mapped[str | None] = mapped_column(Text)
    journal_dated: Mapped[str | None] = mapped_column(Text)
    journal_pages: Mapped[str | None] = mapped_column(Text)

    language: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    publication_type: Mapped[str | None] = mapped_column(Text)
    publication_format: Mapped[str | None] = mapped_column(Text)
    publication_series: Mapped[str | None] = mapped_column(Text)
    sale_source: Mapped[str | None] = mapped_column(Text)
    publisher: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)

    # Not a foreign key: a chapter's book is often a record the crawl has not reached (or
    # never will), and the chapter must be storable all the same.
    part_of: Mapped[int | None] = mapped_column(Integer)
    part_pages: Mapped[str | None] = mapped_column(Text)
    book_title: Mapped[str | None] = mapped_column(Text)

    document_urls: Mapped[list[str]] = mapped_column(json_type(), default=list)
    # Labels the parser does not know yet, verbatim, so that nothing on a page is lost.
    extra_fields: Mapped[dict[str, list[str]]] = mapped_column(json_type(), default=dict)
    # How the page's text was corrected on the way in (harvester.decoding): a mislabelled
    # charset overruled, mojibake repaired by ftfy, each "where: before -> after". NULL: none.
    text_repairs: Mapped[list[str] | None] = mapped_column(json_type())
    layout: Mapped[str] = mapped_column(String(16))
    source_url: Mapped[str] = mapped_column(Text)

    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))  # hex sha256 of the normalized record
    # A tombstone, never a delete: every URL of the record has been gone for several runs
    # (harvester.urlstate). Cleared when the record is seen again.
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The run that last changed the record, not the last one that saw it: "what did run N
    # change" is then a plain filter, and last_seen_at already answers "is it still there".
    crawl_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_runs.id", ondelete="SET NULL")
    )
    # Which parser derived the stored content, and from which stored page (None: the page was
    # not kept, HARVESTER_STORE_RAW_PAGES off, or the record predates raw pages).
    parser_version: Mapped[int | None] = mapped_column(Integer)
    raw_page_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("raw_pages.sha256", ondelete="SET NULL")
    )

    crawl_run: Mapped[CrawlRun | None] = relationship()
    contributor_links: Mapped[list[RecordContributor]] = relationship(
        back_populates="record",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[RecordContributor.role, RecordContributor.position]",
    )
    agency_links: Mapped[list[RecordAgency]] = relationship(
        back_populates="record",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[RecordAgency.role, RecordAgency.position]",
    )
    grants: Mapped[list[RecordGrant]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="RecordGrant.grant_number"
    )
    subjects: Mapped[list[RecordSubject]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="RecordSubject.subject"
    )

    def __repr__(self) -> str:
        return f"Record(ncj_number={self.ncj_number!r}, title={self.title!r})"


class Contributor(Base):
    __tablename__ = "contributors"
    __table_args__ = (CheckConstraint(_in("kind", CONTRIBUTOR_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)  # as first displayed
    # The deduplication key: one row per person or organization across all records.
    normalized_name: Mapped[str] = mapped_column(Text, unique=True)
    family: Mapped[str | None] = mapped_column(Text)
    given: Mapped[str | None] = mapped_column(Text)
    suffix: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))

    def __repr__(self) -> str:
        return f"Contributor(id={self.id!r}, name={self.name!r}, kind={self.kind!r})"


class RecordContributor(Base):
    __tablename__ = "record_contributors"
    __table_args__ = (
        CheckConstraint(_in("role", CONTRIBUTOR_ROLES), name="role"),
        CheckConstraint("position >= 0", name="position"),
    )

    ncj_number: Mapped[int] = mapped_column(
        ForeignKey("records.ncj_number", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    # Page order matters (first author), and the same person may appear twice in one role.
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    contributor_id: Mapped[int] = mapped_column(ForeignKey("contributors.id"), index=True)
    # The shared contributor row keeps the first spelling seen; this is this page's, and the
    # parts it parses into ("H WRIGHT" here, "H Wright" on another page).
    name_as_shown: Mapped[str] = mapped_column(Text)
    family: Mapped[str | None] = mapped_column(Text)
    given: Mapped[str | None] = mapped_column(Text)
    suffix: Mapped[str | None] = mapped_column(Text)

    record: Mapped[Record] = relationship(back_populates="contributor_links")
    contributor: Mapped[Contributor] = relationship()


class Agency(Base):
    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    normalized_name: Mapped[str] = mapped_column(Text, unique=True)

    def __repr__(self) -> str:
        return f"Agency(id={self.id!r}, name={self.name!r})"


class RecordAgency(Base):
    __tablename__ = "record_agencies"
    __table_args__ = (
        CheckConstraint(_in("role", AGENCY_ROLES), name="role"),
        CheckConstraint("position >= 0", name="position"),
    )

    ncj_number: Mapped[int] = mapped_column(
        ForeignKey("records.ncj_number", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Indexed for "everything agency X funded"; foreign keys are not indexed by themselves.
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    name_as_shown: Mapped[str] = mapped_column(Text)

    record: Mapped[Record] = relationship(back_populates="agency_links")
    agency: Mapped[Agency] = relationship()


class RecordGrant(Base):
    __tablename__ = "record_grants"

    ncj_number: Mapped[int] = mapped_column(
        ForeignKey("records.ncj_number", ondelete="CASCADE"), primary_key=True
    )
    # Indexed on its own for "what came out of grant 2009-IJ-CX-0001".
    grant_number: Mapped[str] = mapped_column(Text, primary_key=True, index=True)


class RecordSubject(Base):
    __tablename__ = "record_subjects"

    ncj_number: Mapped[int] = mapped_column(
        ForeignKey("records.ncj_number", ondelete="CASCADE"), primary_key=True
    )
    subject: Mapped[str] = mapped_column(Text, primary_key=True, index=True)


class Quarantine(Base):
    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict[str, Any] | None] = mapped_column(json_type())  # the RawRecord, as JSON
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    crawl_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_runs.id", ondelete="SET NULL")
    )
    parser_version: Mapped[int | None] = mapped_column(Integer)
    raw_page_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("raw_pages.sha256", ondelete="SET NULL")
    )
    # Set by `harvester quarantine replay` when the page now passes; the row stays as evidence.
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(String(20))

    crawl_run: Mapped[CrawlRun | None] = relationship()

    def __repr__(self) -> str:
        return f"Quarantine(id={self.id!r}, url={self.url!r}, reason={self.reason!r})"


class RecordUrl(Base):
    __tablename__ = "record_urls"
    __table_args__ = (
        CheckConstraint(_in("kind", PAGE_KINDS), name="kind"),
        CheckConstraint(_in("gap_reason", GAP_REASONS), name="gap_reason"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)  # harvester.urls.canonical_url
    # Not a foreign key: a quarantined page has a URL state but no records row.
    ncj_number: Mapped[int | None] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(20))  # what the page was when last fetched
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # last 200 or 304
    last_status: Mapped[int] = mapped_column(Integer)
    # The sitemap lastmod the stored state reflects: an entry not newer is not re-fetched.
    sitemap_lastmod: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)  # the HTTP date, verbatim
    # URLs requested before this one, in order, when it was reached by redirects.
    redirect_chain: Mapped[list[str]] = mapped_column(json_type(), default=list)
    # Withdrawal evidence: runs in a row, at least HARVESTER_WITHDRAW_MIN_INTERVAL apart, in
    # which the URL answered 404/410 or a soft 404; any other answer resets it.
    gone_runs: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    gone_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    gone_counted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The completeness ledger: why this URL's record is not stored (yet), since when, how
    # many attempts in a row failed, and when the next run asks again (NULL reason: no gap).
    gap_reason: Mapped[str | None] = mapped_column(String(20))
    gap_detail: Mapped[str | None] = mapped_column(Text)
    gap_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    gap_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    # The sitemap (canonical URL) that last listed this page: a page that drops out of a
    # sitemap read to the end is re-checked in that run.
    sitemap_url: Mapped[str | None] = mapped_column(Text, index=True)
    # The URL as last requested: `url` folds case and "www.", which a request must not.
    requested_url: Mapped[str | None] = mapped_column(Text)
    # The crawl run that last wrote this URL's state, answer or failure: a distributed run's
    # coordinator re-requests the run's URLs none of its workers answered (harvester.distributed).
    visited_run_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"RecordUrl(url={self.url!r}, ncj_number={self.ncj_number!r}, kind={self.kind!r})"


class RawPageDictionary(Base):
    """A zstd dictionary trained on stored pages: the site chrome they share, stored once."""

    __tablename__ = "raw_page_dictionaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dictionary: Mapped[bytes] = mapped_column(LargeBinary)
    sample_pages: Mapped[int] = mapped_column(Integer)  # pages it was trained on
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RawPage(Base):
    """One fetched page body, keyed by its SHA-256, with what parsing it again needs."""

    __tablename__ = "raw_pages"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the body as fetched
    codec: Mapped[str] = mapped_column(String(16))  # how `body` is compressed: "zstd"
    dictionary_id: Mapped[int | None] = mapped_column(ForeignKey("raw_page_dictionaries.id"))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)  # bytes before compression
    # The fetch that first stored this body (a body seen again elsewhere is not stored again).
    url: Mapped[str] = mapped_column(Text)  # after redirects
    status: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(40))
    redirect_urls: Mapped[list[str]] = mapped_column(json_type(), default=list)
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"RawPage(sha256={self.sha256!r}, url={self.url!r})"


class RecordVersion(Base):
    """One change of a record's normalized content; version 1 is the first sighting."""

    __tablename__ = "record_versions"
    __table_args__ = (CheckConstraint("version >= 1", name="version"),)

    ncj_number: Mapped[int] = mapped_column(
        ForeignKey("records.ncj_number", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    content_hash: Mapped[str] = mapped_column(String(64))  # records.content_hash after it
    # {"field": {"old": ..., "new": ...}} in harvester.normalize.record_content's terms; version
    # 1 holds every field as {"new": ...}. Folding "new" over versions 1..n gives version n.
    changes: Mapped[dict[str, Any]] = mapped_column(json_type())
    changed_fields: Mapped[str] = mapped_column(Text)  # "title,abstract": plain SQL can filter
    crawl_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_runs.id", ondelete="SET NULL")
    )
    parser_version: Mapped[int] = mapped_column(Integer)
    source_url: Mapped[str] = mapped_column(Text)
    raw_page_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("raw_pages.sha256", ondelete="SET NULL")
    )
    # Indexed for "what changed since DATE".
    observed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)

    def __repr__(self) -> str:
        return f"RecordVersion(ncj_number={self.ncj_number!r}, version={self.version!r})"


class SitemapState(Base):
    """A sitemap (of a sitemap index) whose every page the last run that read it handled.

    Its ``lastmod`` in the index then says whether it needs reading again at all: an index
    entry not newer than ``lastmod`` lists nothing new, so an incremental run skips it.
    """

    __tablename__ = "sitemaps"

    url: Mapped[str] = mapped_column(Text, primary_key=True)  # canonical, as record_urls.url
    lastmod: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # from the sitemap index
    entries: Mapped[int] = mapped_column(Integer)  # record pages it listed
    read_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    crawl_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_runs.id", ondelete="SET NULL")
    )


class DistributedRun(Base):
    """A crawl shared by many worker processes (harvester/distributed.py)."""

    __tablename__ = "distributed_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spider: Mapped[str] = mapped_column(Text)
    # The spider arguments every worker of the run was started with (they must agree).
    arguments: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    # Names the run's Redis keys (ncjrs:run:<token>:...): random, so that the runs of several
    # databases can share one Redis server.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finish_reason: Mapped[str | None] = mapped_column(Text)
    # Record requests the run issued, and how many the coordinator issued again because no
    # worker answered them (a worker killed with them in hand): the duplicate work.
    issued: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    repushed: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    def __repr__(self) -> str:
        return f"DistributedRun(id={self.id!r}, started_at={self.started_at!r})"
