"""`python -m benchmarks.incremental`: what a scheduled re-run costs.

On one local site (default 20,000 records) and one SQLite file, three `scrapy crawl` processes:

1. the full crawl of a new database;
2. a re-run with nothing changed on the site;
3. a re-run after 1% of the records changed (new text, newer sitemap lastmod).

Reported: wall time of each process (start-up included) and of the crawl itself (the
``crawl_runs`` row), the record pages each re-run requested according to the server's log, and
whether run 3 fetched exactly the changed pages. Targets (issue 4): run 2 takes <= 2% of run 1
and fetches no record page body; run 3 fetches exactly the changed pages.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from benchmarks.process import LOCAL_CRAWL, measure, scrapy_command
from harvester.localsite import SiteHandle, serve_site
from harvester.urls import is_record_url


def _last_run_seconds(database: Path) -> float:
    with sqlite3.connect(database) as connection:
        started, finished = connection.execute(
            "SELECT started_at, finished_at FROM crawl_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def _record_requests(site: SiteHandle) -> list[tuple[str, int]]:
    return [(r.target, r.status) for r in site.requests() if is_record_url(site.url(r.target))]


def run_incremental_bench(records: int, changed_share: float, seed: int = 1) -> int:
    with serve_site(records=records, seed=seed) as site, tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.sqlite"
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
        command = scrapy_command(f"{site.base_url}/sitemap.xml", LOCAL_CRAWL)

        full = measure(command, env)
        full_s, full_rss = full.seconds, full.peak_rss
        full_crawl_s = _last_run_seconds(database)
        full_requests = len(_record_requests(site))
        site.clear_requests()

        same_s = measure(command, env).seconds
        same_crawl_s = _last_run_seconds(database)
        same = _record_requests(site)
        bodies = sum(1 for _, status in same if status == 200)

        truth = [t for t in site.truth() if t["kind"] == "record"]
        changed = random.Random(seed).sample(truth, max(1, round(len(truth) * changed_share)))
        site.revise([t["index"] for t in changed])
        expected = {t["url"] for t in changed} | {
            t["publication"]["url"] for t in changed if t["publication"]
        }
        site.clear_requests()
        delta_s = measure(command, env).seconds
        delta_crawl_s = _last_run_seconds(database)
        delta = _record_requests(site)
        fetched = {site.url(target) for target, _ in delta}

    print(
        f"incremental [{records} records]: full crawl {full_s:.1f} s "
        f"({full_crawl_s:.1f} s crawling, {full_requests} record pages, "
        f"peak RSS {full_rss / 2**20:.0f} MiB)"
    )
    print(
        f"  nothing changed: {same_s:.2f} s = {same_s / full_s:.2%} of the full crawl "
        f"(crawling {same_crawl_s:.2f} s = {same_crawl_s / full_crawl_s:.2%}); "
        f"{len(same)} record-page requests, {bodies} bodies"
    )
    exact = fetched == expected and len(delta) == len(expected)
    print(
        f"  {len(changed)} records changed ({changed_share:.0%}): {delta_s:.2f} s "
        f"(crawling {delta_crawl_s:.2f} s); fetched "
        f"{len(delta)} record pages for {len(expected)} changed pages: "
        f"{'exactly those' if exact else 'NOT exactly those'}"
    )
    print("  targets: nothing changed <= 2% of the full crawl and 0 bodies; changed: exactly those")
    return 0 if exact and bodies == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental", description=__doc__)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of records")
    args = parser.parse_args(argv)
    return run_incremental_bench(args.records, args.changed)


if __name__ == "__main__":
    sys.exit(main())
