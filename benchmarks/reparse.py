"""`python -m benchmarks reparse`: re-parse pages/s with one job and with more, A/B alternating.

A SQLite database of N record pages of the generated local site (full site chrome, 30-45 KiB,
stored as a crawl stores them: zstd with a trained dictionary) is built once, by judging each
page and writing it with the crawl's record writer. Then each round copies it afresh and runs,
in a process of its own, the re-parse after a parser fix: a new parser version (every record
is rewritten with it) whose output changes one field of some records (publication types in
upper case: those get a version), once per ``--jobs`` value, in alternating order from one
round to the next so that every value sees the same machine; ``--jobs 1`` runs twice, as
it is and pinned to one CPU (``os.sched_setaffinity``): unpinned, its writer thread's SQLite
work (which releases the GIL) overlaps the judging on the second core, so it uses about 1.1
cores, and only the pinned run is the one-core rate the speed-up is measured against. Both
ratios are printed. It reports pages/s of the
re-parse itself (pool start-up included, interpreter start-up not) and of the whole process,
the median over the rounds, the speed-up over the first ``--jobs`` value, the CPU time per
page summed over the processes (what the pool costs in work, whatever else the machine does),
and the load average, since a shared machine's other work takes cores from the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scrapy.http import HtmlResponse, Request

from benchmarks.pages import site_pages
from benchmarks.process import REPO, last_json_line, measure
from benchmarks.storage import upper_case_publication_types
from harvester.db import create_engine_for, ensure_schema
from harvester.judge import judge_response
from harvester.parsing import PARSER_VERSION
from harvester.reparse import reparse
from harvester.store import RecordWriter


def site_responses(count: int, seed: int) -> Iterator[HtmlResponse]:
    """The record pages of a generated site as the downloader builds them, one at a time."""
    for url, body in site_pages(count, seed):
        yield HtmlResponse(
            url=url,
            body=body,
            headers={"Content-Type": "text/html; charset=utf-8"},
            request=Request(url),
        )


def build_database(path: Path, records: int, seed: int) -> int:
    """A database of ``records`` pages as a crawl stores them; returns the records stored."""
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        ensure_schema(engine, auto_migrate=True)
        writer = RecordWriter(engine, run_id=None, batch_size=500, batch_seconds=float("inf"))
        for response in site_responses(records, seed):
            judgement = judge_response(response)
            if judgement.verdict != "record":
                continue
            assert judgement.record is not None
            judgement.record.raw = None
            if writer.add(judgement.record, judgement.page, judgement.digest):
                writer.flush_blocking()
        counts = writer.close()
    finally:
        engine.dispose()
    return counts.new


def cpu_seconds() -> float:
    """CPU time of this process and its descendants: the judging processes are forked from
    this process (children that ended, once the pool is shut down), or children of a fork
    server that lives as long as this process and reaps them (so they count in its children's
    time)."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children():
        times = child.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return float(total)


