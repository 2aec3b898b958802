"""Honest exit status: real `scrapy crawl` runs under faults injected by real means (a trigger
that refuses a record, a write lock held by another connection, a server that stops
answering, a second SIGINT, killed PostgreSQL connections, a database turned read-only)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for, ensure_schema
from harvester.items import FetchedResponse, Record
from harvester.localsite import SiteHandle, serve_site
from harvester.runlock import _PG_CRAWL_LOCK_KEY
from harvester.urls import canonical_url, is_record_url
from tests.conftest import postgres_database
from tests.support import hold_sqlite_write_lock, migrated, scrapy_crawl, start_scrapy_crawl

SLOW = {"DOWNLOAD_DELAY": "0.02", "CONCURRENT_REQUESTS_PER_DOMAIN": "1"}


@pytest.fixture
def site() -> Iterator[SiteHandle]:
    with serve_site(records=300, seed=21, per_sitemap=100) as handle:
        yield handle


def record_numbers(site: SiteHandle) -> list[int]:
    return sorted(t["ncj_number"] for t in site.truth() if t["kind"] == "record")


def schema_for(database_url: str) -> Engine:
    migrated(database_url)
    engine = create_engine_for(database_url)
    ensure_schema(engine, auto_migrate=True)
    return engine


def runs(engine: Engine) -> list[models.CrawlRun]:
    with Session(engine) as session:
        return list(session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id)))


def stored(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(models.Record.ncj_number)).scalars())


def wait_for(condition, timeout: float = 120, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_record_refused_in_the_first_batch_costs_that_record_only(
    site: SiteHandle, database_url: str
) -> None:
    engine = schema_for(database_url)
    numbers = record_numbers(site)
    refused = numbers[3]
    with engine.begin() as connection:
        if database_url.startswith("sqlite"):
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records "
                    f"WHEN NEW.ncj_number = {refused} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.ncj_number = {refused} THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    try:
        # One batch big enough to train the raw page dictionary in, as in the field.
        done = scrapy_crawl(
            database_url,
            f"sitemap={site.base_url}/sitemap.xml",
            settings={"HARVESTER_BATCH_SIZE": "400", "HARVESTER_BATCH_SECONDS": "60"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert stored(engine) == [n for n in numbers if n != refused]
        with Session(engine) as session:
            quarantined = session.scalars(select(models.Quarantine)).all()
            dictionaries = session.scalar(
                select(func.count()).select_from(models.RawPageDictionary)
            )
        rejected = sorted(t["rejection"] for t in site.truth() if t["kind"] == "rejected")
        assert sorted(q.reason for q in quarantined) == sorted([*rejected, "store_error"])
        (refusal,) = [q for q in quarantined if q.reason == "store_error"]
        assert "refused" in refusal.detail
        assert dictionaries == 1
        (run,) = runs(engine)
        assert (run.finish_reason, run.records_new, run.records_quarantined) == (
            "finished",
            len(numbers) - 1,
            len(rejected) + 1,
        )
    finally:
        engine.dispose()


class RaiseAtOnePage:
    """An item pipeline with a bug that strikes one record page (setting TEST_RAISE_AT, the
    URL as requested), on the page as fetched or on its record (TEST_RAISE_ON)."""

    def __init__(self, url: str, on: str) -> None:
        self.url, self.on = url, on

    @classmethod
    def from_crawler(cls, crawler: Any) -> RaiseAtOnePage:
        return cls(crawler.settings.get("TEST_RAISE_AT"), crawler.settings.get("TEST_RAISE_ON"))

    def process_item(self, item: Any) -> Any:
        kind = {FetchedResponse: "page", Record: "record"}.get(type(item))
        if kind == self.on and getattr(item, "requested_url", None) == self.url:
            raise ValueError("a bug in a pipeline")
        return item


@pytest.mark.parametrize(("on", "order"), [("page", 50), ("record", 350)])
def test_a_pipeline_that_raises_on_a_record_page_leaves_a_gap_and_fails_the_run(
    site: SiteHandle, tmp_path: Path, on: str, order: int
) -> None:
    database_url = f"sqlite:///{tmp_path / 'raises.sqlite'}"
    engine = schema_for(database_url)
    numbers = record_numbers(site)
    (struck,) = [t for t in site.truth() if t["kind"] == "record" and t["publication"] is None][5:6]
    pipelines = {
        "harvester.pipelines.JudgePipeline": 100,
        "harvester.pipelines.DedupePipeline": 300,
        "harvester.pipelines.StorePipeline": 400,
        f"{__name__}.RaiseAtOnePage": order,
    }
    settings = {
        "ITEM_PIPELINES": json.dumps(pipelines),
        "TEST_RAISE_AT": struck["url"],
        "TEST_RAISE_ON": on,
    }
    try:
        done = scrapy_crawl(database_url, f"sitemap={site.base_url}/sitemap.xml", settings=settings)
        assert done.returncode == 3, done.stderr[-3000:]
        assert stored(engine) == [n for n in numbers if n != struck["ncj_number"]]
        with Session(engine) as session:
            gap = session.scalars(
                select(models.RecordUrl).where(models.RecordUrl.gap_reason == "store_error")
            ).one()
        assert gap.url == canonical_url(struck["url"])
        assert "ValueError: a bug in a pipeline" in (gap.gap_detail or "")
        (run,) = runs(engine)
        assert run.finish_reason == "finished"
        assert any("1 record page(s) were fetched but not stored" in a for a in run.alerts)
        assert run.errors >= 1

        # Without the bug, the next run retries the gap first and stores the record.
        again = scrapy_crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
        assert again.returncode == 0, again.stderr[-3000:]
        assert stored(engine) == numbers
    finally:
        engine.dispose()


def test_records_fetched_but_not_written_fail_the_run(database_url: str) -> None:
    engine = schema_for(database_url)
    settings = {
        **SLOW,
        "HARVESTER_BATCH_SIZE": "1000",
        "HARVESTER_BATCH_SECONDS": "600",
        "HARVESTER_DB_RETRY_SECONDS": "1",
    }
    try:
        with serve_site(records=40, seed=3) as site:
            expected = len(record_numbers(site))
            if database_url.startswith("sqlite"):
                process = start_scrapy_crawl(
                    database_url, f"sitemap={site.base_url}/sitemap.xml", settings=settings
                )
                wait_for(lambda: len(runs(engine)) == 1, what="the run to start")
                # Held past SQLite's 30 s busy timeout and the retries: the one batch fails.
                holder = hold_sqlite_write_lock(engine.url.database or "", 36)
                _, log = process.communicate(timeout=240)
                holder.join()
                returncode = process.returncode
            else:
                with engine.begin() as connection:
                    connection.execute(
                        text(
                            "CREATE FUNCTION fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                            "'could not serialize' USING ERRCODE = 'serialization_failure'; "
                            "END $$ LANGUAGE plpgsql"
                        )
                    )
                    connection.execute(
                        text(
                            "CREATE TRIGGER fail BEFORE INSERT ON records "
                            "FOR EACH STATEMENT EXECUTE FUNCTION fail()"
                        )
                    )
                done = scrapy_crawl(
                    database_url, f"sitemap={site.base_url}/sitemap.xml", settings=settings
                )
                returncode, log = done.returncode, done.stderr
        assert returncode == 3, log[-3000:]
        assert f"{expected} records were fetched but not written" in log
        assert stored(engine) == []
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(models.Quarantine)) == 0
        (run,) = runs(engine)
        assert run.finish_reason == "finished"
        assert any(f"{expected} records were fetched but not written" in a for a in run.alerts)
        assert run.errors >= expected
    finally:
        engine.dispose()


def test_a_crawl_stopped_by_force_exits_3_and_says_so(site: SiteHandle, database_url: str) -> None:
    engine = schema_for(database_url)
    try:
        process = start_scrapy_crawl(
            database_url, f"sitemap={site.base_url}/sitemap.xml", settings=SLOW
        )
        wait_for(
            lambda: sum(1 for r in site.requests() if is_record_url(site.url(r.target))) >= 30,
            what="30 record pages",
        )
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # Scrapy: "forcing unclean shutdown"
        _, log = process.communicate(timeout=120)
        assert process.returncode == 3, log[-3000:]
        assert "forcing unclean shutdown" in log
        (run,) = runs(engine)
        assert run.finish_reason == "forced_stop"
        assert run.finished_at is not None
        assert any("stopped by force" in alert for alert in run.alerts)
        # What was fetched before the stop and handed to the writer was written.
        assert len(stored(engine)) == run.records_new
    finally:
        engine.dispose()


def test_a_server_that_stops_answering_stops_the_crawl(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:  # accept connections and never answer
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    database_url = f"sqlite:///{tmp_path / 'stalled.sqlite'}"
    started = time.monotonic()
    try:
        done = scrapy_crawl(
            database_url,
            f"sitemap=http://127.0.0.1:{port}/sitemap.xml",
            settings={"DOWNLOAD_TIMEOUT": "600", "HARVESTER_NO_PROGRESS_TIMEOUT": "3"},
            timeout=120,
        )
    finally:
        listener.close()
        for connection in held:
            connection.close()
    assert done.returncode == 3, done.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert "Stopping the crawl (no_progress)" in done.stderr
    engine = create_engine_for(database_url)
    try:
        (run,) = runs(engine)
        assert run.finish_reason == "no_progress"
        assert any("made no progress" in alert for alert in run.alerts)
    finally:
        engine.dispose()


# --- PostgreSQL: the run lock lives on a connection ------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def kill_crawl_connections(engine: Engine) -> int:
    """Terminate every other backend on the crawl's database (the crawl's connections)."""
    with engine.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        connection.commit()
    return int(killed or 0)


def start_beating_crawl(url: str, site: SiteHandle, engine: Engine) -> subprocess.Popen[str]:
    process = start_scrapy_crawl(
        url,
        f"sitemap={site.base_url}/sitemap.xml",
        settings={**SLOW, "HARVESTER_HEARTBEAT_INTERVAL": "0.5"},
    )
    wait_for(
        lambda: any(run.heartbeat_at is not None for run in runs(engine)),
        what="the first heartbeat",
    )
    return process


@pytest.mark.postgres
def test_a_lost_lock_connection_is_taken_again_and_a_second_crawl_refused(
    site: SiteHandle, postgres_url: str
) -> None:
    engine = schema_for(postgres_url)
    try:
        first = start_beating_crawl(postgres_url, site, engine)
        assert kill_crawl_connections(engine) >= 1
        second = scrapy_crawl(postgres_url, f"sitemap={site.base_url}/sitemap.xml")
        _, log = first.communicate(timeout=240)
        assert second.returncode == 1, second.stderr[-3000:]
        assert "Not crawling:" in second.stderr
        assert first.returncode == 0, log[-3000:]
        assert "the lock is taken again" in log
        (run,) = runs(engine)  # the refused crawl started no run
        assert run.finish_reason == "finished"
        assert run.alerts == []
        assert len(stored(engine)) == len(record_numbers(site))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_lock_taken_by_another_stops_the_run(site: SiteHandle, postgres_url: str) -> None:
    engine = schema_for(postgres_url)
    try:
        first = start_beating_crawl(postgres_url, site, engine)
        with engine.connect() as thief:
            # Kill the crawl's connections and queue for the lock at once, before the crawl's
            # next heartbeat can take it again.
            thief.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            thief.execute(text(f"SELECT pg_advisory_lock({_PG_CRAWL_LOCK_KEY})"))
            thief.commit()
            _, log = first.communicate(timeout=240)
        assert first.returncode == 3, log[-3000:]
        assert "Stopping the crawl (lock_lost)" in log
        (run,) = runs(engine)
        assert run.finish_reason == "lock_lost"
        assert any("run lock was lost" in alert for alert in run.alerts)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_database_turned_read_only_stops_the_crawl(site: SiteHandle, postgres_url: str) -> None:
    engine = schema_for(postgres_url)
    try:
        process = start_scrapy_crawl(
            postgres_url,
            f"sitemap={site.base_url}/sitemap.xml",
            settings={**SLOW, "HARVESTER_BATCH_SIZE": "20"},
        )
        wait_for(lambda: len(stored(engine)) >= 20, what="the first batch")
        name = engine.url.database
        with engine.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
            connection.commit()
        kill_crawl_connections(engine)  # its new connections are read-only
        before = stored(engine)
        _, log = process.communicate(timeout=240)
        assert process.returncode == 3, log[-3000:]
        assert "Stopping the crawl (database_error)" in log
        assert "read-only" in log
        assert stored(engine)[: len(before)] == before  # nothing stored is lost
        assert len(stored(engine)) < len(record_numbers(site))
    finally:
        engine.dispose()
