"""`python -m harvester.bench crawl`: the end-to-end crawl benchmark on the local site.

For each site size it serves the generated site on 127.0.0.1 (in its own process) and measures,
as whole processes, wall time and peak RSS of:

- end-to-end: `scrapy crawl ncjrs -a sitemap=...` into a new SQLite file;
- bare: the same spider and pages with parse + normalize (NormalizePipeline) but no
  validation, de-duplication, storage or crawl-run bookkeeping;
- naive (smaller sample, rate extrapolated): requests + BeautifulSoup, one ORM commit per record,
  the way a first scraper is usually written.

Targets (issue 3): end-to-end >= 90% of bare records/s and >= 5x naive; peak RSS of the
end-to-end crawl grows < 25% from the smallest to the largest site.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harvester.localsite import serve_site

REPO = Path(__file__).resolve().parents[1]
LOCAL_CRAWL = {
    "AUTOTHROTTLE_ENABLED": "0",
    "DOWNLOAD_DELAY": "0",
    "CONCURRENT_REQUESTS": "32",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "32",
    "LOG_LEVEL": "WARNING",
}
BARE = {
    "ITEM_PIPELINES": json.dumps({"harvester.pipelines.NormalizePipeline": 100}),
    "EXTENSIONS": json.dumps({"harvester.extensions.CrawlSummary": None}),
}


def measure(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds and peak RSS (bytes, the process and its children) of a command."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watched = psutil.Process(process.pid)
    peak = 0
    stderr_chunks: list[str] = []
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss
            rss += sum(child.memory_info().rss for child in watched.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if process.stderr is not None:
        stderr_chunks.append(process.stderr.read())
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{''.join(stderr_chunks)[-3000:]}")
    return elapsed, peak, "".join(stderr_chunks)


def scrapy_command(sitemap: str, settings: dict[str, str]) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "ncjrs", "-a", f"sitemap={sitemap}"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


def count_records(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM records").fetchone()[0])


def run_crawl_bench(sizes: list[int], naive_records: int, repeat: int = 2) -> int:
    results: list[dict[str, Any]] = []
    for records in sizes:
        with serve_site(records=records, seed=1) as site, tempfile.TemporaryDirectory() as tmp:
            sitemap = f"{site.base_url}/sitemap.xml"
            database = Path(tmp) / "bench.sqlite"
            env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
            full_s = bare_s = float("inf")
            full_rss = bare_rss = 0
            for _ in range(repeat):  # interleaved; the best run of each is the least disturbed
                for leftover in database.parent.glob(database.name + "*"):
                    leftover.unlink()  # a new database each run: the file, -wal, -shm, .lock
                seconds, rss, _ = measure(scrapy_command(sitemap, LOCAL_CRAWL), env)
                full_s, full_rss = min(full_s, seconds), max(full_rss, rss)
                stored = count_records(database)
                seconds, rss, _ = measure(scrapy_command(sitemap, {**LOCAL_CRAWL, **BARE}), env)
                bare_s, bare_rss = min(bare_s, seconds), max(bare_rss, rss)
            naive_env = {**env, "DATABASE_URL": f"sqlite:///{Path(tmp) / 'naive.sqlite'}"}
            naive_cmd = [
                sys.executable,
                "-m",
                "harvester.bench_naive",
                sitemap,
                str(min(naive_records, records)),
            ]
            naive_s, _, naive_out = measure(naive_cmd, naive_env)
            naive_done = int(naive_out.strip().splitlines()[-1])
        row = {
            "records": records,
            "stored": stored,
            "end_to_end_rps": stored / full_s,
            "end_to_end_rss_mib": full_rss / 2**20,
            "bare_rps": stored / bare_s,
            "bare_rss_mib": bare_rss / 2**20,
            "naive_rps": naive_done / naive_s,
        }
        results.append(row)
        print(
            f"crawl [{records} records, {stored} stored]: end-to-end {row['end_to_end_rps']:.0f}"
            f" records/s (peak RSS {row['end_to_end_rss_mib']:.0f} MiB); bare spider"
            f" {row['bare_rps']:.0f} records/s ({row['bare_rss_mib']:.0f} MiB); naive"
            f" {row['naive_rps']:.0f} records/s ({naive_done} records)"
            f" -> {row['end_to_end_rps'] / row['bare_rps']:.0%} of bare,"
            f" {row['end_to_end_rps'] / row['naive_rps']:.1f}x naive",
            flush=True,
        )
    if len(results) > 1:
        growth = results[-1]["end_to_end_rss_mib"] / results[0]["end_to_end_rss_mib"] - 1
        print(
            f"peak RSS growth {results[0]['records']} -> {results[-1]['records']} records:"
            f" {growth:+.0%}  (targets: >= 90% of bare, >= 5x naive, RSS growth < 25%)"
        )
    return 0
