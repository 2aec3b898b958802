"""Politeness across workers (harvester/sharedrate.py): several `scrapy crawl` processes share
one request schedule per host through a real Redis-compatible server.

Each process crawls the same record pages of one local site (tests/faultserver.py) as a
distributed run of its own, in a PostgreSQL database of its own (distributed runs need
PostgreSQL; the rate is per host, whatever the run), and says who it is in its User-Agent; the
site's request log (arrival times, in the test process) is what the fleet did to the host.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path

import pytest
import redis
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from harvester.localsite import Site
from harvester.sharedrate import SharedRateMiddleware, host_key, turn_seconds
from tests.conftest import postgres_database, redis_server
from tests.faultserver import FaultServer, LoggedRequest, fault_server
from tests.support import start_scrapy_crawl

pytestmark = pytest.mark.postgres

DELAY = 0.1  # DOWNLOAD_DELAY of the test crawls: the fleet's cap is 10 requests/s


def test_a_turn_holds_the_host_for_the_largest_delay() -> None:
    assert turn_seconds(0.5, None, 0.0) == 0.5
    assert turn_seconds(0.5, 2.0, 1.0) == 2.0  # robots.txt Crawl-delay
    assert turn_seconds(0.5, 0.2, 3.0) == 3.0  # this worker's AutoThrottle delay
    assert host_key(Request("http://127.0.0.1:8080/x")) == "ncjrs:host:127.0.0.1:8080:"
    assert host_key(Request("https://www.ojp.gov/ncjrs")) == "ncjrs:host:www.ojp.gov:443:"


@pytest.fixture
def site() -> Iterator[FaultServer]:
    with fault_server(Site(records=30, seed=5, per_sitemap=1000)) as server:
        yield server


def record_urls(site: FaultServer, count: int) -> str:
    truth = [t for t in site.truth() if t["kind"] == "record"][:count]
    return "url=" + ",".join(t["url"] for t in truth)


@pytest.fixture
def databases() -> Iterator[list[str]]:
    """Three new PostgreSQL databases, one per worker (migrated by the crawl itself)."""
    with ExitStack() as stack:
        yield [stack.enter_context(postgres_database()) for _ in range(3)]


def start_workers(
    site: FaultServer,
    databases: list[str],
    redis_url: str,
    count: int,
    pages: int,
    **settings: str,
) -> list[subprocess.Popen[str]]:
    return [
        start_scrapy_crawl(
            databases[n],
            record_urls(site, pages),
            settings={
                "HARVESTER_REDIS_URL": redis_url,
                "USER_AGENT": f"worker-{n}",
                "DOWNLOAD_DELAY": str(DELAY),
                "CONCURRENT_REQUESTS_PER_DOMAIN": "2",
                # Pages are judged in the crawl process: three judge processes more on two
                # cores would only add scheduling noise to the times measured.
                "HARVESTER_JUDGE_PROCESSES": "0",
                "HARVESTER_AUTO_MIGRATE": "1",
                "HARVESTER_HEARTBEAT_INTERVAL": "1",
                **settings,
            },
        )
        for n in range(count)
    ]


def finish(workers: list[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str]]:
    results = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=timeout)
        results.append((worker.returncode, stderr))
    return results


def by_worker(log: list[LoggedRequest]) -> dict[str, list[LoggedRequest]]:
    workers: dict[str, list[LoggedRequest]] = {}
    for entry in log:
        workers.setdefault(entry.headers.get("user-agent", ""), []).append(entry)
    return workers


def busiest_second(log: list[LoggedRequest]) -> int:
    times = sorted(r.time for r in log)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_three_workers_share_one_rate_per_host(
    site: FaultServer, databases: list[str], redis_url: str
) -> None:
    # Held at the start (a published pause) until all three wait, so that however slowly each
    # process starts, they crawl at the same time: each alone would go at the cap.
    client = redis.Redis.from_url(redis_url)
    client.set(f"ncjrs:host:127.0.0.1:{site.port}:paused_until", time.time() + 300)
    workers = start_workers(site, databases, redis_url, count=3, pages=25)
    # Each has joined its run, then coordinates it within a heartbeat and asks for turns.
    wait_for(lambda: len(client.keys("ncjrs:run:*:run")) == 3)
    time.sleep(3)
    client.delete(f"ncjrs:host:127.0.0.1:{site.port}:paused_until")
    client.close()
    for code, stderr in finish(workers):
        assert code == 0, stderr[-3000:]
    log = site.requests
    assert len(log) == 3 * 26  # robots.txt and 25 pages each
    cap = round(1 / DELAY)
    gaps = sorted(b.time - a.time for a, b in pairwise(sorted(log, key=lambda r: r.time)))
    assert busiest_second(log) <= cap + 1, gaps[:10]
    overlap = min(w[-1].time for w in by_worker(log).values()) - max(
        w[0].time for w in by_worker(log).values()
    )
    # Turns go in the order asked for: all three crawl from the first second to the last, where
    # a limiter that hands a free turn to whoever asks first left one of them waiting 2-5 s
    # (0.6-3 s with all three crawling). They start within the 1 s step a paused request waits.
    assert overlap > 4.0
    assert gaps[len(gaps) // 2] >= DELAY * 0.95, gaps  # the median: one request per turn


def test_a_retry_after_given_to_one_worker_pauses_them_all(
    site: FaultServer, databases: list[str], redis_url: str
) -> None:
    workers = start_workers(site, databases, redis_url, count=2, pages=30)
    wait_for(lambda: len(by_worker(site.requests)) == 2 and len(site.requests) >= 6)
    asked = {r.path for r in site.requests}
    path = next(
        p
        for t in site.truth()
        if t["kind"] == "record" and (p := t["url"][len(site.base_url) :]) not in asked
    )
    site.fault(path, status=503, body=b"busy", headers={"Retry-After": "2"}, times=1)
    results = finish(workers)
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    log = site.requests
    (busy,) = [r for r in log if r.status == 503]
    # A request already on its way may land just after the 503; then nothing until it is due.
    early = [r for r in log if busy.time + 0.3 < r.time < busy.time + 2.0 - 0.1]
    assert early == [], early
    for requests in by_worker(log).values():  # both were crawling before and after it
        assert any(r.time < busy.time for r in requests)
        assert any(r.time > busy.time + 2.0 for r in requests)
    assert sum("Retry-After: 2): pausing requests" in stderr for _, stderr in results) == 1


def test_a_crawl_delay_in_robots_txt_slows_the_fleet(
    site: FaultServer, databases: list[str], redis_url: str
) -> None:
    site.robots("User-agent: *\nCrawl-delay: 0.3\n")
    workers = start_workers(site, databases, redis_url, count=2, pages=8)
    for code, stderr in finish(workers):
        assert code == 0, stderr[-3000:]
    pages = sorted((r for r in site.requests if r.path != "/robots.txt"), key=lambda r: r.time)
    assert len(pages) == 16
    assert len(by_worker(pages)) == 2
    gaps = [b.time - a.time for a, b in pairwise(pages)]
    assert min(gaps) >= 0.3 * 0.9, gaps
    client = redis.Redis.from_url(redis_url)
    assert float(client.get(f"ncjrs:host:127.0.0.1:{site.port}:crawl_delay") or 0) == 0.3
    client.close()


def test_no_request_leaves_while_redis_is_down_and_the_crawl_resumes(
    site: FaultServer, databases: list[str], tmp_path: Path
) -> None:
    # Restarted with its data (append-only file, as operations.md configures it): a Redis
    # that comes back empty ends the run instead (test_distributed's queue_lost test).
    with redis_server(data_dir=tmp_path / "redis") as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        (worker,) = start_workers(site, databases, url, count=1, pages=30)
        wait_for(lambda: len(site.requests) >= 6)
    stopped = time.monotonic()
    time.sleep(2.0)
    during = [r for r in site.requests if r.time > stopped + 0.3]
    with redis_server(port=port, data_dir=tmp_path / "redis"):
        ((code, stderr),) = finish([worker])
    assert during == [], during
    assert code == 0, stderr[-3000:]
    assert len(site.requests) == 31  # every page, once: nothing was dropped
    assert stderr.count("does not answer") == 1, stderr[-3000:]
    assert "answers again after" in stderr


def test_a_crawl_whose_redis_stays_down_ends_with_a_reason(
    site: FaultServer, databases: list[str]
) -> None:
    with redis_server() as url:
        (worker,) = start_workers(
            site, databases, url, count=1, pages=30, HARVESTER_NO_PROGRESS_TIMEOUT="2"
        )
        wait_for(lambda: len(site.requests) >= 6)
    stopped = time.monotonic()
    ((code, stderr),) = finish([worker])
    assert [r for r in site.requests if r.time > stopped + 0.3] == []
    assert code == 3, stderr[-3000:]
    assert "Stopping the crawl (no_progress)" in stderr
    assert len(site.requests) < 31


def test_a_run_without_redis_leaves_the_shared_limit_out_without_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain run is the usual case, not something to warn of (Scrapy logs a warning for a
    component disabled with a message)."""
    monkeypatch.delenv("HARVESTER_REDIS_URL", raising=False)
    crawler = get_crawler(settings_dict={"HARVESTER_REDIS_URL": ""})
    with pytest.raises(NotConfigured) as refused:
        SharedRateMiddleware.from_crawler(crawler)
    assert refused.value.args == ()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
