"""The two shapes a record takes on its way to the database.

``RawRecord`` is what the parser read off one page: label -> values exactly as shown, plus where
and when the page was fetched. ``Record`` is the typed, normalized record that validation,
de-duplication and storage work with. Both are dataclasses, so Scrapy's item machinery
(pipelines, feed exports) handles them without adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The value lists of the harvester, each defined here once: harvester.models derives its CHECK
# constraints from them (typing.get_args), so a new value is added here and in a migration.
Layout = Literal["current", "legacy", "publication", "generic"]
DatePrecision = Literal["day", "month", "month_range", "season", "year"]
ContributorKind = Literal["person", "organization"]
# Where a record names a contributor or an agency (record_contributors.role,
# record_agencies.role): Record.authors / editors / corporate_authors, sponsoring_agencies /
# agencies.
ContributorRole = Literal["author", "editor", "corporate_author"]
AgencyRole = Literal["sponsor", "agency"]
# How `harvester quarantine replay` resolved a quarantine row (quarantine.resolution).
QuarantineResolution = Literal["stored", "not_a_record"]

# Which page of a record to keep when it is reached under several URLs: the layout that shows
# the most fields. A publication page never replaces a record stored from its abstract page.
LAYOUT_RANK: dict[Layout, int] = {"legacy": 3, "current": 2, "generic": 1, "publication": 0}


@dataclass(slots=True, frozen=True)
class FetchedPage:
    """A record page as fetched: what parsing it again needs, with no request (rawpages.py)."""

    sha256: str  # hex SHA-256 of the body: the page's key in ``raw_pages``
    body: bytes
    url: str  # where redirects ended
    status: int
    content_type: str | None  # the Content-Type header as received
    encoding: str  # the charset the page was decoded with
    fetched_at: datetime  # UTC
    redirect_urls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RawRecord:
    """Values as the page shows them, keyed by canonical field name (see parsing.LABELS)."""

    url: str  # the URL that was requested
    final_url: str  # where redirects ended
    status: int
    fetched_at: datetime  # UTC
    layout: Layout
    heading: str | None = None  # the page heading (h1), the title on current pages
    fields: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # field name -> label text as shown
    links: dict[str, list[str]] = field(default_factory=dict)  # field name -> absolute hrefs
    unknown_fields: dict[str, list[str]] = field(default_factory=dict)  # label as shown -> values
    redirect_urls: list[str] = field(default_factory=list)
    # What the next crawl needs to revalidate the page instead of fetching it again.
    etag: str | None = None
    last_modified: str | None = None  # HTTP date, verbatim
    sitemap_lastmod: datetime | None = None
    sitemap_url: str | None = None  # the sitemap that listed the page (canonical)
    # How the text was read (harvester.decoding): the charset, each repair made to it, and
    # what could not be repaired (the page is then quarantined, reason "encoding").
    encoding: str | None = None
    text_repairs: list[str] = field(default_factory=list)
    encoding_problem: str | None = None
    # The page itself, carried to the writer (HARVESTER_STORE_RAW_PAGES) and dropped there.
    fetched_page: FetchedPage | None = field(default=None, repr=False, compare=False)

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def joined(self, name: str, separator: str = "\n") -> str | None:
        values = [v for v in self.fields.get(name, ()) if v]
        return separator.join(values) if values else None


NonRecordReason = Literal["soft_404", "no_record_fields", "several_records"]


@dataclass(slots=True, frozen=True)
class NonRecordPage:
    """A fetched page that is not a record (section page, soft 404): skipped, not quarantined."""

    url: str
    reason: NonRecordReason


PageKind = Literal[
    "record",
    "quarantined",
    NonRecordReason,
    "not_html",
    "gone",  # 404 or 410
    "failed",  # never answered (errors, timeouts, robots.txt): see record_urls.gap_reason
]
# Why a record URL has no stored record (yet): record_urls.gap_reason (models.GAP_REASONS).
GapReason = Literal[
    "fetch_failed",  # HTTP errors (5xx, 4xx other than 404/410) after Scrapy's retries
    "timeout",
    "data_loss",  # the connection closed before the whole body came
    "too_large",  # DOWNLOAD_MAXSIZE
    "redirect_loop",  # or more redirects than REDIRECT_MAX_TIMES
    "offsite_redirect",  # redirected off the hosts the run was pointed at
    "robots_blocked",
    "not_a_record",  # a record URL answered a page with no record (empty, captcha, outage)
    "store_error",  # the database refused the record (its quarantine row says why)
    "quarantined",  # the record failed validation (its quarantine row says why)
]
# The reasons that are verdicts on a page that was fetched, not failures to fetch it.
PAGE_VERDICTS: tuple[GapReason, ...] = ("not_a_record", "store_error", "quarantined")


@dataclass(slots=True)
class PageVisit:
    """A fetch of a record-page URL that carries no record: a 304, a page that is not one, or
    a request that got no answer (``kind`` "failed").

    The store keeps it as URL state (``record_urls``), so the next crawl can skip or revalidate
    the URL. ``kind`` is None for a 304: the page is what it was last time. ``gap_reason`` says
    why the URL's record is not stored (the completeness ledger); the URL is asked again on a
    later run.
    """

    url: str  # where redirects ended
    status: int
    fetched_at: datetime
    kind: PageKind | None
    redirect_urls: list[str] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    sitemap_lastmod: datetime | None = None
    ncj_number: int | None = None
    gap_reason: GapReason | None = None
    gap_detail: str | None = None
    sitemap_url: str | None = None  # the sitemap that listed the URL (canonical)


@dataclass(slots=True, frozen=True)
class PartialDate:
    """A date as precise as the page is, never more: no guessed day or month."""

    text: str
    year: int | None = None
    month: int | None = None
    day: int | None = None
    precision: DatePrecision | None = None


@dataclass(slots=True, frozen=True)
class Person:
    name: str  # as displayed
    family: str | None = None
    given: str | None = None
    suffix: str | None = None


@dataclass(slots=True, frozen=True)
class JournalCitation:
    raw: str
    name: str
    volume: str | None = None
    issue: str | None = None
    dated: str | None = None
    pages: str | None = None


@dataclass(slots=True, frozen=True)
class ChapterOf:
    """Parsed from titles like ``... (From <book>, P 5-40, 2004, <editor>, ed. -- See NCJ-1)``."""

    parent_ncj_number: int
    book_title: str | None = None
    pages: str | None = None


@dataclass(slots=True)
class Record:
    """A normalized record. NCJ number and title are None only until validation rejects it."""

    ncj_number: int | None
    title: str | None
    source_url: str
    fetched_at: datetime
    chapter_of: ChapterOf | None = None
    journal: JournalCitation | None = None
    authors: list[Person] = field(default_factory=list)
    editors: list[Person] = field(default_factory=list)
    corporate_authors: list[str] = field(default_factory=list)
    published: PartialDate | None = None
    date_created: PartialDate | None = None
    page_count: int | None = None
    annotation: str | None = None
    abstract: str | None = None
    sponsoring_agencies: list[str] = field(default_factory=list)
    agencies: list[str] = field(default_factory=list)
    grant_numbers: list[str] = field(default_factory=list)
    sale_source: str | None = None
    publisher: str | None = None
    document_urls: list[str] = field(default_factory=list)
    publication_type: str | None = None
    publication_format: str | None = None
    language: str | None = None
    country: str | None = None
    publication_series: str | None = None
    note: str | None = None
    subjects: list[str] = field(default_factory=list)
    extra_fields: dict[str, list[str]] = field(default_factory=dict)  # unknown labels, raw
    layout: Layout = "generic"
    requested_url: str | None = None
    status: int = 200
    redirect_urls: list[str] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    sitemap_lastmod: datetime | None = None
    sitemap_url: str | None = None
    # Mojibake or a mislabelled charset repaired while reading the page (RawRecord).
    text_repairs: list[str] = field(default_factory=list)
    raw: RawRecord | None = field(default=None, repr=False, compare=False)
    # The content hash (harvester.normalize.content_hash) as the judgement computed it, so
    # that de-duplicating and writing do not hash the record again; None: not computed yet.
    content_hash: str | None = field(default=None, repr=False, compare=False)

    @property
    def part_of(self) -> int | None:
        return self.chapter_of.parent_ncj_number if self.chapter_of else None


# Why a record is quarantined (quarantine.reason).
RejectionReason = Literal[
    "missing_ncj_number",
    "invalid_ncj_number",
    "missing_title",
    "shifted_values",
    "encoding",
    "store_error",
]


@dataclass(slots=True, frozen=True)
class Rejection:
    """Why a page that looks like a record cannot be trusted; stored in quarantine."""

    reason: RejectionReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(slots=True)
class FetchedResponse:
    """A record page as the spider received it (HTTP 200, HTML), to be judged by the item
    pipelines (harvester.pipelines.JudgePipeline, which calls harvester.judge). Plain data,
    no Scrapy response, so that it pickles: the judgement may be made in another process."""

    url: str  # where redirects ended
    status: int
    body: bytes
    fetched_at: datetime  # UTC
    content_type: str | None = None  # the headers parsing and the next request need
    etag: str | None = None
    last_modified: str | None = None  # HTTP date, verbatim
    redirect_urls: list[str] = field(default_factory=list)  # the first is the URL requested
    sitemap_lastmod: datetime | None = None
    sitemap_url: str | None = None  # the sitemap that listed the page (canonical)
    from_sitemap: str | None = None  # the sitemap, as read, waiting for this page's answer
    was_record: bool = False  # a stored record's page (a soft 404 then counts for its sitemap)

    @property
    def requested_url(self) -> str:
        return self.redirect_urls[0] if self.redirect_urls else self.url
