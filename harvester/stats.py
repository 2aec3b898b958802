"""What the database holds: counts, field coverage, the last crawl runs, one record in full.

For `harvester stats` and `harvester show`; plain dicts, so the CLI can print them as text or
JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from harvester import models
from harvester.exports import ExportRecord, iter_records, json_record

_R = models.Record
# Fields whose coverage `stats` reports: (label, SQL condition for "has it").
COVERAGE: tuple[tuple[str, str], ...] = (
    ("title", "title IS NOT NULL AND title <> ''"),
    ("annotation", "annotation IS NOT NULL"),
    ("abstract", "abstract IS NOT NULL"),
    ("published year", "published_year IS NOT NULL"),
    ("page count", "page_count IS NOT NULL"),
    ("journal", "journal_name IS NOT NULL"),
    ("chapter of a book", "part_of IS NOT NULL"),
    ("language", "language IS NOT NULL"),
    ("publication type", "publication_type IS NOT NULL"),
    (
        "authors or editors",
        "EXISTS (SELECT 1 FROM record_contributors rc WHERE rc.ncj_number = records.ncj_number)",
    ),
    (
        "sponsoring agency",
        "EXISTS (SELECT 1 FROM record_agencies ra WHERE ra.ncj_number = records.ncj_number"
        " AND ra.role = 'sponsor')",
    ),
    (
        "grant number",
        "EXISTS (SELECT 1 FROM record_grants g WHERE g.ncj_number = records.ncj_number)",
    ),
    (
        "subjects",
        "EXISTS (SELECT 1 FROM record_subjects s WHERE s.ncj_number = records.ncj_number)",
    ),
)
LAST_RUNS = 5


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def collect_stats(connection: Connection, last_runs: int = LAST_RUNS) -> dict[str, Any]:
    """Record and list counts, share of records that have each field, the last crawl runs."""
    counts = {
        table: int(connection.scalar(select(func.count()).select_from(text(table))) or 0)
        for table in ("records", "contributors", "agencies", "quarantine", "crawl_runs")
    }
    total = counts["records"]
    # One pass over records for all the coverage counts.
    sums = ", ".join(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)" for _, condition in COVERAGE)
    row = connection.execute(text(f"SELECT {sums} FROM records")).one()
    coverage = {
        label: {"records": int(n or 0), "share": round((n or 0) / total, 4) if total else 0.0}
        for (label, _), n in zip(COVERAGE, row, strict=True)
    }
    layouts = dict(connection.execute(select(_R.layout, func.count()).group_by(_R.layout)).all())
    quarantine = dict(
        connection.execute(
            select(models.Quarantine.reason, func.count()).group_by(models.Quarantine.reason)
        ).all()
    )
    years = connection.execute(select(func.min(_R.published_year), func.max(_R.published_year)))
    first_year, last_year = years.one()
    last_changed = connection.scalar(select(func.max(_R.last_changed_at)))
    run = models.CrawlRun
    runs = [
        {
            "id": r.id,
            "started_at": _plain(r.started_at),
            "finished_at": _plain(r.finished_at),
            "finish_reason": r.finish_reason,
            "pages": r.pages_fetched,
            "new": r.records_new,
            "updated": r.records_updated,
            "unchanged": r.records_unchanged,
            "quarantined": r.records_quarantined,
            "errors": r.errors,
        }
        for r in connection.execute(select(run.__table__).order_by(run.id.desc()).limit(last_runs))
    ]
    return {
        "counts": counts,
        "layouts": layouts,
        "published_years": [first_year, last_year],
        "last_changed_at": _plain(last_changed),
        "coverage": coverage,
        "quarantine_reasons": quarantine,
        "last_runs": runs,
    }


def record_detail(connection: Connection, ncj_number: int) -> dict[str, Any] | None:
    """One record with its lists (the JSON Lines export's shape), or None."""
    record: ExportRecord | None = next(iter_records(connection, ncj_numbers=[ncj_number]), None)
    return json_record(record) if record is not None else None
