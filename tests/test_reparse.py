"""`harvester reparse`: a real crawl of the local site, then re-parses from stored pages only.

The local site stays up during the re-parses and its request log is cleared before them: any
request a re-parse made would show up there. With ``jobs`` above 1 the pages are judged in
real processes: the parsers they use are module-level functions here, which those processes
import; the one that dies kills its own process, as the kernel kills one out of memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from scrapy.http import TextResponse
from sqlalchemy import Engine, delete, func, select

from harvester import models
from harvester.cli import main
from harvester.db import create_engine_for, ensure_schema
from harvester.items import FetchedPage, NonRecordPage, RawRecord, Record
from harvester.localsite import SiteHandle, serve_site
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.rawpages import (
    RAW_PAGES,
    PageCodec,
    fetched_page,
    is_reference,
    stored_reference,
)
from harvester.reparse import CtrlC, JudgingProcessDied, reparse
from harvester.store import write_batch
from tests.support import REPO, migrated, response_from_file
from tests.test_crawl import crawl

RECORDS = 120
NEXT_VERSION = PARSER_VERSION + 1


def parser_with_upper_case_types(response: TextResponse) -> RawRecord | NonRecordPage:
    """A new parser whose output differs in one field: publication types in upper case."""
    page = parse_page(response)
    if isinstance(page, RawRecord) and "publication_type" in page.fields:
        page.fields["publication_type"] = [v.upper() for v in page.fields["publication_type"]]
    return page


def parser_with_failures(response: TextResponse) -> RawRecord | NonRecordPage:
    """A parser change with every outcome: some records change, some pages no longer pass
    validation (no title) and some are no longer record pages."""
    page = parser_with_upper_case_types(response)
    if isinstance(page, RawRecord):
        number = int("".join(c for c in page.first("ncj_number") or "0" if c.isdigit()) or 0)
        if number % 9 == 0:
            page.fields.pop("title", None)
            page.heading = None
        elif number % 11 == 0:
            return NonRecordPage(url=response.url, reason="no_record_fields")
    return page


DEATH_AT_PAGE = 40
_pages_judged_here = 0


def parser_that_dies(response: TextResponse) -> RawRecord | NonRecordPage:
    """The upper-case parser, whose judging process dies on the 40th page it is given."""
    global _pages_judged_here
    _pages_judged_here += 1
    in_a_judging_process = multiprocessing.parent_process() is not None
    if in_a_judging_process and _pages_judged_here == DEATH_AT_PAGE:
        os.kill(os.getpid(), signal.SIGKILL)
    return parser_with_upper_case_types(response)


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=RECORDS, seed=11) as handle:
        yield handle


@pytest.fixture
def crawled(database_url: str, site: SiteHandle) -> Iterator[Engine]:
    migrated(database_url)
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


def records(engine: Engine) -> dict[int, models.Record]:
    with engine.connect() as connection:
        rows = connection.execute(select(models.Record)).all()
    return {row.ncj_number: models.Record(**row._mapping) for row in rows}


def record_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(models.Record))]


def versions_of_run(engine: Engine, run_id: int) -> list[models.RecordVersion]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(models.RecordVersion).where(models.RecordVersion.crawl_run_id == run_id)
        ).all()
    return [models.RecordVersion(**row._mapping) for row in rows]


def test_reparse_after_a_parser_change_versions_exactly_what_changed_with_no_request(
    crawled: Engine, site: SiteHandle
) -> None:
    before = records(crawled)
    expected_records = [t for t in site.truth() if t["kind"] == "record"]
    assert len(before) == len(expected_records)
    assert all(r.raw_page_sha256 and r.parser_version == PARSER_VERSION for r in before.values())
    site.clear_requests()

    same = reparse(crawled)
    assert (same.pages, same.unchanged, same.updated, same.new) == (len(before), len(before), 0, 0)
    assert (same.versions, same.quarantined, same.not_records, same.without_page) == (0, 0, 0, 0)

    changing = {
        n: r.publication_type
        for n, r in before.items()
        if r.publication_type and r.publication_type != r.publication_type.upper()
    }
    assert 10 < len(changing) < len(before)  # some records change, others do not
    bumped = reparse(crawled, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
    assert (bumped.updated, bumped.unchanged) == (len(changing), len(before) - len(changing))
    assert bumped.versions == len(changing)
    made = versions_of_run(crawled, bumped.run_id)
    assert {v.ncj_number for v in made} == set(changing)
    for version in made:
        old = changing[version.ncj_number]
        assert version.changes == {"publication_type": {"old": old, "new": old.upper()}}
        assert (version.version, version.parser_version) == (2, NEXT_VERSION)
        assert version.changed_fields == "publication_type"
    after = records(crawled)
    for number, record in after.items():
        assert record.parser_version == NEXT_VERSION
        assert record.last_seen_at == before[number].last_seen_at  # nothing was seen on the site
        assert record.raw_page_sha256 == before[number].raw_page_sha256
        if number in changing:
            assert record.publication_type == changing[number].upper()
            assert record.last_changed_at > before[number].last_changed_at
            assert record.crawl_run_id == bumped.run_id
        else:
            assert record.last_changed_at == before[number].last_changed_at

    again = reparse(crawled, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
    assert (again.versions, again.updated) == (0, 0)
    back = reparse(crawled)  # the old parser again: every change is undone, as version 3
    assert back.versions == len(changing)
    assert {v.version for v in versions_of_run(crawled, back.run_id)} == {3}
    assert site.requests() == []
    with crawled.connect() as connection:
        runs = connection.execute(
            select(models.CrawlRun.spider, models.CrawlRun.pages_fetched).order_by(
                models.CrawlRun.id
            )
        ).all()
    assert [tuple(r) for r in runs] == [("ncjrs", runs[0][1])] + [("reparse", 0)] * 4


def test_records_crawled_without_raw_pages_are_left_alone(
    database_url: str, site: SiteHandle
) -> None:
    migrated(database_url)
    crawl(
        database_url,
        f"sitemap={site.base_url}/sitemap.xml",
        settings={"HARVESTER_STORE_RAW_PAGES": "False"},
    )
    engine = create_engine_for(database_url)
    try:
        stored = records(engine)
        rows = record_rows(engine)
        with engine.connect() as connection:
            pages = connection.scalar(select(func.count()).select_from(models.RawPage))
            quarantine_pages = connection.scalar(
                select(func.count(models.Quarantine.raw_page_sha256))
            )
        assert (pages, quarantine_pages) == (0, 0)
        assert all(r.raw_page_sha256 is None for r in stored.values())
        site.clear_requests()
        report = reparse(engine, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION)
        assert (report.pages, report.without_page, report.versions) == (0, len(stored), 0)
        assert record_rows(engine) == rows
        assert site.requests() == []
    finally:
        engine.dispose()


def page_record(name: str) -> tuple[Record, FetchedPage]:
    response = response_from_file(name)
    raw = parse_page(response)
    assert isinstance(raw, RawRecord)
    page = fetched_page(response, raw)
    return normalize_record(raw), page


def store_with_pages(engine: Engine, written: list[tuple[Record, FetchedPage]]) -> None:
    """The records written as a crawl writes them, each with its stored page."""
    with engine.begin() as connection:
        write_batch(
            connection,
            [(record, content_hash(record)) for record, _ in written],
            [],
            now=datetime(2026, 1, 1, tzinfo=UTC),
            run_id=None,
            counted=set(),
            pages={record.ncj_number: page for record, page in written if record.ncj_number},
        )


def test_a_page_that_no_longer_passes_keeps_its_record_and_is_quarantined(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    written = [page_record(name) for name in ("current_78126", "current_191386", "legacy_70780")]
    store_with_pages(engine, written)
    before = records(engine)

    def broken_parser(response: TextResponse) -> RawRecord | NonRecordPage:
        page = parse_page(response)
        assert isinstance(page, RawRecord)
        if "78126" in (page.first("ncj_number") or ""):
            return NonRecordPage(url=response.url, reason="no_record_fields")
        if "191386" in (page.first("ncj_number") or ""):
            page.fields.pop("title", None)
            page.heading = None
        return page

    report = reparse(engine, parse=broken_parser, parser_version=NEXT_VERSION)
    assert (report.pages, report.not_records, report.quarantined, report.unchanged) == (3, 1, 1, 1)
    assert report.not_record_reasons == {"no_record_fields": 1}
    after = records(engine)
    for number in (78126, 191386):  # kept as they were, parser version included
        assert after[number].content_hash == before[number].content_hash
        assert after[number].parser_version == PARSER_VERSION
    assert after[70780].parser_version == NEXT_VERSION
    with engine.connect() as connection:
        row = connection.execute(select(models.Quarantine)).one()
    assert (row.reason, row.crawl_run_id, row.parser_version) == (
        "missing_title",
        report.run_id,
        NEXT_VERSION,
    )
    assert row.raw_page_sha256 == before[191386].raw_page_sha256


def test_a_stored_body_that_is_not_html_is_counted_and_left_alone(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    record, page = page_record("current_78126")
    body = b"%PDF-1.4\n\x00\x01\x02"
    pdf = dataclasses.replace(
        page, sha256=hashlib.sha256(body).hexdigest(), body=body, content_type="application/pdf"
    )
    store_with_pages(engine, [(record, pdf)])
    before = records(engine)
    report = reparse(engine, parser_version=NEXT_VERSION)
    assert (report.pages, report.not_records, report.quarantined) == (1, 1, 0)
    assert report.not_record_reasons == {"not_html": 1}
    after = records(engine)
    assert after[78126].content_hash == before[78126].content_hash
    assert after[78126].parser_version == PARSER_VERSION


def test_the_reparse_command_reports_what_it_did(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_schema(engine, auto_migrate=True)
    record, page = page_record("current_78126")
    store_with_pages(engine, [(record, page)])
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["reparse"])
    assert result.exit_code == 0, result.output
    assert "1 stored pages, 0 new / 0 updated / 1 unchanged, 0 versions" in result.output
    result = CliRunner().invoke(main, ["history", "78126"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"version 1  2026-01-01 00:00:00  run None  parser {PARSER_VERSION}  https://"
    )


# --- On every core (--jobs) -------------------------------------------------------------------


def copy_sqlite(source: str, target: Path) -> str:
    """A copy of a SQLite database (its WAL included); the copy's URL."""
    with (
        contextlib.closing(sqlite3.connect(source.removeprefix("sqlite:///"))) as original,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        original.backup(copy)
    return f"sqlite:///{target}"


def table_dump(engine: Engine, since: datetime) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in key order, but the runs' own; times from ``since`` on (when the
    run being compared started) read "now": two runs at two moments write two times."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            if table.name in ("crawl_runs", "alembic_version"):
                continue
            rows = connection.execute(select(table).order_by(*table.primary_key.columns))
            dump[table.name] = [
                tuple(
                    "now" if isinstance(value, datetime) and value >= since else value
                    for value in row
                )
                for row in rows
            ]
    return dump


