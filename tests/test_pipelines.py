"""The item pipelines: pages judged in another process, and what happens when it dies (real
`scrapy crawl` processes over the local site, as in test_crawl.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from harvester import models
from harvester.crawl_session import JUDGING_PROCESS_NAME
from harvester.items import FetchedResponse
from harvester.localsite import serve_site
from harvester.pipelines import judge_batch, judge_fetched, with_body
from harvester.store import now_utc
from harvester.writerprocess import PROCESS_NAME as WRITER_PROCESS_NAME
from tests.support import assert_matches_truth, crawl, start_scrapy_crawl

RECORDS = 150


def children_named(pid: int, name: str) -> list[int]:
    """A process's children that go by ``name`` (what ps shows: harvester.processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == pid and command == name:
            found.append(int(entry.name))
    return found


def test_a_judgement_made_from_the_fetched_page_reads_its_meta() -> None:
    body = (Path(__file__).parent / "fixtures" / "pages").glob("*.html")
    page = next(iter(sorted(body)))
    fetched = FetchedResponse(
        url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x",
        status=200,
        body=page.read_bytes(),
        fetched_at=now_utc(),
        content_type="text/html; charset=utf-8",
        etag='"e1"',
        last_modified="Wed, 01 May 2024 00:00:00 GMT",
        redirect_urls=["https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=1"],
        sitemap_url="https://www.ojp.gov/sitemap.xml",
    )
    judgement = judge_fetched(fetched, keep_page=True)
    assert judgement.record is not None, judgement
    assert judgement.record.requested_url == fetched.redirect_urls[0]
    assert judgement.record.source_url == fetched.url
    assert judgement.record.etag == '"e1"'
    assert judgement.record.sitemap_url == fetched.sitemap_url
    assert judgement.record.fetched_at == fetched.fetched_at
    assert judgement.page is not None
    assert judgement.page.body == fetched.body
    assert judge_fetched(fetched, keep_page=False).page is None


def test_a_batch_sends_back_verdicts_without_bodies_and_fails_only_the_page_that_raised() -> None:
    page = next(iter(sorted((Path(__file__).parent / "fixtures" / "pages").glob("*.html"))))
    good = FetchedResponse(
        url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x",
        status=200,
        body=page.read_bytes(),
        fetched_at=now_utc(),
        content_type="text/html; charset=utf-8",
    )
    bad = FetchedResponse(url="no scheme", status=200, body=b"<html></html>", fetched_at=now_utc())
    first, failed, again = judge_batch([good, bad, good], keep_page=True)
    assert isinstance(failed, RuntimeError)
    assert "judging no scheme raised" in str(failed)
    assert not isinstance(first, Exception)
    assert first.page is not None
    assert first.page.body == b""  # the crawl's process has it: it does not cross back
    judgement = with_body(first, good)
    whole = judge_fetched(good, keep_page=True)
    assert judgement.page == whole.page
    assert judgement.record is not None
    assert judgement.record.raw is not None
    assert judgement.record.raw.fetched_page is judgement.page
    assert judgement.record.content_hash == whole.digest == judgement.digest
    assert not isinstance(again, Exception)
    assert again.record == whole.record


@pytest.mark.parametrize("processes", ["0", "1"])
def test_judging_in_a_process_or_in_the_crawl_stores_the_same(
    processes: str, database_url: str, engine_for: Engine
) -> None:
    with serve_site(records=60, seed=11) as site:
        log = crawl(
            database_url,
            f"sitemap={site.base_url}/sitemap.xml",
            settings={"HARVESTER_JUDGE_PROCESSES": processes},
        )
        assert_matches_truth(engine_for, site)
    assert "Crawl run 1 finished" in log


def test_a_killed_judging_process_loses_no_record(database_url: str, engine_for: Engine) -> None:
    with serve_site(records=RECORDS, seed=12) as site:
        process = start_scrapy_crawl(
            database_url,
            f"sitemap={site.base_url}/sitemap.xml",
            # Slow enough that the crawl is still judging pages when the worker dies.
            settings={
                "HARVESTER_JUDGE_PROCESSES": "1",
                "CONCURRENT_REQUESTS_PER_DOMAIN": "2",
                "DOWNLOAD_DELAY": "0.01",
            },
        )
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and process.poll() is None and time.monotonic() < deadline:
            for worker in children_named(process.pid, JUDGING_PROCESS_NAME):
                os.kill(worker, signal.SIGKILL)
                killed = worker
            time.sleep(0.02)
        _, log = process.communicate(timeout=300)
        assert killed is not None, log[-3000:]
        assert process.returncode == 0, log[-3000:]
        assert_matches_truth(engine_for, site)
    assert "A judging process died" in log
    with Session(engine_for) as session:
        run = session.scalars(select(models.CrawlRun)).one()
    assert run.stats["harvester/judge_pool_broken"] >= 1
    assert run.finish_reason == "finished"


def test_a_killed_writer_process_loses_no_record(database_url: str, engine_for: Engine) -> None:
    """The batch the writer process held, and every batch after it, are written by the crawl's
    own process: every record stored, the death said and counted, the run finished."""
    with serve_site(records=RECORDS, seed=13) as site:
        process = start_scrapy_crawl(
            database_url,
            f"sitemap={site.base_url}/sitemap.xml",
            # Small batches, slowly: the writer dies while the crawl still has batches to write.
            settings={
                "HARVESTER_BATCH_SIZE": "10",
                "CONCURRENT_REQUESTS_PER_DOMAIN": "2",
                "DOWNLOAD_DELAY": "0.01",
            },
        )
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and process.poll() is None and time.monotonic() < deadline:
            for writer in children_named(process.pid, WRITER_PROCESS_NAME):
                try:
                    with Session(engine_for) as session:
                        written = session.scalar(select(func.count()).select_from(models.Record))
                except DBAPIError:  # the crawl has not made its tables yet
                    written = 0
                if written:  # some batches written, more to come
                    os.kill(writer, signal.SIGKILL)
                    killed = writer
            time.sleep(0.02)
        _, log = process.communicate(timeout=300)
        assert killed is not None, log[-3000:]
        assert process.returncode == 0, log[-3000:]
        assert_matches_truth(engine_for, site)
    assert "The writer process died" in log
    with Session(engine_for) as session:
        run = session.scalars(select(models.CrawlRun)).one()
    assert run.stats["harvester/writer_process_died"] == 1
    assert run.finish_reason == "finished"
