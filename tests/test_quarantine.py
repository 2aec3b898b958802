"""`harvester quarantine list / replay`: quarantined pages validated again after a fix.

With ``jobs`` above 1 the rows are judged in real processes, which import the parsers here.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scrapy.http import TextResponse
from sqlalchemy import Engine, select

from harvester import models
from harvester.cli import main
from harvester.db import create_engine_for, ensure_schema
from harvester.items import NonRecordPage, RawRecord, Record, Rejection
from harvester.localsite import SiteHandle, serve_site
from harvester.normalize import normalize_record, record_content
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.quarantine import replay
from harvester.rawpages import fetched_page
from harvester.reparse import JudgingProcessDied
from harvester.store import RecordWriter
from tests.support import migrated, response_from_file
from tests.test_crawl import crawl
from tests.test_reparse import copy_sqlite, table_dump

RECOVERED = "Untitled record"


def parser_that_recovers_titles(response: TextResponse) -> RawRecord | NonRecordPage:
    """The fix: a page without a title gets a placeholder one instead of being refused."""
    page = parse_page(response)
    if isinstance(page, RawRecord) and not page.fields.get("title") and not page.heading:
        page.fields["title"] = [RECOVERED]
    return page


_pages_judged_here = 0


def parser_that_dies_recovering_titles(response: TextResponse) -> RawRecord | NonRecordPage:
    """The fix, in a judging process that dies on the 5th page it is given."""
    global _pages_judged_here
    _pages_judged_here += 1
    if multiprocessing.parent_process() is not None and _pages_judged_here == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return parser_that_recovers_titles(response)


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=100, seed=4, bad_share=0.12) as handle:
        yield handle


def quarantine_rows(engine: Engine) -> list[models.Quarantine]:
    with engine.connect() as connection:
        rows = connection.execute(select(models.Quarantine).order_by(models.Quarantine.id)).all()
    return [models.Quarantine(**row._mapping) for row in rows]


def test_replay_after_a_fix_turns_the_pages_that_pass_into_records(
    database_url: str, site: SiteHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected = {t["url"]: (t["ncj_number"], t["rejection"]) for t in site.truth() if t["rejection"]}
    reasons = Counter(reason for _, reason in rejected.values())
    assert reasons["missing_title"] > 1
    assert reasons["invalid_ncj_number"] > 1
    migrated(database_url)
    # A twelfth of the site refused on purpose: more than the post-run check lets pass.
    crawl(
        database_url,
        f"sitemap={site.base_url}/sitemap.xml",
        settings={"HARVESTER_MAX_QUARANTINE_RATE": "1"},
    )
    engine = create_engine_for(database_url)
    try:
        site.clear_requests()
        before = quarantine_rows(engine)
        assert {row.url: row.reason for row in before} == {u: r for u, (_, r) in rejected.items()}
        assert all(row.raw_page_sha256 and row.resolved_at is None for row in before)

        unfixed = replay(engine)  # nothing changed: nothing passes
        assert (unfixed.rows, unfixed.stored, unfixed.not_replayable) == (len(rejected), 0, 0)
        assert unfixed.still_quarantined == dict(reasons)

        fixed = replay(engine, parse=parser_that_recovers_titles)
        assert (fixed.rows, fixed.stored, fixed.counts.new) == (len(rejected),) + (
            reasons["missing_title"],
        ) * 2
        assert fixed.versions == reasons["missing_title"]
        assert fixed.still_quarantined == {"invalid_ncj_number": reasons["invalid_ncj_number"]}
        after = {row.url: row for row in quarantine_rows(engine)}
        with engine.connect() as connection:
            titles = dict(
                connection.execute(select(models.Record.ncj_number, models.Record.title)).all()
            )
            versions = connection.execute(
                select(models.RecordVersion.ncj_number, models.RecordVersion.crawl_run_id).where(
                    models.RecordVersion.crawl_run_id == fixed.run_id
                )
            ).all()
        for url, (ncj_number, reason) in rejected.items():
            if reason == "missing_title":
                assert after[url].resolution == "stored"
                assert after[url].resolved_at is not None
                assert titles[ncj_number] == RECOVERED
            else:
                assert (after[url].resolution, after[url].resolved_at) == (None, None)
        assert sorted(n for n, _ in versions) == sorted(
            n for n, r in rejected.values() if r == "missing_title"
        )

        again = replay(engine, parse=parser_that_recovers_titles)  # resolved rows stay resolved
        assert (again.rows, again.stored) == (reasons["invalid_ncj_number"], 0)
        assert site.requests() == []

        monkeypatch.setenv("DATABASE_URL", database_url)
        listed = CliRunner().invoke(main, ["quarantine", "list"])
        assert listed.exit_code == 0, listed.output
        assert listed.output.count(" invalid_ncj_number  open  page  ") == len(after) - len(
            [r for r in rejected.values() if r[1] == "missing_title"]
        )
        assert f"Open: {reasons['invalid_ncj_number']} invalid_ncj_number" in listed.output
        assert "missing_title" not in listed.output
        everything = CliRunner().invoke(
            main, ["quarantine", "list", "--all", "--reason", "missing_title"]
        )
        assert everything.output.count("resolved stored") == reasons["missing_title"]
        replayed = CliRunner().invoke(main, ["quarantine", "replay", "--reason", "missing_title"])
        assert replayed.exit_code == 0, replayed.output
        assert "0 open rows" in replayed.output
    finally:
        engine.dispose()


def quarantine(engine: Engine, records: list[tuple[Record, Rejection, bool]]) -> None:
    """Quarantine rows as a crawl writes them; the bool says whether the page is kept."""
    writer = RecordWriter(engine, run_id=None, batch_size=100, batch_seconds=60)
    for record, rejection, keep_page in records:
        if not keep_page and record.raw is not None:
            record.raw.fetched_page = None
        writer.add_quarantined(record, rejection)
    writer.close()


def page_record(name: str) -> Record:
    response = response_from_file(name)
    raw = parse_page(response)
    assert isinstance(raw, RawRecord)
    raw.fetched_page = fetched_page(response, raw)
    return normalize_record(raw)


def test_rows_without_a_page_replay_from_their_raw_values(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    refused_by_an_older_validator = page_record("current_78126")
    store_error = page_record("current_191386")
    store_error.raw = None  # the writer's own refusals keep the normalized record only
    quarantine(
        engine,
        [
            (refused_by_an_older_validator, Rejection("shifted_values", "an old rule"), False),
            (store_error, Rejection("store_error", "the database said no"), False),
        ],
    )
    report = replay(engine)
    assert (report.rows, report.stored, report.not_replayable) == (2, 1, 1)
    rows = quarantine_rows(engine)
    assert [(r.reason, r.resolution, r.raw_page_sha256) for r in rows] == [
        ("shifted_values", "stored", None),
        ("store_error", None, None),
    ]
    with engine.connect() as connection:
        record = connection.execute(select(models.Record)).one()
        version = connection.execute(select(models.RecordVersion)).one()
    assert (record.ncj_number, record.raw_page_sha256, record.parser_version) == (
        78126,
        None,
        PARSER_VERSION,
    )
    assert version.changes == {
        name: {"new": value}
        for name, value in record_content(refused_by_an_older_validator).items()
    }


def test_a_page_that_is_no_longer_a_record_is_resolved_and_a_refused_one_stays_open(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    pages = [page_record(name) for name in ("current_78126", "current_191386", "legacy_70780")]
    quarantine(engine, [(record, Rejection("missing_title", "old"), True) for record in pages])

    def fixed_parser(response: TextResponse) -> RawRecord | NonRecordPage:
        page = parse_page(response)
        assert isinstance(page, RawRecord)
        number = page.first("ncj_number") or ""
        if "78126" in number:
            return NonRecordPage(url=response.url, reason="soft_404")
        if "191386" in number:
            page.layout = "mobile"  # type: ignore[assignment]  # the database refuses it
        return page

    report = replay(engine, parse=fixed_parser)
    assert (report.rows, report.stored, report.not_records, report.failed) == (3, 1, 1, 1)
    resolutions = {row.url: row.resolution for row in quarantine_rows(engine)}
    assert [resolutions[record.source_url] for record in pages] == ["not_a_record", None, "stored"]
    with engine.connect() as connection:
        assert connection.execute(select(models.Record.ncj_number)).scalars().all() == [70780]


def test_duplicates_in_quarantine_become_one_record(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    legacy = page_record("legacy_70780")
    assert legacy.raw is not None
    fields = {name: values for name, values in legacy.raw.fields.items() if name != "abstract"}
    poorer = normalize_record(
        dataclasses.replace(legacy.raw, final_url="https://ojp.gov/other", fields=fields)
    )
    assert poorer.raw is not None
    poorer.raw.fetched_page = None
    quarantine(
        engine,
        [
            (poorer, Rejection("missing_title", "old"), False),
            (legacy, Rejection("missing_title", "old"), True),
        ],
    )
    report = replay(engine)
    assert (report.stored, report.counts.new) == (2, 1)
    with engine.connect() as connection:
        record = connection.execute(select(models.Record)).one()
    assert record.abstract is not None


@pytest.fixture
def quarantined(site: SiteHandle, tmp_path: Path) -> str:
    """A SQLite database crawled from the site with its bad pages in quarantine: its URL."""
    url = f"sqlite:///{tmp_path / 'crawled.sqlite'}"
    crawl(
        url, f"sitemap={site.base_url}/sitemap.xml", settings={"HARVESTER_MAX_QUARANTINE_RATE": "1"}
    )
    return url


def replayed(url: str, jobs: int, **options: Any) -> tuple[Any, dict[str, Any]]:
    engine = create_engine_for(url)
    try:
        since = datetime.now(UTC)
        return replay(engine, jobs=jobs, **options), table_dump(engine, since)
    finally:
        engine.dispose()


def test_every_job_count_resolves_and_writes_the_same(
    quarantined: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several tasks per chunk of rows, the last one shorter.
    monkeypatch.setattr("harvester.quarantine.PAGES_PER_TASK", 2)
    options = {"parse": parser_that_recovers_titles, "batch_size": 5}
    one, one_dump = replayed(copy_sqlite(quarantined, tmp_path / "one.sqlite"), 1, **options)
    two, two_dump = replayed(copy_sqlite(quarantined, tmp_path / "two.sqlite"), 2, **options)
    three, three_dump = replayed(copy_sqlite(quarantined, tmp_path / "three.sqlite"), 3, **options)
    assert one.rows > 5
    assert one.stored > 1
    assert sum(one.still_quarantined.values()) > 1
    assert [row[-1] for row in one_dump["quarantine"]].count("stored") == one.stored
    assert two_dump == one_dump
    assert three_dump == one_dump
    for report in (two, three):
        assert (report.rows, report.stored, report.still_quarantined, report.versions) == (
            one.rows,
            one.stored,
            one.still_quarantined,
            one.versions,
        )
        assert report.counts == one.counts


def outcome(url: str) -> dict[str, Any]:
    """What a replay leaves, whichever runs did it: records, versions, resolutions."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return {
                "records": connection.execute(
                    select(models.Record.ncj_number, models.Record.content_hash).order_by(
                        models.Record.ncj_number
                    )
                ).all(),
                "versions": connection.execute(
                    select(
                        models.RecordVersion.ncj_number,
                        models.RecordVersion.version,
                        models.RecordVersion.changes,
                    ).order_by(models.RecordVersion.ncj_number, models.RecordVersion.version)
                ).all(),
                "quarantine": connection.execute(
                    select(models.Quarantine.id, models.Quarantine.resolution).order_by(
                        models.Quarantine.id
                    )
                ).all(),
            }
    finally:
        engine.dispose()