def reparsed_dump(url: str, jobs: int, **options: Any) -> tuple[Any, dict[str, Any]]:
    engine = create_engine_for(url)
    try:
        since = datetime.now(UTC)
        report = reparse(engine, jobs=jobs, **options)
        return report, table_dump(engine, since)
    finally:
        engine.dispose()


def test_judging_processes_are_forked_from_a_process_whose_only_thread_forks_them() -> None:
    """A fork copies the forking thread alone: a lock another thread held would stay locked
    in the judging process for good. So with a second thread they come from a fork server."""
    script = """
import threading
from harvester.reparse import _start_method
alone = _start_method()
stop = threading.Event()
threading.Thread(target=stop.wait).start()
print(alone, _start_method())
stop.set()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    if sys.platform == "linux":
        assert done.stdout.split() == ["fork", "forkserver"]
    else:
        assert "fork" not in done.stdout.split()


@contextlib.contextmanager
def another_thread() -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_every_job_count_writes_the_same_records_versions_and_quarantine(
    site: SiteHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    crawled_url = f"sqlite:///{tmp_path / 'crawled.sqlite'}"
    crawl(crawled_url, f"sitemap={site.base_url}/sitemap.xml")
    # Tasks that do not line up with the writer's batches, and several of each per run.
    monkeypatch.setattr("harvester.reparse.PAGES_PER_TASK", 7)
    options = {"parse": parser_with_failures, "parser_version": NEXT_VERSION, "batch_size": 25}
    site.clear_requests()
    one, one_dump = reparsed_dump(copy_sqlite(crawled_url, tmp_path / "one.sqlite"), 1, **options)
    # With another thread alive, the judging processes come from a fork server; with none,
    # they are forked from this process (``_start_method``): both ways write the same.
    caplog.set_level(logging.DEBUG, logger="harvester.reparse")
    with another_thread():
        two, two_dump = reparsed_dump(
            copy_sqlite(crawled_url, tmp_path / "two.sqlite"), 2, **options
        )
    # (a thread an earlier test left behind would rule the fork out)
    alone = threading.active_count() == 1
    three, three_dump = reparsed_dump(
        copy_sqlite(crawled_url, tmp_path / "three.sqlite"), 3, **options
    )
    started = re.findall(r"Judging processes: (\d+), started by (\w+)", caplog.text)
    if sys.platform == "linux":
        assert started == [("2", "forkserver"), ("3", "fork" if alone else "forkserver")]
    assert site.requests() == []
    # every outcome is there to compare
    assert min(one.updated, one.unchanged) > 10
    assert min(one.quarantined, one.not_records) > 3
    assert one_dump["record_versions"] != []
    assert one_dump["quarantine"] != []
    assert two_dump == one_dump
    assert three_dump == one_dump

    def outcome(report: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(report).items() if k not in ("seconds", "jobs")}

    assert outcome(two) == outcome(one)
    assert outcome(three) == outcome(one)
    assert (one.jobs, two.jobs, three.jobs) == (1, 2, 3)


def test_a_judging_process_that_dies_stops_the_run_and_the_next_run_finishes_the_job(
    crawled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = records(crawled)
    before_rows = record_rows(crawled)
    numbers = sorted(before)
    monkeypatch.setattr("harvester.reparse.PAGES_PER_TASK", 7)  # tasks finish before the death
    # Every task for the judging processes, none judged here while they start.
    monkeypatch.setattr("harvester.reparse.TASKS_AHEAD_PER_JOB", RECORDS)
    with pytest.raises(JudgingProcessDied, match="a judging process died"):
        reparse(crawled, parse=parser_that_dies, parser_version=NEXT_VERSION, jobs=2)
    with crawled.connect() as connection:
        run = connection.execute(
            select(models.CrawlRun).order_by(models.CrawlRun.id.desc()).limit(1)
        ).one()
    assert (run.spider, run.finish_reason) == ("reparse", "judging_process_died")
    assert run.finished_at is not None
    halfway = records(crawled)
    rows_before = {row[0]: row for row in before_rows}
    rows_halfway = {row[0]: row for row in record_rows(crawled)}
    done = [n for n in numbers if halfway[n].parser_version == NEXT_VERSION]
    # What was judged before the death is written, in order; nothing from the dead page on.
    assert done == numbers[: len(done)]
    assert 0 < len(done) < 2 * DEATH_AT_PAGE
    for number in numbers[len(done) :]:
        assert rows_halfway[number] == rows_before[number]

    finished = reparse(
        crawled, parse=parser_with_upper_case_types, parser_version=NEXT_VERSION, jobs=2
    )
    assert finished.pages == len(numbers)
    after = records(crawled)
    assert {r.parser_version for r in after.values()} == {NEXT_VERSION}
    changed = {n for n in numbers if after[n].publication_type != before[n].publication_type}
    with crawled.connect() as connection:
        versions = connection.execute(
            select(models.RecordVersion.ncj_number).where(models.RecordVersion.version > 1)
        ).scalars()
        assert sorted(versions) == sorted(changed)  # each change versioned once, none lost


def cli(database_url: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harvester.cli", *arguments],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def finished(command: subprocess.Popen[str]) -> tuple[str, str]:
    """The command's output once it ends; one still running after two minutes is stuck:
    it is killed with its processes, and the test fails."""
    try:
        return command.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(command.pid, signal.SIGKILL)
        out, err = command.communicate()
        raise AssertionError(f"the command did not end:\n{out}\n{err}") from None


def judging_processes(command: subprocess.Popen[str], jobs: int) -> list[psutil.Process]:
    """The command's judging processes (forked from it, or by its fork server elsewhere than
    Linux), as soon as they are all there: judging the site's pages and writing them takes
    ten times longer than this polls."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert command.poll() is None, command.communicate()
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):  # a process that just ended
            parent = psutil.Process(command.pid)
            for child in parent.children():
                if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                    found = [p for p in child.children() if p.status() != psutil.STATUS_ZOMBIE]
                elif (  # forked: the same command line
                    child.cmdline() == parent.cmdline() and child.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(child)
        if len(found) == jobs:
            return found
        time.sleep(0.01)
    raise AssertionError("the judging processes did not start")


def last_run(engine: Engine) -> models.CrawlRun:
    with engine.connect() as connection:
        row = connection.execute(
            select(models.CrawlRun).order_by(models.CrawlRun.id.desc()).limit(1)
        ).one()
    return models.CrawlRun(**row._mapping)


def test_the_command_says_in_one_line_that_a_judging_process_died(
    crawled: Engine, database_url: str
) -> None:
    command = cli(database_url, "reparse", "--jobs", "2")
    judging_processes(command, 2)[0].kill()
    out, err = finished(command)
    assert command.returncode == 1, (out, err)
    said, error = err.strip().splitlines()  # what it wrote, then why it stopped
    assert said.startswith("Stopped (judging_process_died): Re-parse run ")
    assert error == (
        "Error: Re-parse stopped: a judging process died (killed, out of memory?): what was "
        "judged before it is written; run the command again to finish"
    )
    assert last_run(crawled).finish_reason == "judging_process_died"
    again = cli(database_url, "reparse", "--jobs", "2")
    out, err = finished(again)
    assert again.returncode == 0, err
    assert f"{len(records(crawled))} stored pages" in out


def test_ctrl_c_stops_the_command_cleanly_and_the_judging_processes_with_it(
    crawled: Engine, database_url: str
) -> None:
    command = cli(database_url, "reparse", "--jobs", "2")
    workers = judging_processes(command, 2)
    time.sleep(0.02)  # the command starts them with Ctrl-C ignored for a few milliseconds
    os.killpg(command.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    out, err = finished(command)
    assert command.returncode == 130, (out, err)
    said, interrupted = err.strip().splitlines()
    assert said.startswith("Stopped (shutdown): Re-parse run ")
    assert interrupted == (
        "Re-parse interrupted: what was parsed is written; run it again to finish."
    )
    run = last_run(crawled)
    assert (run.spider, run.finish_reason) == ("reparse", "shutdown")
    psutil.wait_procs(workers, timeout=10)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    again = cli(database_url, "reparse")
    out, err = finished(again)
    assert again.returncode == 0, err
    assert f"{len(records(crawled))} stored pages" in out


def runs_started(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(models.CrawlRun)) or 0)


def test_ctrl_c_at_varied_moments_always_exits_130_in_one_line_and_keeps_the_records(
    crawled: Engine, database_url: str
) -> None:
    """Ctrl-C at varied moments of re-parses that read the database once per page (batches
    of one record). Before ``CtrlC`` one could land inside a pooled PostgreSQL connection's
    pre-ping, where psycopg's "can't change 'autocommit' now" replaced it (a traceback, exit
    1; tests/test_db.py has that race on its own), or inside a garbage collector's callback,
    where Python printed "Exception ignored ... KeyboardInterrupt" and the run went on to
    exit 0 (seen in 2 of 3 runs of this test on SQLite with 7 signals). Each stop must say so
    in its one line and exit 130, with every record as it was (the same parser: nothing to
    change)."""
    before = record_rows(crawled)
    random = Random(5)
    stopped = 0
    for _ in range(4):
        started = runs_started(crawled)
        command = cli(database_url, "reparse", "--jobs", "1", "--batch-size", "1")
        deadline = time.monotonic() + 60
        while runs_started(crawled) == started:  # the run has begun
            assert command.poll() is None, finished(command)
            assert time.monotonic() < deadline, "the re-parse did not start"
            time.sleep(0.002)
        time.sleep(random.uniform(0, 0.2))  # a full run takes about 0.4 s
        os.killpg(command.pid, signal.SIGINT)
        out, err = finished(command)
        assert "Traceback" not in err, err
        run = last_run(crawled)
        if run.finish_reason == "finished":  # too late: the run was over, nothing to stop
            assert command.returncode in (0, -signal.SIGINT), (out, err)
            continue
        stopped += 1
        assert command.returncode == 130, (out, err)
        assert len(err.strip().splitlines()) == 2, err
        said, interrupted = err.strip().splitlines()
        assert said.startswith("Stopped (shutdown): Re-parse run "), err
        assert interrupted == (
            "Re-parse interrupted: what was parsed is written; run it again to finish."
        )
        assert run.finish_reason == "shutdown"
        assert record_rows(crawled) == before
    assert stopped >= 2  # most signals land inside the run


def test_ctrl_c_while_the_judging_processes_start_is_not_lost(
    crawled: Engine, database_url: str
) -> None:
    """Started from a fork server, they took over a second (its imports), and a Ctrl-C
    pressed meanwhile was ignored: the run went on to the end and exited 0. Forked from the
    command, they start in milliseconds, with Ctrl-C held back (not ignored) meanwhile."""
    started = runs_started(crawled)
    command = cli(database_url, "reparse", "--jobs", "2")
    while runs_started(crawled) == started:  # the run has begun: the processes start now
        assert command.poll() is None, finished(command)
        time.sleep(0.001)
    os.killpg(command.pid, signal.SIGINT)
    out, err = finished(command)
    assert command.returncode == 130, (out, err)
    said, interrupted = err.strip().splitlines()  # nothing from the judging processes
    assert said.startswith("Stopped (shutdown): Re-parse run ")
    assert interrupted.startswith("Re-parse interrupted: ")
    assert last_run(crawled).finish_reason == "shutdown"


def press_ctrl_c() -> None:
    """A real SIGINT to this process; Python runs its handler before the next line."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.001)


def test_the_first_ctrl_c_is_a_request_and_the_second_interrupts_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with CtrlC() as ctrl_c:
        press_ctrl_c()  # taken: the run stops where it asks
        assert ctrl_c.pressed
        with pytest.raises(KeyboardInterrupt):
            press_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.stop_if_pressed()
    assert signal.getsignal(signal.SIGINT) is before
    with CtrlC() as untouched:
        untouched.stop_if_pressed()  # nothing pressed: goes on
    assert signal.getsignal(signal.SIGINT) is before


def test_a_parser_the_judging_processes_cannot_import_is_refused_before_anything_starts(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)

    def local_parser(response: TextResponse) -> RawRecord | NonRecordPage:
        return parse_page(response)

    with pytest.raises(ValueError, match="needs a parser they can import"):
        reparse(engine, parse=local_parser, jobs=2)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(models.CrawlRun)) == 0
    assert reparse(engine, parse=local_parser, jobs=1).pages == 0  # in-process: any parser


def test_a_page_read_back_is_kept_by_its_key_and_never_stored_empty(engine: Engine) -> None:
    """What judging processes send back instead of a stored page (``stored_reference``): the
    writer stores nothing for it, and refuses one whose page is gone rather than store an
    empty body under its key. A page whose body is empty is a page, not a reference."""
    ensure_schema(engine, auto_migrate=True)
    body = b"<html><body><h1>A page</h1></body></html>"
    page = FetchedPage(
        sha256=hashlib.sha256(body).hexdigest(),
        body=body,
        url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/a-page",
        status=200,
        content_type="text/html; charset=utf-8",
        encoding="utf-8",
        fetched_at=datetime.now(UTC),
    )
    empty = dataclasses.replace(page, sha256=hashlib.sha256(b"").hexdigest(), body=b"")
    with engine.begin() as connection:
        PageCodec().store(connection, [page])
    reference = stored_reference(page)
    assert (reference.body, reference.sha256) == (b"", page.sha256)
    assert is_reference(reference)
    assert not is_reference(page)
    assert not is_reference(empty)
    with engine.begin() as connection:
        PageCodec().store(connection, [reference, empty])
    with engine.connect() as connection:
        stored = PageCodec().pages(connection, [page.sha256, empty.sha256])
    assert stored[page.sha256].body == body
    assert stored[empty.sha256].body == b""
    with engine.begin() as connection:
        connection.execute(delete(RAW_PAGES).where(RAW_PAGES.c.sha256 == page.sha256))
    with (
        pytest.raises(ValueError, match=f"raw pages no longer stored: {page.sha256}"),
        engine.begin() as connection,
    ):
        PageCodec().store(connection, [reference])
