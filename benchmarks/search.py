"""Search and export benchmarks: `python -m benchmarks search|export`.

The database is filled from the local site generator's truth (``benchmarks.generated_records``)
through ``store.write_batch`` directly, not by a crawl, so that 200,000 records take minutes.
A database that already holds the requested number of records is reused, so ``search`` and
``export`` can run one after the other on one fill.

search: the time of ``harvester.search.search`` (ranked query + summaries of the top 20) for a
        fixed mix of queries, on a warm connection, in this process; median and 95th
        percentile over all runs.
export: each format written to a file by ``harvester export`` in its own subprocess; wall
        time and the subprocess's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from benchmarks.generated_records import generated_records
from harvester.db import create_engine_for, display_url, ensure_schema
from harvester.normalize import content_hash
from harvester.store import RECORDS, now_utc, write_batch

DEFAULT_RECORDS = 200_000
SEED = 1
BATCH = 1000
# Words of the generated site: title code words, places, journal and agency names, people,
# abstract phrases; single words, pairs, a whole title, names, prefixes, a number.
SEARCH_QUERIES = (
    "police",
    "juvenile",
    "forensic evidence",
    "rural violence",
    "tribal court",
    "recidivism",
    "restitution needs",
    "probation officers",
    "hickman",
    "sickmund",
    "matthew walsh",
    "rehab*",
    "cyber*",
    "rand corporation",
    "federal bureau investigation",
    "indian country",
    "maritime smuggling networks",
    "chicago gang",
    "2004",
    "ballistics laboratory",
)
REPEATS = 5
TARGET_SEARCH_MS = 50.0
TARGET_EXPORT_RSS_MB = 200.0


def _batches(count: int, seed: int) -> Iterator[list[Any]]:
    records = generated_records(count, seed)
    while batch := list(islice(records, BATCH)):
        yield batch


def stored_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(RECORDS)) or 0)


def fill(engine: Engine, count: int, seed: int = SEED) -> dict[str, Any]:
    """Write the generated site's records (search index triggers included) unless there."""
    ensure_schema(engine, auto_migrate=True)
    stored = stored_count(engine)
    if stored:
        return {"stored": stored, "written": 0, "seconds": 0.0}
    started = time.perf_counter()
    written = 0
    for batch in _batches(count, seed):
        with engine.begin() as connection:
            write_batch(
                connection,
                [(r, content_hash(r)) for r in batch],
                [],
                now=now_utc(),
                run_id=None,
                counted=set(),
            )
        written += len(batch)
        if written % 20_000 < BATCH:
            print(f"  {written} records written", file=sys.stderr, flush=True)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    return {"stored": stored_count(engine), "written": written, "seconds": round(seconds, 1)}


def run_search_bench(engine: Engine, repeats: int = REPEATS) -> dict[str, Any]:
    from harvester.search import search

    per_query: dict[str, dict[str, Any]] = {}
    timings: list[float] = []
    with engine.connect() as connection:
        for query in SEARCH_QUERIES:  # warm the caches once
            search(connection, query)
        for query in SEARCH_QUERIES:
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                hits = search(connection, query)
                runs.append((time.perf_counter() - started) * 1000)
            timings += runs
            per_query[query] = {"median_ms": round(statistics.median(runs), 1), "hits": len(hits)}
    ordered = sorted(timings)
    return {
        "median_ms": round(statistics.median(timings), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
        "target_ms": TARGET_SEARCH_MS,
        "queries": per_query,
    }


EXPORT_FORMATS = ("ris", "bibtex", "csl-json", "jsonl", "csv")


# Run in the export subprocess. Its peak RSS is read from /proc/self/status (VmHWM, the peak of
# this process's own memory) rather than ru_maxrss, which Linux carries over from the parent
# across fork and exec, so a child would never report less than the benchmark process itself.
_EXPORT_CHILD = """
import json, resource, sys, time
from harvester.cli import main

def peak_rss_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

started = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_kib": peak_rss_kib()}),
          file=sys.stderr)
"""


def export_in_subprocess(url: str, export_format: str, output: Path) -> dict[str, Any]:
    """`harvester export` in a fresh interpreter; its own peak RSS, measured by itself."""
    command = [sys.executable, "-c", _EXPORT_CHILD, "export", "--format", export_format]
    command += ["--output", str(output)]
    done = subprocess.run(
        command,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"export {export_format} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stderr.strip().splitlines()[-1])
    return {
        "seconds": round(measured["seconds"], 1),
        "peak_rss_mb": round(measured["peak_rss_kib"] / 1024, 1),
        "size_mb": round(output.stat().st_size / 2**20, 1),
    }


def run_export_bench(url: str, formats: tuple[str, ...] = EXPORT_FORMATS) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="harvester-export-") as directory:
        for export_format in formats:
            output = Path(directory) / f"export.{export_format}"
            results[export_format] = export_in_subprocess(url, export_format, output)
            output.unlink()
            print(f"  {export_format}: {results[export_format]}", file=sys.stderr, flush=True)
    return {"formats": results, "target_peak_rss_mb": TARGET_EXPORT_RSS_MB}


def run(command: str, url: str, records: int, repeats: int = REPEATS) -> int:
    engine = create_engine_for(url)
    try:
        print(f"filling {display_url(url)} with {records} records", file=sys.stderr, flush=True)
        report: dict[str, Any] = {"database": display_url(url), "fill": fill(engine, records)}
        report["fill"]["peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        if command == "search":
            report["search"] = run_search_bench(engine, repeats)
        else:
            report["export"] = run_export_bench(url)
    finally:
        engine.dispose()
    print(json.dumps(report, indent=2))
    if command == "search":
        return 0 if report["search"]["median_ms"] <= TARGET_SEARCH_MS else 1
    worst = max(r["peak_rss_mb"] for r in report["export"]["formats"].values())
    return 0 if worst < TARGET_EXPORT_RSS_MB else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__)
    parser.add_argument("command", choices=("search", "export"))
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument(
        "--database-url",
        default="sqlite:///bench-search.sqlite",
        help="filled with --records generated records unless it already holds records",
    )
    args = parser.parse_args(argv)
    return run(args.command, args.database_url, args.records)


if __name__ == "__main__":
    sys.exit(main())