def test_a_replay_whose_judging_process_dies_is_finished_by_the_next(
    quarantined: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("harvester.quarantine.PAGES_PER_TASK", 2)
    # Every task for the judging processes, none judged here while they start.
    monkeypatch.setattr("harvester.reparse.TASKS_AHEAD_PER_JOB", 1000)
    at_once = copy_sqlite(quarantined, tmp_path / "at_once.sqlite")
    replayed(at_once, 1, parse=parser_that_recovers_titles, batch_size=4)
    stopped = copy_sqlite(quarantined, tmp_path / "stopped.sqlite")
    with pytest.raises(JudgingProcessDied):
        replayed(stopped, 2, parse=parser_that_dies_recovering_titles, batch_size=4)
    engine = create_engine_for(stopped)
    try:
        with engine.connect() as connection:
            run = connection.execute(
                select(models.CrawlRun).order_by(models.CrawlRun.id.desc()).limit(1)
            ).one()
    finally:
        engine.dispose()
    assert (run.spider, run.finish_reason) == ("quarantine-replay", "judging_process_died")
    assert outcome(stopped) != outcome(at_once)
    finished, _ = replayed(stopped, 2, parse=parser_that_recovers_titles, batch_size=4)
    assert finished.rows > 0
    assert outcome(stopped) == outcome(at_once)
