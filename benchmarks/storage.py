"""`python -m benchmarks.storage`: what record history and raw pages cost.

On the local site (served in its own process) it crawls N records with `scrapy crawl ncjrs`
into a new database and reports:

- raw pages: stored bytes per record (compressed bodies plus the zstd dictionary), against the
  bytes fetched, and the table's size on disk;
- record versions: bytes per record of the first sighting (version 1 holds the whole record)
  and bytes per version of a one-field change;
- re-parse: wall time of `harvester reparse` over every stored page with the parser unchanged
  (no version written) and with a parser that changes one field (publication types in upper
  case), with the site stopped: no request can be made;
- with --compare-off, the same crawl with HARVESTER_STORE_RAW_PAGES=False: wall time, peak RSS
  and database size, to see what keeping pages costs the crawl itself.

SQLite by default; --postgres-server URL runs the same on a new database on that server
(dropped afterwards). On-disk figures come from SQLite's dbstat table or PostgreSQL's
pg_total_relation_size (TOAST and indexes included).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scrapy.http import TextResponse
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from benchmarks.process import LOCAL_CRAWL, measure, scrapy_command
from harvester.db import create_engine_for, ensure_schema, normalize_url
from harvester.items import NonRecordPage, RawRecord
from harvester.localsite import serve_site
from harvester.parsing import PARSER_VERSION, parse_page
from harvester.reparse import reparse

TABLES = ("records", "record_versions", "raw_pages", "raw_page_dictionaries")


def upper_case_publication_types(response: TextResponse) -> RawRecord | NonRecordPage:
    """A parser change that alters one field of some records."""
    page = parse_page(response)
    if isinstance(page, RawRecord) and "publication_type" in page.fields:
        page.fields["publication_type"] = [v.upper() for v in page.fields["publication_type"]]
    return page


@contextmanager
def new_database(directory: Path, name: str, postgres_server: str | None) -> Iterator[str]:
    if postgres_server is None:
        yield f"sqlite:///{directory / f'{name}.sqlite'}"
        return
    database = f"harvester_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        normalize_url(postgres_server), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    try:
        url = normalize_url(postgres_server).set(database=database)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()


def table_bytes(engine: Engine) -> dict[str, int]:
    """Bytes on disk per table, its indexes (and TOAST, on PostgreSQL) included."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return {
                table: int(connection.scalar(text(f"SELECT pg_total_relation_size('{table}')")))
                for table in TABLES
            }
        database = engine.url.database
    assert database is not None
    with sqlite3.connect(database) as raw:
        try:
            rows = raw.execute(
                "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s"
                " JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
            ).fetchall()
        except sqlite3.OperationalError:  # built without dbstat
            return {}
    sizes = dict(rows)
    return {table: int(sizes.get(table, 0)) for table in TABLES}


def payload(engine: Engine) -> dict[str, Any]:
    """Counts and stored bytes of the history tables (column values only)."""
    queries = {
        "records": "SELECT COUNT(*) FROM records",
        "pages": "SELECT COUNT(*) FROM raw_pages",
        "page_bytes": "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM raw_pages",
        "fetched_bytes": "SELECT COALESCE(SUM(size), 0) FROM raw_pages",
        "dictionary_bytes": (
            "SELECT COALESCE(SUM(LENGTH(dictionary)), 0) FROM raw_page_dictionaries"
        ),
        "versions": "SELECT COUNT(*) FROM record_versions",
        "first_version_bytes": (
            "SELECT COALESCE(SUM(LENGTH(CAST(changes AS TEXT)) + LENGTH(changed_fields)), 0)"
            " FROM record_versions WHERE version = 1"
        ),
        "later_versions": "SELECT COUNT(*) FROM record_versions WHERE version > 1",
        "later_version_bytes": (
            "SELECT COALESCE(SUM(LENGTH(CAST(changes AS TEXT)) + LENGTH(changed_fields)), 0)"
            " FROM record_versions WHERE version > 1"
        ),
    }
    with engine.connect() as connection:
        return {name: int(connection.scalar(text(sql)) or 0) for name, sql in queries.items()}


def crawl(url: str, sitemap: str, settings: dict[str, str]) -> tuple[float, int]:
    if url.startswith("postgresql"):
        engine = create_engine_for(url)
        ensure_schema(engine, auto_migrate=True)
        engine.dispose()
    env = {**os.environ, "DATABASE_URL": url}
    run = measure(scrapy_command(sitemap, {**LOCAL_CRAWL, **settings}), env)
    return run.seconds, run.peak_rss


