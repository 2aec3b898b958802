"""One page in, one verdict out: the only place a fetched page becomes a record.

    page -> parse (harvester.parsing) -> normalize (harvester.normalize)
         -> validate (harvester.validate) -> content hash -> Judgement

The crawl, ``harvester reparse``, ``harvester quarantine replay`` and ``harvester capture`` all
call these functions, so a page reads the same whichever of them reads it. What happens next
(de-duplication across pages, writing) belongs to the caller: it depends on everything else
the run has seen, while a judgement depends on the page alone. Pure: nothing is written,
nothing fetched, and the inputs and outputs pickle, so a judgement can be made in another
process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from scrapy.http import TextResponse

from harvester.items import FetchedPage, NonRecordPage, RawRecord, Record, Rejection
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import parse_page
from harvester.rawpages import fetched_page, response_for
from harvester.validate import validate

# What reads a fetched page; a test or a new parser can pass another.
Parser = Callable[[TextResponse], RawRecord | NonRecordPage]
Verdict = Literal["record", "quarantined", "not_record"]
NotRecordReason = Literal["soft_404", "no_record_fields", "several_records", "not_html"]


@dataclass(slots=True)
class Judgement:
    """What one page gives: a record to store, a record to quarantine, or no record."""

    url: str  # where redirects ended
    verdict: Verdict
    # The normalized record (verdict "record" or "quarantined"); ``record.raw`` keeps the
    # values as the page showed them, which a quarantine row stores.
    record: Record | None = None
    rejection: Rejection | None = None  # why it is quarantined
    not_record: NotRecordReason | None = None  # why the page holds no record
    digest: str | None = None  # the record's content hash (verdict "record")
    # The page as fetched, kept for re-parsing (None unless asked for).
    page: FetchedPage | None = field(default=None, repr=False)
    # Labels the parser does not know, as shown: new labels on the site.
    unknown_labels: list[str] = field(default_factory=list)


def judge_response(
    response: TextResponse,
    *,
    parse: Parser = parse_page,
    keep_page: bool = True,
    fetched_at: datetime | None = None,
) -> Judgement:
    """Judge a fetched page. ``fetched_at``: when it was fetched, if not now (a stored page)."""
    parsed = parse(response)
    if isinstance(parsed, NonRecordPage):
        return Judgement(url=response.url, verdict="not_record", not_record=parsed.reason)
    if fetched_at is not None:
        parsed.fetched_at = fetched_at
    if keep_page:
        parsed.fetched_page = fetched_page(response, parsed)
    return judge_raw(parsed)


def judge_page(page: FetchedPage, *, parse: Parser = parse_page) -> Judgement:
    """Judge a stored page exactly as the crawl judged it when it was fetched."""
    response = response_for(page)
    if not isinstance(response, TextResponse):
        return Judgement(url=page.url, verdict="not_record", not_record="not_html")
    judgement = judge_response(response, parse=parse, keep_page=False, fetched_at=page.fetched_at)
    if judgement.record is not None and judgement.record.raw is not None:
        judgement.record.raw.fetched_page = page  # the stored page itself, same key
    judgement.page = page if judgement.verdict != "not_record" else None
    return judgement


def judge_raw(raw: RawRecord) -> Judgement:
    """Judge values already read off a page (a quarantine row kept them without its page)."""
    record = normalize_record(raw)
    unknown = list(raw.unknown_fields)
    rejection = validate(record)
    if rejection is not None:
        return Judgement(
            url=raw.final_url,
            verdict="quarantined",
            record=record,
            rejection=rejection,
            page=raw.fetched_page,
            unknown_labels=unknown,
        )
    record.content_hash = content_hash(record)
    return Judgement(
        url=raw.final_url,
        verdict="record",
        record=record,
        digest=record.content_hash,
        page=raw.fetched_page,
        unknown_labels=unknown,
    )
