"""The crawl's writer process (harvester/writerprocess.py): it writes what a writer thread
writes, its log comes back to the crawl's, and when it dies the crawl writes its batches."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from harvester import models
from harvester.db import ensure_schema
from harvester.items import FetchedPage, PartialDate, RawRecord, Record, Rejection
from harvester.normalize import normalize_record
from harvester.parsing import parse_page
from harvester.store import RecordWriter, start_run
from harvester.writerprocess import WriterProcess, _Kept, _receive, _relay, _send
from tests.support import response_from_file, scrapy_crawl


@pytest.fixture
def schema(engine: Engine) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    return engine


def seven_records() -> tuple[list[Record], Record]:
    """Seven records, one of which the database refuses, and one to quarantine."""
    page = parse_page(response_from_file("current_191386"))
    assert isinstance(page, RawRecord)
    base = normalize_record(page)
    records = [dataclasses.replace(base, ncj_number=1000 + i) for i in range(7)]
    # A month the schema's CHECK constraint refuses.
    records[4] = dataclasses.replace(
        records[4], published=PartialDate("Smarch 2001", 2001, 13, None, "month")
    )
    return records, dataclasses.replace(base, ncj_number=None)


def write_them(writer: RecordWriter) -> None:
    records, rejected = seven_records()

    async def feed() -> None:
        for record in records:
            await writer.add_when_room(record)
        writer.add_quarantined(rejected, Rejection("invalid_ncj_number", "NCJ Number is 'x'"))

    asyncio.run(feed())


def assert_all_written(schema: Engine, run_id: int) -> None:
    with schema.connect() as connection:
        stored = connection.execute(select(models.Record.ncj_number)).scalars().all()
        reasons = connection.execute(
            select(models.Quarantine.reason, models.Quarantine.crawl_run_id)
        ).all()
    assert sorted(stored) == [1000, 1001, 1002, 1003, 1005, 1006]
    assert sorted(reasons) == [("invalid_ncj_number", run_id), ("store_error", run_id)]


def test_the_writer_process_writes_what_a_writer_thread_writes_and_says_so_here(
    schema: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = start_run(schema, "test", {})
    process = WriterProcess()
    writer = RecordWriter(schema, run_id=run_id, batch_size=3, batch_seconds=60, process=process)
    with caplog.at_level(logging.INFO):
        write_them(writer)
        counts = writer.close()
    assert (counts.new, counts.quarantined, counts.refused) == (6, 2, 1)
    assert writer.process_deaths == 0
    assert_all_written(schema, run_id)
    # The refused record was found by the writer process (one by one), and its log says so
    # in this process's log, as if logged here.
    refused = [r for r in caplog.records if "NCJ 1004 could not be stored" in r.getMessage()]
    assert refused, caplog.text
    assert refused[0].process == process.pid != os.getpid()
    assert refused[0].levelno == logging.ERROR
    assert process._process.exitcode == 0


def test_a_writer_process_that_dies_leaves_its_batches_to_the_crawl(
    schema: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = start_run(schema, "test", {})
    process = WriterProcess()
    writer = RecordWriter(schema, run_id=run_id, batch_size=3, batch_seconds=60, process=process)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    write_them(writer)
    counts = writer.close()
    assert (counts.new, counts.quarantined, counts.refused) == (6, 2, 1)
    assert writer.process_deaths == 1
    assert "The writer process died" in caplog.text
    assert_all_written(schema, run_id)


def test_the_log_records_of_a_batch_are_logged_again_in_the_crawl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = _Kept()
    log = logging.getLogger("harvester.store")
    log.addHandler(kept)
    try:
        log.warning("Database write failed (%s); retrying in %.1f s", "database is locked", 0.5)
        try:
            raise ValueError("a bad row")
        except ValueError:
            log.exception("A batch could not be written")
    finally:
        log.removeHandler(kept)
    sent = pickle.loads(pickle.dumps(kept.taken()))  # as they cross the pipe
    assert kept.taken() == []
    with caplog.at_level(logging.DEBUG):
        _relay(sent)
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0] == (
        "harvester.store",
        logging.WARNING,
        "Database write failed (database is locked); retrying in 0.5 s",
    )
    assert messages[1][:2] == ("harvester.store", logging.ERROR)
    assert "ValueError: a bad row" in messages[1][2]  # the trace, made where it was raised


@pytest.mark.skipif(sys.platform != "linux", reason="process names are Linux's")
def test_the_writer_process_goes_by_its_name() -> None:
    process = WriterProcess()
    try:
        assert process.pid is not None
        comm = Path(f"/proc/{process.pid}/comm")
        deadline = time.monotonic() + 30  # it names itself first thing, once started
        while comm.read_text().strip() != "harvester-write":
            assert time.monotonic() < deadline, comm.read_text()
            time.sleep(0.01)
    finally:
        process.close()


def test_a_crawl_that_fails_to_start_after_its_run_is_made_still_exits(tmp_path: Path) -> None:
    """A downloader middleware that cannot be loaded fails the crawl after its run (and its
    writer and judging processes) exist and before the spider opens: the run is never closed,
    and the writer process must not hold the exit (it ignores SIGTERM and waits on its pipe)."""
    done = scrapy_crawl(
        f"sqlite:///{tmp_path / 'harvest.sqlite'}",
        "url=http://127.0.0.1:9/ncjrs/virtual-library/abstracts/x",
        settings={"DOWNLOADER_MIDDLEWARES": '{"no.such.Middleware": 1}'},
        timeout=120,
    )
    assert done.returncode != 0
    assert "No module named 'no'" in done.stderr


def test_a_batch_crosses_with_its_pages_bodies_apart_and_whole() -> None:
    """The message holds no copy of the bodies: each follows it as it is."""
    body = os.urandom(300_000)  # more than a pipe holds: sent from a thread while read here
    page = FetchedPage(
        "a" * 64, body, "http://x/1", 200, "text/html", "utf-8", datetime(2026, 1, 1, tzinfo=UTC)
    )
    batch = ("write", ([], [], [], {1: page, 2: dataclasses.replace(page, url="http://x/2")}))
    crawl_end, writer_end = multiprocessing.Pipe()
    for read in ("frames", "message"):
        sender = threading.Thread(target=_send, args=(crawl_end, batch))
        sender.start()
        if read == "frames":
            count, message, first, second = (writer_end.recv_bytes() for _ in range(4))
            assert int.from_bytes(count, "big") == 2
            assert len(message) < 2_000
            assert first == second == body
        else:
            assert _receive(writer_end) == batch
        sender.join()
