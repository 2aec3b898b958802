"""`harvester reparse`: re-derive every stored record from its stored page, with no request.

After a parser fix (and a bump of ``harvester.parsing.PARSER_VERSION``), each record that has a
stored page (``records.raw_page_sha256``) is read again exactly as the crawl read it:
``harvester.judge.judge_page`` rebuilds the response the downloader built and judges it with the
crawl's own function, then the record goes through the conflict rule to the record writer, as
the crawl's records do. The writer compares with what is stored, so only records whose content
changed are rewritten and get a version; every record gets the new parser version. It runs as a
crawl run of its own (``crawl_runs.spider = 'reparse'``, no pages fetched), so its versions name
it.

What a re-parse never does: fetch anything, touch ``last_seen_at`` (nothing was seen on the
site), or lose a stored record. A page that no longer gives a valid record goes to quarantine
(with its page) and the stored record stays as it was; a page that is no longer a record page
(or a stored body that is not HTML, "not_html") is counted and left alone. Records without a
stored page are counted and left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from harvester import settings as defaults
from harvester.conflicts import RunSightings
from harvester.history import RecordHistory, versions_of_run
from harvester.judge import Judgement, Parser, judge_page
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.rawpages import RAW_PAGES, PageCodec
from harvester.store import (
    RECORDS,
    RecordWriter,
    WriteCounts,
    finish_run,
    now_utc,
    start_run,
    written_figures,
)

logger = logging.getLogger(__name__)

# Records per transaction, as in the crawl.
BATCH_SIZE: int = defaults.HARVESTER_BATCH_SIZE


@dataclass
class ReparseReport:
    run_id: int
    parser_version: int
    pages: int = 0  # stored pages read
    without_page: int = 0  # records with no stored page, left as they were
    not_records: int = 0  # pages that are no longer record pages, left as they were
    conflicts: int = 0
    new: int = 0  # an NCJ number no stored record had (the page now reads another number)
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    versions: int = 0
    seconds: float = 0.0
    not_record_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"Re-parse run {self.run_id} (parser version {self.parser_version}): "
            f"{self.pages} stored pages, {self.new} new / {self.updated} updated / "
            f"{self.unchanged} unchanged, {self.versions} versions, {self.quarantined} "
            f"quarantined, {self.not_records} no longer records, {self.without_page} records "
            f"without a stored page, {self.seconds:.1f} s"
        )


def reparse(
    engine: Engine,
    *,
    parse: Parser = parse_page,
    parser_version: int = PARSER_VERSION,
    batch_size: int = BATCH_SIZE,
) -> ReparseReport:
    """Re-derive every record that has a stored page; see the module docstring."""
    started = time.monotonic()
    run_id = start_run(engine, "reparse", {"parser_version": parser_version})
    report = ReparseReport(run_id=run_id, parser_version=parser_version)
    history = RecordHistory(parser_version=parser_version, sighting=False)
    writer = RecordWriter(
        engine, run_id=run_id, batch_size=batch_size, batch_seconds=float("inf"), history=history
    )
    codec = PageCodec()
    sightings = RunSightings()
    try:
        with engine.connect() as connection:
            report.without_page = int(
                connection.scalar(
                    select(func.count())
                    .select_from(RECORDS)
                    .where(RECORDS.c.raw_page_sha256.is_(None))
                )
                or 0
            )
        after: int | None = None
        while True:
            # A short read per chunk: the writer thread writes meanwhile (SQLite WAL).
            with engine.connect() as connection:
                query = (
                    select(RECORDS.c.ncj_number, RAW_PAGES)
                    .join(RAW_PAGES, RAW_PAGES.c.sha256 == RECORDS.c.raw_page_sha256)
                    .order_by(RECORDS.c.ncj_number)
                    .limit(batch_size)
                )
                if after is not None:
                    query = query.where(RECORDS.c.ncj_number > after)
                rows = connection.execute(query).mappings().all()
                if not rows:
                    break
                pages = [codec.page(connection, row) for row in rows]
            after = rows[-1]["ncj_number"]
            for page in pages:
                report.pages += 1
                if _offer(writer, sightings, report, judge_page(page, parse=parse)):
                    writer.flush_blocking()
            del rows, pages  # the bodies go once their records are buffered
    finally:
        counts = writer.close()
    report.new, report.updated = counts.new, counts.updated
    report.unchanged, report.quarantined = counts.unchanged, counts.quarantined
    with engine.connect() as connection:
        report.versions = versions_of_run(connection, run_id)
    report.seconds = time.monotonic() - started
    finish_run(engine, run_id, _run_figures(report, counts, writer.failed_batches))
    logger.info("%s", report.summary())
    return report


def _offer(
    writer: RecordWriter,
    sightings: RunSightings,
    report: ReparseReport,
    judgement: Judgement,
) -> bool:
    """Hand a re-derived record to the writer; True when its batch is full."""
    if judgement.verdict == "not_record":
        reason = judgement.not_record or "no_record_fields"
        report.not_records += 1
        report.not_record_reasons[reason] = report.not_record_reasons.get(reason, 0) + 1
        logger.warning("No longer a record page (%s): %s", reason, judgement.url)
        return False
    record = judgement.record
    assert record is not None
    if judgement.rejection is not None:
        logger.warning(
            "Re-parsed page quarantined (%s): %s", judgement.rejection, record.source_url
        )
        return writer.add_quarantined(record, judgement.rejection)
    assert judgement.digest is not None
    verdict = sightings.offer(record, judgement.digest)
    if verdict.conflict is not None:
        report.conflicts += 1
        logger.info("Conflict: %s", verdict.conflict)
    if not verdict.keep:
        return False
    record.raw = None
    return writer.add(record, judgement.page, judgement.digest)


def _run_figures(report: ReparseReport, counts: WriteCounts, failed_batches: int) -> dict[str, Any]:
    return {
        "finished_at": now_utc(),
        "finish_reason": "finished",
        "pages_fetched": 0,
        **written_figures(counts),
        "errors": failed_batches,
        "conflicts": report.conflicts,
        "stats": {
            "harvester/stored_pages": report.pages,
            "harvester/records_without_page": report.without_page,
            "harvester/non_record": report.not_record_reasons,
            "harvester/versions": report.versions,
            "harvester/seconds": round(report.seconds, 3),
        },
    }