def run_one(database: Path, jobs: int, pinned: bool) -> dict[str, Any]:
    """One re-parse after a parser fix, in this process (the benchmark's child); ``pinned``:
    on one CPU, the processes it starts included (they inherit the affinity)."""
    if pinned:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cpu_before = cpu_seconds()
    engine = create_engine_for(f"sqlite:///{database}")
    try:
        report = reparse(
            engine,
            parse=upper_case_publication_types,
            parser_version=PARSER_VERSION + 1,
            jobs=jobs,
        )
    finally:
        engine.dispose()
    return {
        "jobs": jobs,
        "pinned": pinned,
        "pages": report.pages,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "versions": report.versions,
        "seconds": report.seconds,
        # the judging processes' start-up (imports) included, this process's not
        "cpu_seconds": cpu_seconds() - cpu_before,
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


Variant = tuple[int, bool]  # (jobs, pinned to one CPU)


def variant_name(variant: Variant) -> str:
    jobs, pinned = variant
    return f"--jobs {jobs}{' pinned' if pinned else ''}"


def variants_of(jobs_values: list[int]) -> list[Variant]:
    """The runs of a round: ``--jobs 1`` pinned to one CPU first, then each value as given."""
    pinned: list[Variant] = [(1, True)] if 1 in jobs_values else []
    return pinned + [(jobs, False) for jobs in jobs_values]


def compare(records: int, jobs_values: list[int], rounds: int, seed: int) -> dict[str, Any]:
    variants = variants_of(jobs_values)
    with tempfile.TemporaryDirectory(prefix="bench-reparse-") as directory:
        built = Path(directory) / "built.sqlite"
        started = time.perf_counter()
        stored = build_database(built, records, seed)
        print(f"reparse: {stored} records stored in {time.perf_counter() - started:.0f} s")
        print(f"reparse: load average before: {load()}")
        runs: dict[Variant, list[dict[str, Any]]] = {variant: [] for variant in variants}
        for round_number in range(rounds):
            order = variants if round_number % 2 == 0 else list(reversed(variants))
            for variant in order:
                jobs, pinned = variant
                copy = Path(directory) / f"round{round_number}-jobs{jobs}-{pinned}.sqlite"
                shutil.copyfile(built, copy)
                command = [sys.executable, "-m", "benchmarks.reparse", "--run-one", str(copy)]
                command += ["--jobs", str(jobs), *(["--pinned"] if pinned else [])]
                run = measure(command, dict(os.environ))
                result = last_json_line(run.stdout)
                result["process_seconds"] = run.seconds
                result["peak_rss_mib"] = round(run.peak_rss_mib, 1)
                runs[variant].append(result)
                copy.unlink()
                print(
                    f"reparse: round {round_number + 1} {variant_name(variant)}: "
                    f"{result['pages'] / result['seconds']:,.0f} pages/s "
                    f"({result['seconds']:.1f} s; CPU "
                    f"{result['cpu_seconds'] / result['pages'] * 1000:.2f} ms/page over all "
                    f"processes; whole process {run.seconds:.1f} s, "
                    f"peak RSS {run.peak_rss_mib:.0f} MiB; load {load()})"
                )
        print(f"reparse: load average after: {load()}")
    outcomes = {(r["pages"], r["updated"], r["versions"]) for rs in runs.values() for r in rs}
    if len(outcomes) != 1:  # the same database, parser and pages must give the same writes
        raise RuntimeError(f"the re-parses wrote different things: {runs}")

    def median_rate(variant: Variant, seconds: str = "seconds") -> float:
        return float(statistics.median(r["pages"] / r[seconds] for r in runs[variant]))

    # The speed-up is against the one-core rate (--jobs 1 pinned) and, as before, against
    # --jobs 1 as it runs (about 1.1 cores); without --jobs 1, against the first value.
    bases = [v for v in ((1, True), (1, False)) if v in runs] or [variants[0]]
    summary: dict[str, Any] = {"records": stored, "rounds": rounds, "jobs": {}}
    for variant, results in runs.items():
        rate = median_rate(variant)
        process_rate = median_rate(variant, "process_seconds")
        cpu = statistics.median(r["cpu_seconds"] / r["pages"] * 1000 for r in results)
        # the round the machine's other work took least from: closest to an idle machine
        best = max(r["pages"] / r["seconds"] for r in results)
        speed_ups = {variant_name(b): round(rate / median_rate(b), 2) for b in bases}
        process_speed_ups = {
            variant_name(b): round(process_rate / median_rate(b, "process_seconds"), 2)
            for b in bases
        }
        summary["jobs"][variant_name(variant)] = {
            "pages_per_s": round(rate),
            "best_pages_per_s": round(best),
            "cpu_ms_per_page": round(cpu, 3),
            "process_pages_per_s": round(process_rate),
            "speed_up": speed_ups,
            "process_speed_up": process_speed_ups,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "versions": results[0]["versions"],
        }
        against = "; ".join(
            f"{speed_ups[name]:.2f}x {name} (whole process {process_speed_ups[name]:.2f}x)"
            for name in speed_ups
        )
        print(
            f"reparse {variant_name(variant)}: median {rate:,.0f} pages/s, {against}; "
            f"best round {best:,.0f} pages/s; CPU {cpu:.2f} ms/page, all processes"
        )
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks reparse", description=__doc__)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--pinned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one is not None:
        print(json.dumps(run_one(args.run_one, args.jobs[0], args.pinned)))
        return 0
    os.chdir(REPO)
    compare(args.records, args.jobs, args.rounds, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
