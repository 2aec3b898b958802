"""The `harvester` command: a demo crawl of a local NCJRS-style site, and database chores.

`scrapy crawl ncjrs` is the main entry point; these commands wrap the same spider and
settings (harvester.settings) so that nothing is configured twice.

Every error a user can cause is one line on standard error ("Error: ...") and an exit status:
2 for a usage error (an option or argument that cannot be used), 1 for anything that keeps
the command from doing its work (a database that cannot be opened, a busy port, ...); a crawl
exits as `scrapy crawl` does (harvester/commands/crawl.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session

from harvester import models
from harvester import settings as defaults
from harvester.config import database_url, sqlite_url
from harvester.db import create_engine_for, display_url
from harvester.errors import BadArgument, DatabaseUnavailable, SchemaError
from harvester.exports import FORMATS
from spiders.arguments import SpiderArguments

F = TypeVar("F", bound=Callable[..., Any])

# A local site is ours to load: no throttling, many requests at once. robots.txt still counts.
LOCAL_SITE_SETTINGS: dict[str, Any] = {
    "AUTOTHROTTLE_ENABLED": False,
    "DOWNLOAD_DELAY": 0,
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
}
# The host name the demo crawls its local site under, whatever port the site got: the stored
# URLs are the same on every run, so a rerun finds every record unchanged. The crawler reaches
# it through the local site, as through an HTTP proxy (it answers absolute-form requests and
# writes its links with the Host it was asked for). .localhost names never leave the machine.
DEMO_SITE = "http://ncjrs-demo.localhost"


class HarvesterGroup(click.Group):
    """Click's group, with every error as one line: click's usage errors without the usage
    banner (the command's --help is named instead), the harvester's own errors and a
    database that fails under a command without a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            _fail(_one_line(error), error.exit_code)
        except (DatabaseUnavailable, SchemaError) as error:
            _fail(f"Error: {_squeeze(str(error))}", 1)
        except DatabaseError as error:
            if not _database_failure(error):
                raise  # a statement the database refused: a bug, with its traceback
            _fail(f"Error: the database failed: {_first_line(error.orig or error)}", 1)
        except click.Abort:
            _fail("Aborted!", 1)
        except BrokenPipeError:
            # The reader went away (`| head`): nothing more to write, nothing to report.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)


def _database_failure(error: DatabaseError) -> bool:
    """The database failed under the command (locked, gone, full, read-only, a damaged file:
    OperationalError, or the driver's plain DatabaseError), rather than refused a statement."""
    return isinstance(error, OperationalError) or type(error) is DatabaseError


def _fail(message: str, status: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(status)


def _one_line(error: click.ClickException) -> str:
    message = f"Error: {_squeeze(error.format_message())}"
    if isinstance(error, click.UsageError) and error.ctx is not None:
        return f"{message} (see {error.ctx.command_path} --help)"
    return message


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class UsageError(click.ClickException):
    """A usage error said in one line, without the --help hint (exit status 2)."""

    exit_code = 2


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
    (harvester/commands/crawl.py: 1 could not start, 3 failed a post-run check). Raises
    BadArgument for a spider argument the spider cannot use."""
    from scrapy.crawler import AsyncCrawlerProcess, CrawlerProcess

    from harvester.commands.crawl import check_settings, check_spider_arguments, run_spider

    settings = project_settings(overrides)
    check_settings(settings)
    check_spider_arguments(settings, "ncjrs", spider_arguments)
    # The process `scrapy crawl` would run the crawl in (scrapy.cmdline.execute).
    asyncio_process = (
        settings["TWISTED_REACTOR"] == "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
        and not settings.getbool("FORCE_CRAWLER_PROCESS")
    ) or not settings.getbool("TWISTED_REACTOR_ENABLED")
    process = AsyncCrawlerProcess(settings) if asyncio_process else CrawlerProcess(settings)
    return run_spider(process, process.create_crawler("ncjrs"), spider_arguments)


def _setting_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-s NAME=VALUE`` options as settings."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="-s")
        settings[name.strip()] = value
    return settings


def database_option(function: F) -> F:
    """``--database PATH_OR_URL``: the database a command works on (harvester.config)."""
    return click.option(
        "--database",
        metavar="PATH_OR_URL",
        help="SQLite file or database URL.  [default: DATABASE_URL, else ncjrs.sqlite]",
    )(function)


def invocation() -> str:
    """How to run `harvester` again, as the user can type it here: `harvester` when that is
    the one on PATH, else the script as it was called, else through the interpreter."""
    script = sys.argv[0] if sys.argv else ""
    if Path(script).name == "harvester":
        on_path = shutil.which("harvester")
        if on_path and Path(on_path).resolve() == Path(script).resolve():
            return "harvester"
        return shlex.quote(script)
    return f"{shlex.quote(sys.executable)} -m harvester.cli"


@click.group(cls=HarvesterGroup)
def main() -> None:
    """Harvest NCJRS Virtual Library records into a relational database."""


@main.command()
@click.option(
    "--records",
    default=300,
    show_default=True,
    type=click.IntRange(1, 250_000),
    help="Records on the local site.",
)
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

    url = sqlite_url(database)
    _engine(url).dispose()  # a database that cannot be opened says so before the site starts
    with serve_site(records=records, seed=seed) as site:
        click.echo(f"Serving {records} generated records at {site.base_url} as {DEMO_SITE}")
        with _proxied_through(site.base_url):
            status = run_crawl(
                {"sitemap": f"{DEMO_SITE}/robots.txt"},
                {**LOCAL_SITE_SETTINGS, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
            )
    if status:
        sys.exit(status)
    _print_summary(url, database)


@contextlib.contextmanager
def _proxied_through(proxy: str) -> Iterator[None]:
    """Every http request of the crawl goes to ``proxy`` (Scrapy's HttpProxyMiddleware reads
    the environment when the crawl starts); no_proxy set by the user must not exempt it."""
    saved = {name: os.environ.get(name) for name in ("http_proxy", "no_proxy", "NO_PROXY")}
    os.environ["http_proxy"] = proxy
    os.environ.pop("no_proxy", None)
    os.environ.pop("NO_PROXY", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _print_summary(url: str, database: Path) -> None:
    from harvester.search import search

    engine = create_engine_for(url, read_only=True)
    try:
        with Session(engine) as connection:

            def count(table: Any) -> int:
                return int(connection.scalar(select(func.count()).select_from(table)) or 0)

            last = connection.scalars(
                select(models.CrawlRun).order_by(models.CrawlRun.id.desc()).limit(1)
            ).first()
            click.echo(f"Database: {display_url(url)}")
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
            # A word to search for that finds something: a common one, else (a tiny site)
            # the longest word of the first title.
            candidates = ["police", "juvenile"]
            if sample:
                candidates.append(max(sample[0][1].split(), key=len).strip(":,.;-").lower())
            hits = (word for word in candidates if search(connection.connection(), word, 1))
            word = next(hits, candidates[-1])
    finally:
        engine.dispose()
    me, path = invocation(), shlex.quote(str(database))
    click.echo("Next, on this database:")
    click.echo(f"  {me} stats --database {path}")
    click.echo(f"  {me} search --database {path} {shlex.quote(word)}")
    if sample:
        click.echo(f"  {me} show --database {path} {sample[0][0]}")
    ris = shlex.quote(str(database.with_suffix(".ris")))
    click.echo(f"  {me} export --database {path} --format ris --output {ris}")
    browse = f"  {me} browse --database {path}"
    if importlib.util.find_spec("datasette") is None:
        browse += "    (needs: pip install 'ncjrs-harvester[browse]')"
    click.echo(browse)
    click.echo(
        f'  sqlite3 {path} "SELECT ncj_number, title, published_year'
        ' FROM records ORDER BY ncj_number LIMIT 10;"    (tables: docs/schema.md)'
    )


@main.command()
@database_option
def migrate(database: str | None) -> None:
    """Bring the database (--database, else DATABASE_URL) to the current schema, as
    `alembic upgrade head` does."""
    from harvester.db import upgrade_to_head

    engine = _engine(database_url(option=database))
    try:
        upgrade_to_head(engine)
    finally:
        engine.dispose()
    click.echo(f"{display_url(engine.url)}: schema is current")


@main.command()
@click.option("--records", default=1000, show_default=True, type=click.IntRange(1, 250_000))
@click.option("--seed", default=1, show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(records: int, seed: int, port: int) -> None:
    """Serve the generated local site on 127.0.0.1 until interrupted (Ctrl-C)."""
    import socket
    import time

    from harvester.localsite import serve_site

    # The server runs in a child process that can only say it did not start: try the port
    # here first, so that a busy one is named.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on 127.0.0.1:{port}: {error.strerror} (choose another --port)"
            ) from error
    with serve_site(records=records, seed=seed, port=port) as site:
        click.echo(f"Serving {records} records at {site.base_url} (robots.txt, sitemap.xml)")
        click.echo("Crawl it at full speed (the politeness settings are for the live site):")
        fast = " ".join(
            f"-s {name}={_setting_text(value)}" for name, value in LOCAL_SITE_SETTINGS.items()
        )
        target = shlex.quote(sqlite_url("ncjrs-local.sqlite"))
        click.echo(
            f"  {invocation()} crawl --sitemap {site.base_url}/robots.txt"
            f" -s DATABASE_URL={target} {fast}"
        )
        click.echo("Ctrl-C stops the site.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _setting_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


# One spelling of each spider argument as a `harvester crawl` option (for its error messages).
def _crawl_option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _spider_argument_options(command: Callable[..., None]) -> Callable[..., None]:
    """``harvester crawl``'s options, one per spider argument: SpiderArguments is the one list."""
    for name, kind in reversed(SpiderArguments.option_kinds().items()):
        text = SpiderArguments.help()[name]
        if kind == "repeatable":
            text += " Repeatable."
        option = click.option(
            _crawl_option(name),
            name,
            is_flag=kind == "flag",
            multiple=kind == "repeatable",
            help=text,
        )
        command = option(command)
    return command


@main.command(context_settings={"show_default": True})
@_spider_argument_options
@click.option(
    "-s", "--set", "settings", multiple=True, metavar="NAME=VALUE", help="A Scrapy setting."
)
def crawl(settings: tuple[str, ...], **given: str | tuple[str, ...] | bool | None) -> None:
    """`scrapy crawl ncjrs` by another name: same spider, settings and exit status."""
    arguments: dict[str, str] = {}
    for name, value in given.items():
        if isinstance(value, tuple):
            value = ",".join(value) or None
        elif isinstance(value, bool):
            value = "1" if value else None
        if value is not None:
            arguments[name] = value
    overrides: dict[str, Any] = dict(_setting_pairs(settings))
    try:
        status = run_crawl(arguments, overrides)
    except BadArgument as error:
        if error.option != "-a":
            raise UsageError(str(error)) from error
        raise UsageError(f"{_crawl_option(error.name)} {error.value}: {error.reason}") from error
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
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="URLS")
    names = [name] if name else [fixture_name(url) for url in urls]
    overrides: dict[str, Any] = {
        # Capturing stores nothing: no database pipelines, no crawl_runs row.
        "ITEM_PIPELINES": {},
        "EXTENSIONS": {},
        "LOG_LEVEL": "WARNING",
        **_setting_pairs(settings),
    }
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


def _engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine on ``url``; a URL that cannot be used is one clear error (exit status 1)."""
    try:
        return create_engine_for(url, read_only=read_only)
    except DatabaseUnavailable as error:
        raise click.ClickException(str(error)) from error


def _open_database(database: str | None, *, read_only: bool) -> Engine:
    """An engine on the command's database (``--database``, else DATABASE_URL), refused with
    a clear message unless it exists and its schema is current. ``read_only`` for commands
    that only read: they cannot write, and work on a file or folder they may not write to."""
    from harvester.db import ensure_schema, normalize_url

    url = database_url(option=database)
    try:
        parsed = normalize_url(url)
    except DatabaseUnavailable as error:
        raise click.ClickException(str(error)) from error
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    )
    if sqlite_file and not Path(str(parsed.database)).is_file():
        raise click.ClickException(
            f"no database at {parsed.database}: crawl into it first (harvester demo makes "
            "ncjrs-demo.sqlite), or pass --database PATH_OR_URL"
        )
    engine = _engine(url, read_only=read_only)
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


def _judging_run(what: str, database: str | None, run: Callable[[Any], Any]) -> None:
    """A re-parse or replay on the current database, its summary printed. One that stops
    early says so in one line and exits non-zero, with no traceback: nothing written is lost."""
    from harvester.reparse import JudgingProcessDied

    engine = _open_database(database, read_only=False)
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
    type=click.IntRange(min=1),
    help="Records per transaction.",
)
@_jobs_option
@database_option
def reparse(batch_size: int, jobs: int | None, database: str | None) -> None:
    """Re-derive every record from its stored page, with no request; version what changed."""
    from harvester.reparse import reparse as reparse_all

    _judging_run(
        "Re-parse",
        database,
        lambda engine: reparse_all(engine, batch_size=batch_size, jobs=_jobs(jobs)),
    )


@main.command()
@click.argument("ncj_number", type=int)
@database_option
def history(ncj_number: int, database: str | None) -> None:
    """The versions of one record: when, by which run, which fields changed."""
    from harvester.history import record_history

    engine = _open_database(database, read_only=True)
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
@database_option
def quarantine_list(
    reason: str | None, include_resolved: bool, limit: int, database: str | None
) -> None:
    """Open quarantine rows, newest first, and a count by reason."""
    from harvester.quarantine import count_open, list_rows

    engine = _open_database(database, read_only=True)
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
@database_option
def quarantine_replay(reason: str | None, jobs: int | None, database: str | None) -> None:
    """Validate open quarantine rows again from their stored pages; store what passes now."""
    from harvester.quarantine import replay

    _judging_run(
        "Quarantine replay",
        database,
        lambda engine: replay(engine, reason=reason, jobs=_jobs(jobs)),
    )


# --- Using the data: stats, show, search, export (harvester.stats, .search, .exports) ---------


def _echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@database_option
def stats(as_json: bool, database: str | None) -> None:
    """Records, field coverage and the last crawl runs of the database."""
    from harvester.stats import collect_stats

    engine = _open_database(database, read_only=True)
    try:
        with engine.connect() as connection:
            summary = collect_stats(connection)
            summary["distributed_run"] = _fleet_status(connection)
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
    if fleet := summary["distributed_run"]:
        ended = f"finished {fleet['finished_at']}" if fleet["finished_at"] else "under way"
        queued = "" if fleet["queued"] is None else f", {fleet['queued']} queued"
        click.echo(
            f"distributed run #{fleet['id']} ({ended}): {fleet['issued']} requests issued, "
            f"{fleet['repushed']} issued again{queued}, {fleet['pages_per_second']} pages/s "
            "(last minute)"
        )
        for worker in fleet["workers"]:
            click.echo(
                f"  worker run #{worker['crawl_run']}: {worker['state']}"
                f" (heartbeat {worker['heartbeat_at']})"
            )


def _fleet_status(connection: Any) -> dict[str, Any] | None:
    """The latest distributed run, with its queue when HARVESTER_REDIS_URL is set."""
    import redis

    from harvester.config import redis_url
    from harvester.distributed import fleet_status

    shared = redis_url()
    client = redis.Redis.from_url(shared, socket_timeout=5) if shared else None
    try:
        return fleet_status(connection, client)
    finally:
        if client is not None:
            client.close()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=0), help="Sitemaps listed."
)
@database_option
def coverage(as_json: bool, top: int, database: str | None) -> None:
    """What the database holds and what it is missing, and why (harvester.coverage)."""
    from harvester.coverage import coverage_report, format_report
    from harvester.db import display_url

    engine = _open_database(database, read_only=True)
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
@database_option
def show(ncj: int, as_json: bool, database: str | None) -> None:
    """Show one record, with its people, agencies, grants and subjects."""
    from harvester.stats import record_detail

    engine = _open_database(database, read_only=True)
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
@database_option
def search(words: tuple[str, ...], limit: int, as_json: bool, database: str | None) -> None:
    """Full-text search of titles, people, annotations and abstracts (docs/schema.md).

    Every word must occur; `word*` matches words starting with `word`. Results: every word in
    the title first, then in the title or people, then anywhere; newest NCJ number first.
    """
    from harvester.errors import SearchError
    from harvester.search import search as run_search

    engine = _open_database(database, read_only=True)
    try:
        with engine.connect() as connection:
            hits = run_search(connection, " ".join(words), limit)
    except SearchError as error:
        raise UsageError(str(error)) from error
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
@database_option
def export(
    export_format: str, since: Any, query: str | None, output: Path | None, database: str | None
) -> None:
    """Export records as RIS, BibTeX, CSL-JSON, JSON Lines or CSV (docs/crosswalk.md)."""
    import io
    from datetime import UTC

    from harvester.errors import SearchError
    from harvester.exports import export as run_export
    from harvester.search import parse_query

    if query is not None:
        try:
            parse_query(query)
        except SearchError as error:
            raise UsageError(f"--query: {error}") from error
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"--output {output}: there is no folder {output.parent}")
    since_utc = since.replace(tzinfo=UTC) if since is not None else None
    engine = _open_database(database, read_only=True)
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
    except OSError as error:  # opening, writing, or flushing as the file closes (a full disk)
        if output is None:
            raise  # standard output: a closed pipe is the group's to handle
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from error
    finally:
        engine.dispose()
    click.echo(f"{count} records exported as {export_format}", err=True)


# --- Browse in a web page: datasette, read-only (harvester.browse) ---------------------------


@main.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
def browse(database: str | None, host: str, port: int) -> None:
    """Browse the database read-only in a web page (datasette): search, facets, queries."""
    from harvester import browse as browsing

    try:
        path, mode = browsing.prepare(database_url(option=database))
        server = browsing.listening_socket(host, port)
    except browsing.BrowseUsageError as error:
        raise UsageError(str(error)) from error
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
