"""`harvester quarantine list` and `harvester quarantine replay`: quarantined pages after a fix.

Replay takes every open quarantine row (``resolved_at IS NULL``), oldest first, and judges it
again with ``harvester.judge``, as ``harvester reparse`` does: from its stored page
(``judge_page``: parse -> normalize -> validate, no request), or, for a row without a page
(quarantined before raw pages were kept, or with ``HARVESTER_STORE_RAW_PAGES`` off), from the
raw values kept in ``quarantine.raw`` (``judge_raw``: normalize -> validate only, a parser fix
cannot reach those). Then:

- it passes now: the record goes through the conflict rule and ``store.write_batch`` like any
  crawled record (a version names the replay run), and in the same transaction the row gets
  ``resolved_at`` and ``resolution = 'stored'``;
- the page is no longer a record page: ``resolution = 'not_a_record'``;
- it still fails, or there is nothing to replay (a ``store_error`` row without a page): the row
  stays open and unchanged, and the replay reports the reason it fails with now.

Rows are marked, never deleted: they are the evidence of what was refused, when and why, and
``WHERE resolved_at IS NULL`` is what still waits for a fix.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, update

from harvester import settings as defaults
from harvester.conflicts import RunSightings
from harvester.db import WRITE_TRANSACTION_OPTION
from harvester.history import RecordHistory, versions_of_run
from harvester.items import FetchedPage, Record
from harvester.judge import Judgement, Parser, judge_raw
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.reparse import (
    PAGES_PER_TASK,
    CtrlC,
    JudgingPool,
    PageJudge,
    StoredRow,
    check_jobs,
    stop_reason,
    stored_dictionaries,
    stored_rows_by_key,
)
from harvester.store import (
    QUARANTINE,
    WriteCounts,
    finish_run,
    now_utc,
    raw_from_json,
    start_run,
    write_batch,
    written_figures,
)

logger = logging.getLogger(__name__)

# Records per transaction, as in the crawl.
BATCH_SIZE: int = defaults.HARVESTER_BATCH_SIZE


def list_rows(
    engine: Engine, *, reason: str | None = None, include_resolved: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Quarantine rows, newest first: open ones only unless ``include_resolved``."""
    query = select(
        QUARANTINE.c.id,
        QUARANTINE.c.crawl_run_id,
        QUARANTINE.c.reason,
        QUARANTINE.c.detail,
        QUARANTINE.c.url,
        QUARANTINE.c.fetched_at,
        QUARANTINE.c.raw_page_sha256,
        QUARANTINE.c.resolved_at,
        QUARANTINE.c.resolution,
    ).order_by(QUARANTINE.c.id.desc())
    if reason is not None:
        query = query.where(QUARANTINE.c.reason == reason)
    if not include_resolved:
        query = query.where(QUARANTINE.c.resolved_at.is_(None))
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query.limit(limit)).mappings()]


def count_open(engine: Engine, reason: str | None = None) -> dict[str, int]:
    """Open rows by reason."""
    query = (
        select(QUARANTINE.c.reason, func.count())
        .where(QUARANTINE.c.resolved_at.is_(None))
        .group_by(QUARANTINE.c.reason)
        .order_by(QUARANTINE.c.reason)
    )
    if reason is not None:
        query = query.where(QUARANTINE.c.reason == reason)
    with engine.connect() as connection:
        return {name: int(count) for name, count in connection.execute(query)}


@dataclasses.dataclass
class ReplayReport:
    run_id: int
    rows: int = 0  # open rows looked at
    stored: int = 0  # rows resolved: their page now gives a stored record
    not_records: int = 0  # rows resolved: their page is no longer a record page
    still_quarantined: dict[str, int] = dataclasses.field(default_factory=dict)  # by reason now
    not_replayable: int = 0  # no page and no raw values to derive a record from
    failed: int = 0  # rows whose record the database refused; left open
    conflicts: int = 0
    counts: WriteCounts = dataclasses.field(default_factory=WriteCounts)
    versions: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        still = ", ".join(f"{n} {r}" for r, n in sorted(self.still_quarantined.items()))
        return (
            f"Quarantine replay run {self.run_id}: {self.rows} open rows, {self.stored} now "
            f"stored ({self.counts.new} new / {self.counts.updated} updated / "
            f"{self.counts.unchanged} unchanged records, {self.versions} versions), "
            f"{self.not_records} no longer records, "
            f"{sum(self.still_quarantined.values())} still quarantined"
            f"{f' ({still})' if still else ''}, {self.not_replayable} not replayable, "
            f"{self.failed} failed, {self.seconds:.1f} s"
        )


@dataclasses.dataclass
class _Chunk:
    """One chunk's outcome: records to write and the rows they resolve, in one transaction."""

    records: dict[int, tuple[Record, str]] = dataclasses.field(default_factory=dict)
    pages: dict[int, FetchedPage] = dataclasses.field(default_factory=dict)
    stored_rows: dict[int, list[int]] = dataclasses.field(default_factory=dict)  # NCJ -> row ids
    not_record_rows: list[int] = dataclasses.field(default_factory=list)


