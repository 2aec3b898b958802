"""`python -m benchmarks.crawl`: the end-to-end crawl against a bare spider and a naive script.

Default (speed): on one generated site of --records records (served by nginx when installed,
see benchmarks/site.py) it runs, alternating A B A B (--rounds times), each in a fresh process:

- A, project: `scrapy crawl ncjrs -a sitemap=...` with every feature on (raw pages, record
  versions, search index) and politeness off for the local site, into a new SQLite file;
- B, bare: benchmarks/bare_spider.py, Scrapy's SitemapSpider over the same URLs running the
  project's page judgement (parse, normalize, validate, hash) and storing nothing;

then once the naive script (benchmarks/naive.py: requests + BeautifulSoup + a commit per
record) over the first --naive-records of the same pages (it is slow). Records/s = distinct records
(stored, or judged records by the bare spider) / wall seconds of the whole process, start-up
included. Prints the ratios project/bare (target >= 0.9, aim > 1.0) and project/naive (target >= 4).

--memory: the project crawl of a 5,000-record site and of a --records site (50,000, say),
sampling the RSS of the crawl process and its children every 0.25 s and the stored records
every second. The growth in MiB per 1,000 records (target < 0.1) is that of the larger crawl:
from 5,000 records on, in bins of 5,000, the least-squares slope of each bin's peak RSS and of
its median RSS (not the peak so far, which a longer crawl's rarer coincidences of transient
buffers push up with no memory kept). For information it also prints the small crawl's peak
against the larger crawl's last bin and whole peak (two processes differ by a few MiB anyway),
and the peak so far at checkpoints.

--profile FILE: one project crawl under cProfile (the main thread: Scrapy's reactor), then
the top functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.process import (
    LOCAL_CRAWL,
    MIB,
    Measurement,
    count_rows,
    last_json_line,
    measure,
    scrapy_command,
)
from benchmarks.site import BenchSite, bench_site

TARGET_BARE_RATIO = 0.9
AIM_BARE_RATIO = 1.0
TARGET_NAIVE_RATIO = 4.0
TARGET_RSS_GROWTH = 0.1  # MiB per 1,000 records
MEMORY_BASE_RECORDS = 5000


def fresh_database(directory: Path, name: str) -> Path:
    database = directory / f"{name}.sqlite"
    for leftover in directory.glob(f"{name}.sqlite*"):
        leftover.unlink()  # the file, -wal, -shm, .lock of an earlier run
    return database


def crawl_seconds(database: Path) -> float | None:
    """The crawl itself, as the run recorded it (crawl_runs), without process start-up."""
    try:
        with sqlite3.connect(database) as connection:
            row = connection.execute(
                "SELECT started_at, finished_at FROM crawl_runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return None
    if not row or not row[1]:
        return None
    return (datetime.fromisoformat(row[1]) - datetime.fromisoformat(row[0])).total_seconds()


def project_crawl(
    site: BenchSite, directory: Path, *, watch: bool = False, profile: Path | None = None
) -> dict[str, Any]:
    database = fresh_database(directory, "project")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    counter = (lambda: count_rows(database)) if watch else None
    run = measure(scrapy_command(site.sitemap, LOCAL_CRAWL, profile=profile), env, counter=counter)
    records = count_rows(database)
    return {
        "records": records,
        "seconds": run.seconds,
        "crawl_seconds": crawl_seconds(database),
        "rate": records / run.seconds,
        "peak_rss_mib": run.peak_rss_mib,
        "measurement": run,
    }


def bare_crawl(site: BenchSite) -> dict[str, Any]:
    run = measure([sys.executable, "-m", "benchmarks.bare_spider", site.sitemap], dict(os.environ))
    result = last_json_line(run.stdout)
    records = int(result["records"])
    return {
        **result,
        "seconds": run.seconds,
        "rate": records / run.seconds,
        "peak_rss_mib": run.peak_rss_mib,
    }


def naive_crawl(site: BenchSite, directory: Path, limit: int) -> dict[str, Any]:
    database = fresh_database(directory, "naive")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    command = [sys.executable, "-m", "benchmarks.naive", site.sitemap, str(limit)]
    run = measure(command, env)
    records = int(last_json_line(run.stdout)["records"])
    return {"records": records, "seconds": run.seconds, "rate": records / run.seconds}


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def machine_load() -> str:
    """The cores and their load: the project uses two cores, the bare spider one, so the
    ratio depends on how busy the machine is with other work."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.1f} (1 min), {five:.1f} (5 min)"


