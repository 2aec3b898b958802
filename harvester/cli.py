"""The `harvester` command: a demo crawl of a local NCJRS-style site, and database chores.

`scrapy crawl ncjrs` is the main entry point; these commands wrap the same spider and
settings (harvester.settings) so that nothing is configured twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harvester import models
from harvester import settings as defaults
from harvester.config import database_url
from harvester.db import create_engine_for
from harvester.exports import FORMATS

# A local site is ours to load: no throttling, many requests at once. robots.txt still counts.
LOCAL_SITE_SETTINGS: dict[str, Any] = {
    "AUTOTHROTTLE_ENABLED": False,
    "DOWNLOAD_DELAY": 0,
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
}


def project_settings(overrides: dict[str, Any] | None = None) -> Any:
    """harvester.settings, wherever the command runs from (no scrapy.cfg needed)."""
    from scrapy.utils.project import get_project_settings

    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "harvester.settings")
    settings = get_project_settings()
    if overrides:
        settings.setdict(overrides, priority="cmdline")
    return settings


def run_crawl(spider_arguments: dict[str, str], overrides: dict[str, Any] | None = None) -> int:
    """Run `scrapy crawl ncjrs` in this process; returns the exit status `scrapy crawl` would
    (harvester/commands/crawl.py: 1 could not start, 2 failed a post-run check)."""
    from scrapy.crawler import CrawlerProcess

    from harvester.commands.crawl import EXIT_CHECKS_FAILED, failed_checks

    process = CrawlerProcess(project_settings(overrides))
    crawler = process.create_crawler("ncjrs")
    process.crawl(crawler, **spider_arguments)
    process.start()
    if process.bootstrap_failed:
        return 1
    return EXIT_CHECKS_FAILED if failed_checks(crawler) else 0


@click.group()
def main() -> None:
    """Harvest NCJRS Virtual Library records into a relational database."""


@main.command()
@click.option("--records", default=300, show_default=True, help="Records on the local site.")
@click.option("--seed", default=1, show_default=True, help="Seed of the generated site.")
@click.option(
    "--database",
    default="ncjrs-demo.sqlite",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to crawl into.",
)
def demo(records: int, seed: int, database: Path) -> None:
    """Serve a generated NCJRS-style site on 127.0.0.1, crawl it into SQLite, summarise."""
    from harvester.localsite import serve_site

    url = f"sqlite:///{database}"
    with serve_site(records=records, seed=seed) as site:
        click.echo(f"Serving {records} generated records at {site.base_url}")
        status = run_crawl(
            {"sitemap": f"{site.base_url}/robots.txt"},
            {**LOCAL_SITE_SETTINGS, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
        )
    if status:
        sys.exit(status)
    _print_summary(url)


def _print_summary(url: str) -> None:
    engine = create_engine_for(url)
    try:
        with Session(engine) as connection:

            def count(table: Any) -> int:
                return int(connection.scalar(select(func.count()).select_from(table)) or 0)

            last = connection.scalars(
                select(models.CrawlRun).order_by(models.CrawlRun.id.desc()).limit(1)
            ).first()
            click.echo(f"Database: {url}")
            click.echo(
                f"  records: {count(models.Record)}  contributors: {count(models.Contributor)}"
                f"  agencies: {count(models.Agency)}  quarantined: {count(models.Quarantine)}"
            )
            if last is not None:
                click.echo(
                    f"  last run #{last.id} ({last.finish_reason}): {last.pages_fetched} pages,"
                    f" {last.records_new} new, {last.records_updated} updated,"
                    f" {last.records_unchanged} unchanged, {last.records_quarantined} quarantined,"
                    f" {last.errors} errors"
                )
            sample = connection.execute(
                select(models.Record.ncj_number, models.Record.title)
                .order_by(models.Record.ncj_number)
                .limit(3)
            ).all()
            for ncj_number, title in sample:
                click.echo(f"  NCJ {ncj_number}: {title[:90]}")
            path = url.removeprefix("sqlite:///")
            click.echo(
                f'Query it: sqlite3 {path} "SELECT ncj_number, title, published_year'
                ' FROM records ORDER BY ncj_number LIMIT 10;"  (tables: docs/schema.md)'
            )
    finally:
        engine.dispose()


@main.command()
def migrate() -> None:
    """Bring the database (DATABASE_URL) to the current schema: `alembic upgrade head`."""
    from alembic import command

    from harvester.db import alembic_config

    command.upgrade(alembic_config(), "head")
    click.echo(f"{database_url()}: schema is current")


@main.command()
@click.option("--records", default=1000, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(records: int, seed: int, port: int) -> None:
    """Serve the generated local site on 127.0.0.1 until interrupted (Ctrl-C)."""
    import time

    from harvester.localsite import serve_site

    with serve_site(records=records, seed=seed, port=port) as site:
        click.echo(f"Serving {records} records at {site.base_url} (robots.txt, sitemap.xml)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@main.command(context_settings={"show_default": True})
@click.option(
    "--sitemap", help="A sitemap, sitemap index or robots.txt URL (default: the live site)."
)
@click.option("--listing", help="A listing or search-results page; its next pages follow.")
@click.option("--url", "urls", multiple=True, help="A record page URL (repeatable).")
@click.option("--urls-file", type=click.Path(exists=True, dir_okay=False), help="URLs, one a line.")
@click.option("--ncj", "ncj_numbers", multiple=True, help="An NCJ number (repeatable).")
@click.option("--ncj-file", type=click.Path(exists=True, dir_okay=False), help="NCJ numbers.")
@click.option("--full", is_flag=True, help="Re-check every page, not only new and changed ones.")
@click.option("--since", metavar="YYYY-MM-DD", help="Re-check sitemap entries modified since.")
@click.option("--max-requests", type=int, help="Stop after this many requests.")
@click.option(
    "-s", "--set", "settings", multiple=True, metavar="NAME=VALUE", help="A Scrapy setting."
)
def crawl(
    sitemap: str | None,
    listing: str | None,
    urls: tuple[str, ...],
    urls_file: str | None,
    ncj_numbers: tuple[str, ...],
    ncj_file: str | None,
    full: bool,
    since: str | None,
    max_requests: int | None,
    settings: tuple[str, ...],
) -> None:
    """`scrapy crawl ncjrs` by another name: same spider, settings and exit status."""
    arguments = {
        "sitemap": sitemap,
        "listing": listing,
        "url": ",".join(urls) or None,
        "urls_file": urls_file,
        "ncj": ",".join(ncj_numbers) or None,
        "ncj_file": ncj_file,
        "full": "1" if full else None,
        "since": since,
        "max_requests": str(max_requests) if max_requests else None,
    }
    overrides: dict[str, Any] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep:
            raise click.BadParameter(f"{setting!r} is not NAME=VALUE", param_hint="-s")
        overrides[name.strip()] = value
    status = run_crawl({k: v for k, v in arguments.items() if v is not None}, overrides)
    sys.exit(status)


@main.command()
@click.argument("urls", nargs=-1, required=True)
@click.option(
    "--dir",
    "directory",
    default="tests/fixtures/pages",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the fixtures go.",
)
@click.option("--name", help="Fixture name (one URL only); default: from the URL.")
@click.option("-s", "--set", "settings", multiple=True, metavar="NAME=VALUE")
def capture(
    urls: tuple[str, ...], directory: Path, name: str | None, settings: tuple[str, ...]
) -> None:
    """Save pages as test fixtures (NAME.html) with what the parser reads today (NAME.json)."""
    from scrapy.crawler import CrawlerProcess

    from harvester.capture import CaptureSpider, fixture_name

    if name and len(urls) > 1:
        raise click.BadParameter("--name needs exactly one URL")
    names = [name] if name else [fixture_name(url) for url in urls]
    overrides: dict[str, Any] = {
        # Capturing stores nothing: no database pipelines, no crawl_runs row.
        "ITEM_PIPELINES": {},
        "EXTENSIONS": {},
        "LOG_LEVEL": "WARNING",
    }
    for setting in settings:
        key, _, value = setting.partition("=")
        overrides[key.strip()] = value
    process = CrawlerProcess(project_settings(overrides))
    crawler = process.create_crawler(CaptureSpider)
    process.crawl(crawler, urls=list(urls), directory=str(directory), names=names)
    process.start()
    spider = crawler.spider
    assert isinstance(spider, CaptureSpider)
    for path in spider.saved:
        golden = json.loads(path.read_text(encoding="utf-8"))
        click.echo(f"{path.with_suffix('.html')}: {golden['kind']}, layout {golden['layout']}")
    for failure in spider.failed:
        click.echo(f"not captured: {failure}", err=True)
    if spider.saved:
        click.echo("Review the .json files (docs/golden-format.md), then commit both files.")
    if spider.failed or not spider.saved:
        sys.exit(1)


def _current_database() -> Any:
    """An engine on DATABASE_URL, refused with a clear message unless its schema is current."""
    from harvester.db import ensure_schema, normalize_url
    from harvester.errors import DatabaseUnavailable, SchemaError

    url = normalize_url(database_url())
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if sqlite_file and not Path(str(url.database)).is_file():
        raise click.ClickException(
            f"no database at {url.database}: crawl into it first, or set DATABASE_URL"
        )
    engine = create_engine_for(url)
    try:
        ensure_schema(engine, auto_migrate=False)
    except (DatabaseUnavailable, SchemaError) as error:
        engine.dispose()
        raise click.ClickException(str(error)) from error
    return engine


# --- Record history, raw pages, re-parse, quarantine replay (harvester.history, rawpages,
# reparse, quarantine) -------------------------------------------------------------------------


_jobs_option = click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Processes that parse pages; 1: this one, no pool.  [default: the cores]",
)


def _jobs(jobs: int | None) -> int:
    from harvester.reparse import default_jobs

    return jobs if jobs is not None else default_jobs()


def _judging_run(what: str, run: Callable[[Any], Any]) -> None:
    """A re-parse or replay on the current database, its summary printed. One that stops
    early says so in one line and exits non-zero, with no traceback: nothing written is lost."""
    from harvester.reparse import JudgingProcessDied

    engine = _current_database()
    try:
        click.echo(run(engine).summary())
    except JudgingProcessDied as error:
        raise click.ClickException(f"{what} stopped: {error}") from error
    except KeyboardInterrupt:
        click.echo(
            f"{what} interrupted: what was parsed is written; run it again to finish.", err=True
        )
        sys.exit(130)
    finally:
        engine.dispose()


@main.command()
@click.option(
    "--batch-size",
    default=defaults.HARVESTER_BATCH_SIZE,
    show_default=True,
    help="Records per transaction.",
)
@_jobs_option
def reparse(batch_size: int, jobs: int | None) -> None:
    """Re-derive every record from its stored page, with no request; version what changed."""
    from harvester.reparse import reparse as reparse_all

    _judging_run(
        "Re-parse", lambda engine: reparse_all(engine, batch_size=batch_size, jobs=_jobs(jobs))
    )


@main.command()
@click.argument("ncj_number", type=int)
def history(ncj_number: int) -> None:
    """The versions of one record: when, by which run, which fields changed."""
    from harvester.history import record_history

    engine = _current_database()
    try:
        with engine.connect() as connection:
            versions = record_history(connection, ncj_number)
    finally:
        engine.dispose()
    if not versions:
        raise click.ClickException(f"NCJ {ncj_number} has no stored versions")
    for version in versions:
        click.echo(
            f"version {version['version']}  {version['observed_at']:%Y-%m-%d %H:%M:%S}  "
            f"run {version['crawl_run_id']}  parser {version['parser_version']}  "
            f"{version['source_url']}"
        )
        if version["version"] == 1:
            click.echo(f"  first sighting: {version['content'].get('title')!r}")
            continue
        for name, change in version["changes"].items():
            click.echo(f"  {name}: {_short(change.get('old'))} -> {_short(change.get('new'))}")


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@main.group()
def quarantine() -> None:
    """Pages that looked like records but could not be trusted."""


@quarantine.command("list")
@click.option("--reason", help="Only rows quarantined for this reason.")
@click.option("--all", "include_resolved", is_flag=True, help="Resolved rows too.")
@click.option("--limit", default=100, show_default=True)
def quarantine_list(reason: str | None, include_resolved: bool, limit: int) -> None:
    """Open quarantine rows, newest first, and a count by reason."""
    from harvester.quarantine import count_open, list_rows

    engine = _current_database()
    try:
        rows = list_rows(engine, reason=reason, include_resolved=include_resolved, limit=limit)
        counts = count_open(engine, reason)
    finally:
        engine.dispose()
    for row in rows:
        state = f"resolved {row['resolution']}" if row["resolved_at"] else "open"
        page = "page" if row["raw_page_sha256"] else "no page"
        click.echo(
            f"#{row['id']}  run {row['crawl_run_id']}  {row['reason']}  {state}  {page}  "
            f"{row['url']}\n    {row['detail']}"
        )
    summary = ", ".join(f"{count} {name}" for name, count in counts.items()) or "none"
    click.echo(f"Open: {summary}")


@quarantine.command("replay")
@click.option("--reason", help="Only rows quarantined for this reason.")
@_jobs_option
def quarantine_replay(reason: str | None, jobs: int | None) -> None:
    """Validate open quarantine rows again from their stored pages; store what passes now."""
    from harvester.quarantine import replay

    _judging_run(
        "Quarantine replay", lambda engine: replay(engine, reason=reason, jobs=_jobs(jobs))
    )


# --- Using the data: stats, show, search, export (harvester.stats, .search, .exports) ---------


def _echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def stats(as_json: bool) -> None:
    """Records, field coverage and the last crawl runs of the database (DATABASE_URL)."""
    from harvester.stats import collect_stats

    engine = _current_database()
    try:
        with engine.connect() as connection:
            summary = collect_stats(connection)
    finally:
        engine.dispose()
    if as_json:
        _echo_json(summary)
        return
    counts = summary["counts"]
    click.echo(
        f"records: {counts['records']}  contributors: {counts['contributors']}"
        f"  agencies: {counts['agencies']}  quarantined: {counts['quarantine']}"
        f"  crawl runs: {counts['crawl_runs']}"
    )
    first, last = summary["published_years"]
    click.echo(f"published: {first}-{last}  last change: {summary['last_changed_at']}")
    click.echo("layouts: " + ", ".join(f"{k} {v}" for k, v in summary["layouts"].items()))
    click.echo("field coverage:")
    for label, value in summary["coverage"].items():
        click.echo(f"  {label:<20} {value['records']:>9}  {value['share']:7.1%}")
    if summary["quarantine_reasons"]:
        reasons = summary["quarantine_reasons"].items()
        click.echo("quarantine: " + ", ".join(f"{k} {v}" for k, v in reasons))
    click.echo("last runs:" if summary["last_runs"] else "last runs: none")
    for run in summary["last_runs"]:
        click.echo(
            f"  #{run['id']} {run['started_at']} ({run['finish_reason']}): {run['pages']} pages,"
            f" {run['new']} new, {run['updated']} updated, {run['unchanged']} unchanged,"
            f" {run['quarantined']} quarantined, {run['errors']} errors"
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=0), help="Sitemaps listed."
)
def coverage(as_json: bool, top: int) -> None:
    """What the database holds and what it is missing, and why (harvester.coverage)."""
    from harvester.coverage import coverage_report, format_report
    from harvester.db import display_url

    engine = _current_database()
    try:
        # One snapshot for every figure, so that they add up while a crawl writes: SQLite's
        # read transaction is one already; PostgreSQL's default isolation is per statement.
        options = (
            {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
        )
        with engine.connect().execution_options(**options) as connection:
            report = coverage_report(connection, top_sitemaps=top)
    finally:
        engine.dispose()
    if as_json:
        _echo_json(report.as_dict())
        return
    click.echo(format_report(report, display_url(engine.url)))


@main.command()
@click.argument("ncj", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(ncj: int, as_json: bool) -> None:
    """Show one record, with its people, agencies, grants and subjects."""
    from harvester.stats import record_detail

    engine = _current_database()
    try:
        with engine.connect() as connection:
            record = record_detail(connection, ncj)
    finally:
        engine.dispose()
    if record is None:
        raise click.ClickException(f"no record NCJ {ncj} in the database")
    if as_json:
        _echo_json(record)
        return
    for key, value in record.items():
        if value in (None, [], ""):
            continue
        if isinstance(value, list):
            value = "; ".join(v["name"] if isinstance(v, dict) else str(v) for v in value)
        click.echo(f"{key:>20}: {value}")


@main.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def search(words: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Full-text search of titles, people, annotations and abstracts (docs/schema.md).

    Every word must occur; `word*` matches words starting with `word`. Results: every word in
    the title first, then in the title or people, then anywhere; newest NCJ number first.
    """
    from harvester.errors import SearchError
    from harvester.search import search as run_search

    engine = _current_database()
    try:
        with engine.connect() as connection:
            hits = run_search(connection, " ".join(words), limit)
    except SearchError as error:
        raise click.ClickException(str(error)) from error
    finally:
        engine.dispose()
    if as_json:
        _echo_json([hit.as_dict() for hit in hits])
        return
    for hit in hits:
        year = hit.year if hit.year is not None else "n.d."
        authors = f" — {hit.authors}" if hit.authors else ""
        click.echo(f"NCJ {hit.ncj_number}  [{year}]  {hit.title}{authors}")
    if not hits:
        click.echo("no records match", err=True)


