"""`harvester demo` leads somewhere (issue 12): the commands it prints work as printed, a rerun
finds nothing changed, and `harvester serve` prints a crawl command that takes seconds.

All real: the demo serves the generated site and crawls it in a subprocess, and the printed
lines are run by a shell from the folder the demo ran in, as a user would paste them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harvester.cli import DEMO_SITE
from tests.support import REPO

HARVESTER = [sys.executable, "-m", "harvester.cli"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run_demo(folder: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*HARVESTER, "demo"], cwd=folder, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def next_commands(output: str) -> list[str]:
    """The lines the demo prints under "Next, ...", without their trailing remarks."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Next, "))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip().split("    (")[0])
    return commands


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("demo")
    return folder, run_demo(folder).stdout


def test_the_demo_prints_the_next_commands_on_its_database(demo: tuple[Path, str]) -> None:
    _, output = demo
    commands = next_commands(output)
    verbs = [command.split(" -m harvester.cli ")[-1].split()[0] for command in commands]
    assert verbs[:5] == ["stats", "search", "show", "export", "browse"]
    assert all("--database ncjrs-demo.sqlite" in command for command in commands[:5])
    assert commands[-1].startswith("sqlite3 ncjrs-demo.sqlite ")


def test_the_printed_commands_work_as_printed(demo: tuple[Path, str]) -> None:
    folder, output = demo
    ran = 0
    for command in next_commands(output):
        if command.startswith("sqlite3") and shutil.which("sqlite3") is None:
            continue
        if " browse " in command:
            _browse_starts(folder, command)
            continue
        done = subprocess.run(
            command, shell=True, cwd=folder, env=ENV, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        assert done.stdout.strip() or " export " in command, command
        if " search " in command:
            assert done.stdout.startswith("NCJ "), done.stdout  # it finds records
        ran += 1
    assert ran >= 4
    ris = (folder / "ncjrs-demo.ris").read_text(encoding="utf-8")
    assert ris.count("ER  -") == 298


def _browse_starts(folder: Path, command: str) -> None:
    """As printed, on a port of its own (8001 may be taken on a shared machine)."""
    pytest.importorskip("datasette")
    server = subprocess.Popen(
        f"exec {command} --port 0",
        shell=True,
        cwd=folder,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("Browsing "), first
        assert "read-only at http://127.0.0.1:" in first
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_a_rerun_of_the_demo_changes_nothing(demo: tuple[Path, str]) -> None:
    """The site's port changes from run to run; the stored URLs do not (DEMO_SITE), so no
    record is "updated" and no URL is new."""
    folder, _ = demo
    database = folder / "ncjrs-demo.sqlite"
    before = _urls(database)
    assert before
    assert all(url.startswith(f"{DEMO_SITE}/") for url in before)
    again = run_demo(folder).stdout
    assert "298 new" not in again
    assert " 0 new, 0 updated," in again, again
    assert _urls(database) == before


def _urls(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        urls = {url for (url,) in connection.execute("SELECT url FROM record_urls")}
        urls |= {url for (url,) in connection.execute("SELECT source_url FROM records")}
    return urls


def test_serve_prints_a_crawl_command_that_takes_seconds(tmp_path: Path) -> None:
    """With the live site's politeness a 300-record local site took 195 s; the printed
    command lowers it for this crawl only."""
    server = subprocess.Popen(
        [*HARVESTER, "serve", "--records", "300", "--port", "0"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline() for _ in range(3)]
        command = printed[2].strip()
        assert " crawl --sitemap http://127.0.0.1:" in command, printed
        assert "-s DOWNLOAD_DELAY=0" in command
        assert "-s AUTOTHROTTLE_ENABLED=0" in command
        started = time.monotonic()
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
        )
        elapsed = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(tmp_path / "ncjrs-local.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM records").fetchone() == (298,)
    assert elapsed < 60, f"{elapsed:.0f} s"


def test_what_the_demo_leaves_is_ignored_by_git(demo: tuple[Path, str]) -> None:
    """The database, its lock files (crawl and migration locks live as long as the file) and
    the export the demo suggests, made in the checkout, never show up in `git status`."""
    folder, _ = demo
    left = sorted(path.name for path in folder.iterdir())
    assert {"ncjrs-demo.sqlite", "ncjrs-demo.sqlite.crawl.lock"} <= set(left)
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a checkout")
    for name in left:
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", "--quiet", name], cwd=REPO, check=False
        )
        assert ignored.returncode == 0, f"{name} is not ignored by .gitignore"
