"""The `harvester` command: `crawl` is `scrapy crawl ncjrs` with the same exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from harvester import cli, models
from harvester.db import create_engine_for
from harvester.localsite import serve_site
from spiders.arguments import SpiderArguments
from tests.support import REPO

HARVESTER = [sys.executable, "-m", "harvester.cli"]


def harvester(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARVESTER, *arguments], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_crawl_runs_the_spider_and_logs_progress(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    with serve_site(records=80, seed=6) as site:
        done = harvester(
            "crawl",
            "--sitemap",
            f"{site.base_url}/sitemap.xml",
            *("-s", f"DATABASE_URL={url}", "-s", "HARVESTER_PROGRESS_INTERVAL=0.2"),
            *("-s", "DOWNLOAD_DELAY=0.005", "-s", "AUTOTHROTTLE_ENABLED=0"),
        )
        records = sum(1 for t in site.truth() if t["kind"] == "record")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Progress: " in done.stderr
    assert " pages/s, " in done.stderr
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(models.Record))
    finally:
        engine.dispose()
    assert stored == records


def test_crawl_exits_3_when_a_check_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    with serve_site(records=20, seed=6, status_overrides={"/robots.txt": 503}) as site:
        done = harvester(
            "crawl",
            "--sitemap",
            f"{site.base_url}/sitemap.xml",
            *("-s", f"DATABASE_URL={url}", "-s", "RETRY_TIMES=0"),
        )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Check failed: robots.txt could not be read" in done.stderr


def test_crawl_refuses_a_setting_without_a_value() -> None:
    done = harvester("crawl", "-s", "DOWNLOAD_DELAY")
    assert done.returncode == 2
    assert "is not NAME=VALUE" in done.stderr


def test_crawl_has_one_option_per_spider_argument_and_passes_them_as_given() -> None:
    command = cli.main.commands["crawl"]
    options = {param.name for param in command.params} - {"settings"}
    assert options == set(SpiderArguments.names())
    passed: list[dict[str, str]] = []
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "run_crawl", lambda arguments, overrides: passed.append(arguments) or 0)
        done = runner.invoke(
            cli.main,
            ["crawl", "--url", "http://h/a", "--url", "http://h/b", "--full", "--ncj", "7"],
        )
    assert done.exit_code == 0, done.output
    assert passed == [{"url": "http://h/a,http://h/b", "ncj": "7", "full": "1"}]
