"""The `harvester` command: a demo crawl of a local NCJRS-style site, and database chores.

`scrapy crawl ncjrs` is the main entry point; these commands wrap the same spider and
settings (harvester.settings) so that nothing is configured twice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.config import database_url
from harvester.db import create_engine_for

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
    """Run `scrapy crawl ncjrs` in this process; returns the exit status Scrapy would."""
    from scrapy.crawler import CrawlerProcess

    process = CrawlerProcess(project_settings(overrides))
    process.crawl("ncjrs", **spider_arguments)
    process.start()
    return 1 if process.bootstrap_failed else 0


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


# --- Using the data: stats, show, search, export (harvester.stats, .search, .exports) ---------


def _reading_engine() -> Any:
    """An engine on DATABASE_URL, refused with a clear message unless its schema is current."""
    from harvester.db import DatabaseUnavailable, SchemaError, ensure_schema, normalize_url

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


def _echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def stats(as_json: bool) -> None:
    """Records, field coverage and the last crawl runs of the database (DATABASE_URL)."""
    from harvester.stats import collect_stats

    engine = _reading_engine()
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
@click.argument("ncj", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(ncj: int, as_json: bool) -> None:
    """Show one record, with its people, agencies, grants and subjects."""
    from harvester.stats import record_detail

    engine = _reading_engine()
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
    from harvester.search import SearchError
    from harvester.search import search as run_search

    engine = _reading_engine()
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
    type=click.Choice(["ris", "bibtex", "csl-json", "jsonl", "csv"]),
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

    from harvester.exports import export as run_export
    from harvester.search import SearchError

    since_utc = since.replace(tzinfo=UTC) if since is not None else None
    engine = _reading_engine()
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