def database_bytes(url: str, engine: Engine) -> int:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return int(connection.scalar(text("SELECT pg_database_size(current_database())")))
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def run_storage_bench(records: int, compare_off: bool, postgres_server: str | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with new_database(directory, "pages", postgres_server) as url:
            with serve_site(records=records, seed=1) as site:
                sitemap = f"{site.base_url}/sitemap.xml"
                crawl_s, crawl_rss = crawl(url, sitemap, {})
                off = None
                if compare_off:
                    with new_database(directory, "nopages", postgres_server) as off_url:
                        off_s, off_rss = crawl(
                            off_url, sitemap, {"HARVESTER_STORE_RAW_PAGES": "False"}
                        )
                        off_engine = create_engine_for(off_url)
                        off = (off_s, off_rss, database_bytes(off_url, off_engine))
                        off_engine.dispose()
            # The site is stopped: a re-parse that tried to fetch anything would fail.
            engine = create_engine_for(url)
            try:
                crawled = payload(engine)
                disk = table_bytes(engine)
                size = database_bytes(url, engine)
                cpu = time.process_time()
                same = reparse(engine)
                cpu_seconds = [time.process_time() - cpu]
                cpu = time.process_time()
                changed = reparse(
                    engine, parse=upper_case_publication_types, parser_version=PARSER_VERSION + 1
                )
                cpu_seconds.append(time.process_time() - cpu)
                after = payload(engine)
                disk_after = table_bytes(engine)
            finally:
                engine.dispose()
    report(records, crawled, disk, size, crawl_s, crawl_rss, same, changed, after, disk_after, off)
    print(f"  re-parse CPU time (both threads): {cpu_seconds[0]:.1f} s and {cpu_seconds[1]:.1f} s")
    return 0


def report(
    records: int,
    crawled: dict[str, Any],
    disk: dict[str, int],
    size: int,
    crawl_s: float,
    crawl_rss: int,
    same: Any,
    changed: Any,
    after: dict[str, Any],
    disk_after: dict[str, int],
    off: tuple[float, int, int] | None,
) -> None:
    stored = crawled["records"]
    page_bytes = crawled["page_bytes"] + crawled["dictionary_bytes"]
    print(f"storage [{records} records on the site, {stored} stored, {crawled['pages']} raw pages]")
    print(
        f"  crawl: {crawl_s:.1f} s ({stored / crawl_s:.0f} records/s), peak RSS"
        f" {crawl_rss / 2**20:.0f} MiB, database {size / 2**20:.1f} MiB"
    )
    print(
        f"  raw pages: {page_bytes / stored:,.0f} B/record stored"
        f" ({crawled['page_bytes'] / crawled['pages']:,.0f} B/page + a"
        f" {crawled['dictionary_bytes'] / 1024:.0f} KiB dictionary) of"
        f" {crawled['fetched_bytes'] / crawled['pages']:,.0f} B/page fetched"
        f" ({crawled['fetched_bytes'] / max(1, page_bytes):.1f}x)"
        + (f"; on disk {disk['raw_pages'] / stored:,.0f} B/record" if disk else "")
    )
    later = after["later_versions"]
    later_on_disk = (disk_after.get("record_versions", 0) - disk.get("record_versions", 0)) / max(
        1, later
    )
    print(
        f"  versions: first sighting {crawled['first_version_bytes'] / stored:,.0f} B/record"
        + (f" (on disk {disk['record_versions'] / stored:,.0f} B/record)" if disk else "")
        + (
            f"; a one-field change {after['later_version_bytes'] / after['later_versions']:,.0f}"
            f" B/version ({after['later_versions']} versions)"
            if after["later_versions"]
            else ""
        )
        + (f", on disk {later_on_disk:,.0f} B/version" if disk and later else "")
    )
    print(
        f"  re-parse, no request: unchanged parser {same.seconds:.1f} s"
        f" ({same.pages / same.seconds:.0f} pages/s, {same.versions} versions);"
        f" one field changed {changed.seconds:.1f} s ({changed.pages / changed.seconds:.0f}"
        f" pages/s, {changed.versions} versions)"
    )
    if off is not None:
        off_s, off_rss, off_size = off
        print(
            f"  raw pages off: crawl {off_s:.1f} s ({stored / off_s:.0f} records/s), peak RSS"
            f" {off_rss / 2**20:.0f} MiB, database {off_size / 2**20:.1f} MiB"
            f" -> pages cost {crawl_s / off_s - 1:+.0%} crawl time,"
            f" {crawl_rss / off_rss - 1:+.0%} peak RSS,"
            f" {(size - off_size) / stored:,.0f} B/record on disk"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--compare-off", action="store_true", help="also crawl with raw pages off")
    parser.add_argument("--postgres-server", help="run on a new database on this server")
    args = parser.parse_args(argv)
    return run_storage_bench(args.records, args.compare_off, args.postgres_server)


if __name__ == "__main__":
    sys.exit(main())