def replay(
    engine: Engine,
    *,
    parse: Parser = parse_page,
    parser_version: int = PARSER_VERSION,
    reason: str | None = None,
    batch_size: int = BATCH_SIZE,
    jobs: int = 1,
) -> ReplayReport:
    """Replay the open quarantine rows (of one reason, if given); see the module docstring.

    ``jobs``: processes that judge the rows, as for ``harvester.reparse.reparse`` (1: this one,
    no pool; more: ``parse`` must be a module-level function). Rows are judged in order and
    written chunk by chunk by this process, so the outcome does not depend on ``jobs``.
    """
    check_jobs(jobs, parse)
    with CtrlC() as ctrl_c:
        return _replay(engine, parse, parser_version, reason, batch_size, jobs, ctrl_c)


def _replay(
    engine: Engine,
    parse: Parser,
    parser_version: int,
    reason: str | None,
    batch_size: int,
    jobs: int,
    ctrl_c: CtrlC,
) -> ReplayReport:
    started = time.monotonic()
    run_id = start_run(
        engine, "quarantine-replay", {"reason": reason, "jobs": jobs} if reason else {"jobs": jobs}
    )
    report = ReplayReport(run_id=run_id)
    try:
        _replay_rows(engine, report, parse, parser_version, reason, batch_size, jobs, ctrl_c)
    except BaseException as error:
        _finish(engine, report, started, stop_reason(error))
        raise
    _finish(engine, report, started, "finished")
    return report


def _replay_rows(
    engine: Engine,
    report: ReplayReport,
    parse: Parser,
    parser_version: int,
    reason: str | None,
    batch_size: int,
    jobs: int,
    ctrl_c: CtrlC,
) -> None:
    history = RecordHistory(parser_version=parser_version, sighting=False)
    sightings = RunSightings()
    counted: set[int] = set()
    with engine.connect() as connection:
        dictionaries = stored_dictionaries(connection)
    with JudgingPool(jobs, parse, dictionaries) as pool:
        chunk = _Chunk()
        tasks = _open_rows(engine, pool, reason, batch_size)
        for (rows, last), judgements in pool.map(_judge_rows, tasks):
            ctrl_c.stop_if_pressed()
            for row, judgement in zip(rows, judgements, strict=True):
                report.rows += 1
                _take(row, judgement, chunk, sightings, report)
            if last:  # the rows of one read are written in one transaction, as they were read
                _write(engine, chunk, history, report.run_id, counted, report)
                chunk = _Chunk()


# What a judging process is sent for one quarantine row: its stored page (compressed), or
# else the raw values the row kept.
_RowToJudge = tuple[StoredRow | None, Any]


def _open_rows(
    engine: Engine, pool: JudgingPool, reason: str | None, batch_size: int
) -> Iterator[tuple[tuple[Sequence[Any], bool], list[_RowToJudge]]]:
    """The open rows, oldest first, a task's worth at a time; each task comes with its rows
    and whether it ends a chunk (``batch_size`` rows, one transaction)."""
    after = 0
    while True:
        query = (
            select(QUARANTINE.c.id, QUARANTINE.c.raw, QUARANTINE.c.raw_page_sha256)
            .where(QUARANTINE.c.resolved_at.is_(None), QUARANTINE.c.id > after)
            .order_by(QUARANTINE.c.id)
            .limit(batch_size)
        )
        if reason is not None:
            query = query.where(QUARANTINE.c.reason == reason)
        with engine.connect() as connection:
            rows = connection.execute(query).all()
            if not rows:
                return
            pages = stored_rows_by_key(
                connection, [row.raw_page_sha256 for row in rows if row.raw_page_sha256]
            )
            pool.learn(connection, pages.values())
        after = rows[-1].id
        for start in range(0, len(rows), PAGES_PER_TASK):
            part = rows[start : start + PAGES_PER_TASK]
            to_judge = [
                (pages.get(row.raw_page_sha256) if row.raw_page_sha256 else None, row.raw)
                for row in part
            ]
            yield (part, start + PAGES_PER_TASK >= len(rows)), to_judge


def _judge_rows(judge: PageJudge, rows: Sequence[_RowToJudge]) -> list[Judgement | None]:
    """What each row gives today: from its page, else from its raw values (None: neither)."""
    judgements: list[Judgement | None] = []
    for page, raw_json in rows:
        if page is not None:
            judgement = judge.judge(page)
        elif (raw := raw_from_json(raw_json)) is not None:
            judgement = judge_raw(raw)
        else:
            judgements.append(None)
            continue
        # Less to send back: a row that still fails needs only its reason, a record that
        # passes no longer needs the values as shown.
        if judgement.rejection is not None:
            judgement = Judgement(judgement.url, judgement.verdict, rejection=judgement.rejection)
        elif judgement.record is not None:
            judgement.record.raw = None
        judgements.append(judgement)
    return judgements