def run_speed(records: int, rounds: int, naive_records: int, use_nginx: bool) -> int:
    with bench_site(records, use_nginx=use_nginx) as site, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(
            f"crawl: site of {records} records, {site.pages} pages listed, served by"
            f" {site.server} at {site.base_url}; {machine_load()}",
            flush=True,
        )
        project: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        for round_number in range(1, rounds + 1):
            project.append(project_crawl(site, directory))
            a = project[-1]
            print(
                f"  A{round_number} project: {a['records']} records in {a['seconds']:.1f} s"
                f" (crawl {a['crawl_seconds'] or 0:.1f} s) = {a['rate']:.0f} records/s,"
                f" peak RSS {a['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            bare.append(bare_crawl(site))
            b = bare[-1]
            print(
                f"  B{round_number} bare:    {b['records']} records ({b['pages']} pages judged:"
                f" {b['verdicts']}) in {b['seconds']:.1f} s (crawl {b['crawl_seconds']:.1f} s)"
                f" = {b['rate']:.0f} records/s, peak RSS {b['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            if a["records"] != b["records"]:
                print(
                    f"  WARNING: the project stored {a['records']} records, the bare spider"
                    f" judged {b['records']}: they did not do the same work",
                    flush=True,
                )
        naive = naive_crawl(site, directory, min(naive_records, site.pages))
        print(
            f"  naive:      {naive['records']} records in {naive['seconds']:.1f} s"
            f" = {naive['rate']:.0f} records/s",
            flush=True,
        )
    print(f"  after the runs: {machine_load()}", flush=True)
    project_rate = statistics.mean(a["rate"] for a in project)
    bare_rate = statistics.mean(b["rate"] for b in bare)
    to_bare = project_rate / bare_rate
    to_naive = project_rate / naive["rate"]
    crawl_only = (
        statistics.mean(a["records"] / a["crawl_seconds"] for a in project)
        / (statistics.mean(b["records"] / b["crawl_seconds"] for b in bare))
        if all(a["crawl_seconds"] for a in project)
        else None
    )
    print(
        f"project {project_rate:.0f} records/s, bare spider {bare_rate:.0f} records/s,"
        f" naive {naive['rate']:.0f} records/s (means over {rounds} A/B rounds)"
    )
    print(
        f"project/bare = {to_bare:.2f} (target >= {TARGET_BARE_RATIO}:"
        f" {verdict(to_bare >= TARGET_BARE_RATIO)};"
        f" aim > {AIM_BARE_RATIO}: {verdict(to_bare > AIM_BARE_RATIO)})"
        + (f"; crawl time only, start-up left out: {crawl_only:.2f}" if crawl_only else "")
    )
    paired = [a["rate"] / b["rate"] for a, b in zip(project, bare, strict=True)]
    print(
        f"  project/bare of each A/B round: {', '.join(f'{r:.2f}' for r in paired)}"
        f" (median {statistics.median(paired):.2f})"
    )
    print(
        f"project/naive = {to_naive:.1f} (target >= {TARGET_NAIVE_RATIO:g}:"
        f" {verdict(to_naive >= TARGET_NAIVE_RATIO)})"
    )
    return 0 if to_bare >= TARGET_BARE_RATIO and to_naive >= TARGET_NAIVE_RATIO else 1


def rss_at(checkpoints: list[tuple[int, int]], records: int) -> tuple[int, int] | None:
    """The first (records, peak RSS so far) reading at or past `records`."""
    return next((reading for reading in checkpoints if reading[0] >= records), None)


@dataclass(frozen=True, slots=True)
class RecordBin:
    """The RSS samples taken while the records stored were from `first` up to `last`."""

    first: int
    last: int
    rss: list[int]

    @property
    def middle(self) -> float:
        return (self.first + self.last) / 2

    @property
    def peak(self) -> int:
        return max(self.rss)

    @property
    def median(self) -> float:
        return statistics.median(self.rss)


def record_bins(samples: list[tuple[int, int]], start: int, width: int) -> list[RecordBin]:
    """The samples from `start` records on, in bins of `width` records; the last bin runs to
    the end (the close included) and takes in a remainder shorter than half a bin."""
    if not samples:
        return []
    end = max(counted for counted, _ in samples)
    edges = list(range(start, end, width))
    if len(edges) > 1 and end - edges[-1] < width // 2:
        edges.pop()
    bins = []
    for index, first in enumerate(edges):
        last = edges[index + 1] if index + 1 < len(edges) else end + 1
        rss = [value for counted, value in samples if first <= counted < last]
        if rss:
            bins.append(RecordBin(first, min(last, end), rss))
    return bins


def slope_per_thousand(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (records, MiB) points, in MiB per 1,000 records."""
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope * 1000


def process_peaks_at(
    checkpoints: list[tuple[int, dict[str, int]]], records: int
) -> dict[str, int] | None:
    """Each process's peak RSS so far at the first reading at or past `records`."""
    return next((peaks for counted, peaks in checkpoints if counted >= records), None)


def process_peaks_text(peaks: dict[str, int]) -> str:
    """Each process's own peak: which of them grows ("child" is the judging process, or
    multiprocessing's helper, by size)."""
    return " (" + ", ".join(f"{name} {rss / MIB:.1f}" for name, rss in peaks.items()) + ")"


def run_memory(records: int, use_nginx: bool) -> int:
    sizes = sorted({min(MEMORY_BASE_RECORDS, records), records})
    peaks: dict[int, tuple[int, float]] = {}  # site size -> (records stored, peak RSS MiB)
    largest: Measurement | None = None
    for size in sizes:
        with bench_site(size, use_nginx=use_nginx) as site, tempfile.TemporaryDirectory() as tmp:
            print(f"memory: site of {size} records, served by {site.server}", flush=True)
            crawl = project_crawl(site, Path(tmp), watch=True)
        peaks[size] = (crawl["records"], crawl["peak_rss_mib"])
        largest = crawl["measurement"]
        print(
            f"  {crawl['records']} records in {crawl['seconds']:.0f} s"
            f" ({crawl['rate']:.0f} records/s), peak RSS {crawl['peak_rss_mib']:.1f} MiB"
            + process_peaks_text(crawl["measurement"].process_checkpoints[-1][1]),
            flush=True,
        )
    assert largest is not None
    marks = [m for m in (1000, 2000, 5000, 10_000, 20_000, 30_000, 40_000, 50_000) if m < records]
    for mark in [*marks, records]:
        reading = rss_at(largest.checkpoints, mark)
        if reading is not None:
            print(
                f"  at {reading[0]:>6} records stored: peak RSS so far {reading[1] / MIB:.1f} MiB"
                + process_peaks_text(process_peaks_at(largest.process_checkpoints, mark) or {})
            )
    if len(sizes) < 2:
        print(f"no verdict: the growth needs --records over {MEMORY_BASE_RECORDS}")
        return 1
    bin_records = MEMORY_BASE_RECORDS
    small_records, small_rss = peaks[sizes[0]]
    large_records, large_peak = peaks[sizes[1]]
    # From 5,000 records on, bins of 5,000: each bin's peak RSS (the target's measure) and its
    # median (the level between spikes). A slope fitted over every bin, not the peak so far: a
    # peak so far can only rise, and a longer crawl gives a rare coincidence of transient
    # buffers more chances to set it, with no memory kept (docs/performance.md, "How memory
    # growth is measured").
    bins = record_bins(largest.samples, bin_records, bin_records)
    for part in bins:
        print(
            f"  records {part.first:>6}-{part.last:<6} peak RSS {part.peak / MIB:.1f} MiB,"
            f" median {part.median / MIB:.1f} MiB ({len(part.rss)} samples)"
        )
    if large_records < 0.9 * records or len(bins) < 3:
        print(
            f"no verdict: {large_records} records stored, {len(bins)} bins of {bin_records} records"
            f" (the growth needs at least 90% of the {records} records and 3 bins)"
        )
        return 1
    peak_slope = slope_per_thousand([(b.middle, b.peak / MIB) for b in bins])
    median_slope = slope_per_thousand([(b.middle, b.median / MIB) for b in bins])
    met = peak_slope < TARGET_RSS_GROWTH and median_slope < TARGET_RSS_GROWTH
    print(
        f"growth within the {large_records}-record crawl, from {bin_records} records on"
        f" (least-squares slope over {len(bins)} bins): peak RSS {peak_slope:+.3f},"
        f" median RSS {median_slope:+.3f} MiB per 1,000 records"
        f" (target < {TARGET_RSS_GROWTH}: {verdict(met)})"
    )
    # For information: another process (two crawl processes differ by several MiB at the same
    # point of a crawl), and the whole crawls' peaks.
    if large_records > small_records:
        span = (large_records - small_records) / 1000
        print(
            f"for information: peak RSS of the {small_records}-record crawl {small_rss:.1f} MiB,"
            f" of the {large_records}-record crawl's last bin {bins[-1].peak / MIB:.1f} MiB"
            f" ({(bins[-1].peak / MIB - small_rss) / span:+.3f} MiB per 1,000 records),"
            f" of the whole {large_records}-record crawl {large_peak:.1f} MiB"
            f" ({(large_peak - small_rss) / span:+.3f})"
        )
    return 0 if met else 1


def run_profile(records: int, output: Path, use_nginx: bool, top: int = 30) -> int:
    with bench_site(records, use_nginx=use_nginx) as site, tempfile.TemporaryDirectory() as tmp:
        crawl = project_crawl(site, Path(tmp), profile=output.resolve())
    print(
        f"profile: {crawl['records']} records in {crawl['seconds']:.1f} s under cProfile"
        f" (main thread: Scrapy's reactor) -> {output}"
    )
    stats = pstats.Stats(str(output))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crawl", description=__doc__)
    parser.add_argument("--records", type=int, default=5000, help="records on the site")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (project, bare)")
    parser.add_argument(
        "--naive-records", type=int, default=2000, help="record pages the naive script fetches"
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS growth (see above)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile one crawl into FILE")
    parser.add_argument(
        "--no-nginx", action="store_true", help="serve with the local site's server"
    )
    args = parser.parse_args(argv)
    use_nginx = not args.no_nginx
    if args.memory:
        return run_memory(args.records, use_nginx)
    if args.profile is not None:
        return run_profile(args.records, args.profile, use_nginx)
    return run_speed(args.records, args.rounds, args.naive_records, use_nginx)


if __name__ == "__main__":
    sys.exit(main())