@main.command()
@click.option(
    "--format",
    "export_format",
    type=click.Choice(FORMATS),
    required=True,
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only records added or changed on or after this UTC date (last_changed_at).",
)
@click.option("--query", help="Only records matching these search words (as `search`).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
def export(export_format: str, since: Any, query: str | None, output: Path | None) -> None:
    """Export records as RIS, BibTeX, CSL-JSON, JSON Lines or CSV (docs/crosswalk.md)."""
    import contextlib
    import io
    from datetime import UTC

    from harvester.errors import SearchError
    from harvester.exports import export as run_export

    since_utc = since.replace(tzinfo=UTC) if since is not None else None
    engine = _current_database()
    try:
        with contextlib.ExitStack() as stack:
            if output is None:
                out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
                stack.callback(out.detach)
                stack.callback(out.flush)
            else:
                out = stack.enter_context(output.open("w", encoding="utf-8", newline=""))
            connection = stack.enter_context(engine.connect())
            count = run_export(connection, export_format, out, since=since_utc, query=query)
    except SearchError as error:
        raise click.ClickException(str(error)) from error
    finally:
        engine.dispose()
    click.echo(f"{count} records exported as {export_format}", err=True)


# --- Browse in a web page: datasette, read-only (harvester.browse) ---------------------------


class _BrowseUsageError(click.ClickException):
    exit_code = 2  # a usage error, said in one line (no usage banner)


@main.command()
@click.option(
    "--database",
    metavar="PATH_OR_URL",
    help="SQLite file or sqlite:/// URL.  [default: DATABASE_URL, else ncjrs.sqlite]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
def browse(database: str | None, host: str, port: int) -> None:
    """Browse the database read-only in a web page (datasette): search, facets, queries."""
    from harvester import browse as browsing

    try:
        path, mode = browsing.prepare(database or database_url())
        server = browsing.listening_socket(host, port)
    except browsing.BrowseUsageError as error:
        raise _BrowseUsageError(str(error)) from error
    except browsing.BrowseUnavailable as error:
        raise click.ClickException(str(error)) from error
    bound_host, bound_port = server.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    base = f"http://{shown}:{bound_port}/{browsing.DATABASE_NAME}"
    click.echo(f"Browsing {path} read-only at {base}/records (Ctrl-C stops)")
    try:
        browsing.serve(path, mode, server)
    finally:
        server.close()


if __name__ == "__main__":  # python -m harvester.cli, where the console script is not on PATH
    main()