def _finish(engine: Engine, report: ReplayReport, started: float, reason: str) -> None:
    with engine.connect() as connection:
        report.versions = versions_of_run(connection, report.run_id)
    report.seconds = time.monotonic() - started
    finish_run(
        engine,
        report.run_id,
        {
            "finished_at": now_utc(),
            "finish_reason": reason,
            **written_figures(report.counts),
            "errors": report.failed,
            "conflicts": report.conflicts,
            "stats": {
                "harvester/replayed_rows": report.rows,
                "harvester/resolved_stored": report.stored,
                "harvester/resolved_not_a_record": report.not_records,
                "harvester/still_quarantined": report.still_quarantined,
                "harvester/not_replayable": report.not_replayable,
                "harvester/versions": report.versions,
            },
        },
    )
    if reason == "finished":
        logger.info("%s", report.summary())
    else:
        logger.warning("Stopped (%s): %s", reason, report.summary())


def _take(
    row: Any,
    judgement: Judgement | None,
    chunk: _Chunk,
    sightings: RunSightings,
    report: ReplayReport,
) -> None:
    """What one quarantine row gives today: adds it to the chunk or to the report."""
    if judgement is None:
        report.not_replayable += 1
        return
    if judgement.verdict == "not_record":
        chunk.not_record_rows.append(row.id)
        return
    if judgement.rejection is not None:
        reason = judgement.rejection.reason
        report.still_quarantined[reason] = report.still_quarantined.get(reason, 0) + 1
        return
    record, digest = judgement.record, judgement.digest
    assert record is not None
    assert record.ncj_number is not None
    assert digest is not None
    verdict = sightings.offer(record, digest)
    if verdict.conflict is not None:
        report.conflicts += 1
        logger.info("Conflict: %s", verdict.conflict)
    chunk.stored_rows.setdefault(record.ncj_number, []).append(row.id)
    if verdict.keep:
        record.raw = None
        chunk.records[record.ncj_number] = (record, digest)
        if judgement.page is not None:
            chunk.pages[record.ncj_number] = judgement.page
        else:
            chunk.pages.pop(record.ncj_number, None)


def _write(
    engine: Engine,
    chunk: _Chunk,
    history: RecordHistory,
    run_id: int,
    counted: set[int],
    report: ReplayReport,
) -> None:
    """The chunk in one transaction; if the database refuses it, one NCJ number at a time."""
    stored_ids = [i for ids in chunk.stored_rows.values() for i in ids]
    try:
        counts = _write_in_one_transaction(
            engine,
            chunk.records,
            chunk.pages,
            stored_ids,
            chunk.not_record_rows,
            history,
            run_id,
            counted,
        )
    except Exception:
        logger.exception("A replay batch failed; writing its records one by one")
    else:
        report.counts.add(counts)
        report.stored += len(stored_ids)
        report.not_records += len(chunk.not_record_rows)
        return
    for key, ids in chunk.stored_rows.items():
        records = {key: chunk.records[key]} if key in chunk.records else {}
        pages = {key: chunk.pages[key]} if key in chunk.pages else {}
        try:
            counts = _write_in_one_transaction(
                engine, records, pages, ids, [], history, run_id, counted
            )
        except Exception as error:
            logger.error(
                "NCJ %s could not be stored; its quarantine rows stay open: %s", key, error
            )
            report.failed += len(ids)
        else:
            report.counts.add(counts)
            report.stored += len(ids)
    _write_in_one_transaction(engine, {}, {}, [], chunk.not_record_rows, history, run_id, counted)
    report.not_records += len(chunk.not_record_rows)


def _write_in_one_transaction(
    engine: Engine,
    records: Mapping[int, tuple[Record, str]],
    pages: Mapping[int, FetchedPage],
    stored_ids: Sequence[int],
    not_record_ids: Sequence[int],
    history: RecordHistory,
    run_id: int,
    counted: set[int],
) -> WriteCounts:
    now = now_utc()
    with (
        engine.connect().execution_options(**{WRITE_TRANSACTION_OPTION: True}) as connection,
        connection.begin(),
    ):
        counts = write_batch(
            connection,
            list(records.values()),
            [],
            now=now,
            run_id=run_id,
            counted=counted,
            pages=pages,
            history=history,
        )
        resolve = (
            update(QUARANTINE)
            .where(QUARANTINE.c.id == bindparam("row_id"))
            .values(resolved_at=now, resolution=bindparam("how"))
        )
        resolutions = [{"row_id": i, "how": "stored"} for i in stored_ids] + [
            {"row_id": i, "how": "not_a_record"} for i in not_record_ids
        ]
        if resolutions:
            connection.execute(resolve, resolutions)
    counted |= counts.counted
    return counts
