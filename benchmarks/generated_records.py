"""Records straight from the local site generator's truth, without rendering or crawling.

For benchmarks and tests of what is done with stored data (search, exports): 200,000 records
are generated and written with ``store.write_batch`` in minutes, where a crawl would take
hours. The truth is the golden-format ``expected`` dict (docs/golden-format.md), which is what
the parser and normalizer produce from the same record's page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from harvester.items import ChapterOf, JournalCitation, Layout, PartialDate, Person, Record
from harvester.localsite.generator import Site

BASE_URL = "http://127.0.0.1:8000"
FETCHED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _date(value: dict[str, Any] | None) -> PartialDate | None:
    return PartialDate(**value) if value else None


def record_from_expected(expected: dict[str, Any], url: str, layout: Layout) -> Record:
    """The normalized ``Record`` a crawl stores for a page whose truth is ``expected``."""
    journal = expected["journal"]
    chapter = expected["chapter_of"]
    return Record(
        ncj_number=expected["ncj_number"],
        title=expected["title"],
        source_url=url,
        fetched_at=FETCHED_AT,
        chapter_of=ChapterOf(**chapter) if chapter else None,
        journal=JournalCitation(**journal) if journal else None,
        authors=[Person(**p) for p in expected["authors"]],
        editors=[Person(**p) for p in expected["editors"]],
        corporate_authors=list(expected["corporate_authors"]),
        published=_date(expected["published"]),
        date_created=_date(expected["date_created"]),
        page_count=expected["page_count"],
        annotation=expected["annotation"],
        abstract=expected["abstract"],
        sponsoring_agencies=list(expected["sponsoring_agencies"]),
        agencies=list(expected["agencies"]),
        grant_numbers=list(expected["grant_numbers"]),
        sale_source=expected["sale_source"],
        publisher=expected["publisher"],
        document_urls=list(expected["document_urls"]),
        publication_type=expected["publication_type"],
        publication_format=expected["publication_format"],
        language=expected["language"],
        country=expected["country"],
        publication_series=expected["publication_series"],
        note=expected["note"],
        subjects=list(expected["subjects"]),
        extra_fields=dict(expected["extra_fields"]),
        layout=layout,
    )


def generated_records(count: int, seed: int = 1, base_url: str = BASE_URL) -> Iterator[Record]:
    """The records of a generated site of ``count`` records (its bad pages left out), one
    at a time: memory stays flat whatever ``count`` is."""
    site = Site(records=count, seed=seed)
    for index in range(count):
        truth = site.truth_entry(index, base_url)
        if truth["expected"] is not None:
            yield record_from_expected(truth["expected"], truth["url"], truth["layout"])
