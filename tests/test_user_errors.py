"""Every user error is one line and the documented exit status, never a traceback (issue 12).

Each bad input is run as a real subprocess (`scrapy crawl ncjrs` or `python -m harvester.cli`,
as a user types it) and must exit with the README's status (2: a usage error, 1: could not
start), say what is wrong in a line that contains the expected words, and print no Python
traceback. The cases run at once in a small pool (most of their time is Python starting);
each is still its own test.

Read commands (stats, search, export, coverage, show, history, quarantine list) must work on
a database they may not write to and never write to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from harvester.db import create_engine_for
from harvester.runlock import acquire_run_lock
from tests.support import REPO, scrapy_command

HARVESTER = [sys.executable, "-m", "harvester.cli"]


@dataclass(frozen=True)
class Case:
    name: str
    command: list[str]  # {db}, {dir}, {port}, {closed} are filled in from the fixtures
    status: int
    says: str  # words of the one line that says what is wrong
    env: dict[str, str] = field(default_factory=dict)


def scrapy(*arguments: str, settings: dict[str, str] | None = None) -> list[str]:
    return scrapy_command(*arguments, settings={"LOG_LEVEL": "WARNING", **(settings or {})})


def harvester(*arguments: str) -> list[str]:
    return [*HARVESTER, *arguments]


CRAWL_DB = {"DATABASE_URL": "sqlite:///{dir}/crawl.sqlite"}
NO_FOLDER_DB = "sqlite:///{dir}/no-such-folder/x.sqlite"
NO_DRIVER = "postgresql+pg8000://harvester@127.0.0.1/ncjrs"  # pg8000 is not installed
REFUSED = "postgresql://harvester@127.0.0.1:{closed}/ncjrs"

CASES = [
    # --- the spider's arguments, `scrapy crawl ncjrs -a ...` ----------------------------------
    Case("scrapy ncj=abc", scrapy("ncj=abc", settings=CRAWL_DB), 2, "-a ncj=abc: not an NCJ"),
    Case("scrapy ncj=-5", scrapy("ncj=-5", settings=CRAWL_DB), 2, "-a ncj=-5: not an NCJ"),
    Case(
        "scrapy max_requests=x",
        scrapy("max_requests=x", settings=CRAWL_DB),
        2,
        "-a max_requests=x: not a whole number",
    ),
    Case(
        "scrapy since=yesterday",
        scrapy("since=yesterday", settings=CRAWL_DB),
        2,
        "-a since=yesterday: not a date (YYYY-MM-DD)",
    ),
    Case(
        "scrapy urls_file missing",
        scrapy("urls_file={dir}/missing.txt", settings=CRAWL_DB),
        2,
        "missing.txt: no such file",
    ),
    Case(
        "scrapy ncj_file bad line",
        scrapy("ncj_file={dir}/numbers.txt", settings=CRAWL_DB),
        2,
        "line 3, 'NCJ-PENDING': not an NCJ number",
    ),
    Case(
        "scrapy url not http",
        scrapy("url=www.ojp.gov/x", settings=CRAWL_DB),
        2,
        "-a url=www.ojp.gov/x: not an http(s) URL",
    ),
    Case("scrapy full=maybe", scrapy("full=maybe", settings=CRAWL_DB), 2, "not a yes/no value"),
    Case(
        "scrapy unknown argument",
        scrapy("sitemaps=http://127.0.0.1:9/robots.txt", settings=CRAWL_DB),
        2,
        "-a sitemaps=http://127.0.0.1:9/robots.txt: no such argument (known: sitemap,",
    ),
    Case(
        "scrapy no such spider",
        [*scrapy(settings=CRAWL_DB)[:4], "ncjr"],
        2,
        "no spider named 'ncjr' (spiders: ncjrs)",
    ),
    Case("scrapy -a without =", scrapy("ncj", settings=CRAWL_DB), 2, "use -a NAME=VALUE"),
    Case(
        "scrapy setting not a number",
        scrapy("ncj=1", settings={**CRAWL_DB, "DOWNLOAD_DELAY": "soon"}),
        2,
        "-s DOWNLOAD_DELAY=soon: not a number",
    ),
    # --- a crawl that cannot start: "Not crawling: ...", exit 1, no asyncio traceback ----------
    Case(
        "scrapy database folder missing",
        scrapy("ncj=1", settings={"DATABASE_URL": NO_FOLDER_DB}),
        1,
        "Not crawling: cannot open SQLite database",
    ),
    Case(
        "scrapy database URL garbage",
        scrapy("ncj=1", settings={"DATABASE_URL": "garbage"}),
        1,
        "Not crawling: DATABASE_URL 'garbage' is not a database URL",
    ),
    Case(
        "scrapy database driver missing",
        scrapy("ncj=1", settings={"DATABASE_URL": NO_DRIVER}),
        1,
        "Not crawling: no database driver for postgresql+pg8000",
    ),
    Case(
        "scrapy database refused",
        scrapy("ncj=1", settings={"DATABASE_URL": REFUSED}),
        1,
        "Not crawling: cannot open database postgresql+psycopg://harvester@127.0.0.1:",
    ),
    Case(
        "scrapy another crawl running",
        scrapy("ncj=1", settings={"DATABASE_URL": "sqlite:///{dir}/locked.sqlite"}),
        1,
        "Not crawling: another crawl is still crawling into sqlite:///",
    ),
    Case(
        "scrapy site refuses",
        scrapy(
            "sitemap=http://127.0.0.1:{closed}/robots.txt",
            settings={**CRAWL_DB, "RETRY_TIMES": "0"},
        ),
        3,  # it ran, and failed its checks
        "Check failed: robots.txt could not be read",
    ),
    # --- the same through `harvester crawl`, in its own spelling -------------------------------
    Case("crawl --ncj abc", harvester("crawl", "--ncj", "abc"), 2, "--ncj abc: not an NCJ number"),
    Case(
        "crawl --max-requests x",
        harvester("crawl", "--max-requests", "x"),
        2,
        "--max-requests x: not a whole number",
    ),
    Case(
        "crawl --since yesterday",
        harvester("crawl", "--since", "yesterday"),
        2,
        "--since yesterday: not a date (YYYY-MM-DD)",
    ),
    Case(
        "crawl --urls-file missing",
        harvester("crawl", "--urls-file", "{dir}/missing.txt"),
        2,
        "--urls-file {dir}/missing.txt: no such file",
    ),
    Case("crawl -s without =", harvester("crawl", "-s", "DOWNLOAD_DELAY"), 2, "is not NAME=VALUE"),
    Case(
        "crawl database folder missing",
        harvester("crawl", "--ncj", "1", "-s", f"DATABASE_URL={NO_FOLDER_DB}"),
        1,
        "Not crawling: cannot open SQLite database",
    ),
    # --- databases, for every command that opens one -------------------------------------------
    Case(
        "stats bad URL",
        harvester("stats"),
        1,
        "DATABASE_URL 'not a url' is not a database URL",
        env={"DATABASE_URL": "not a url"},
    ),
    Case(
        "stats driver missing",
        harvester("stats", "--database", NO_DRIVER),
        1,
        "no database driver for postgresql+pg8000://harvester@127.0.0.1/ncjrs",
    ),
    Case(
        "stats refused",
        harvester("stats", "--database", REFUSED),
        1,
        "cannot open database postgresql+psycopg://harvester@127.0.0.1:",
    ),
    Case(
        "migrate refused",
        harvester("migrate", "--database", REFUSED),
        1,
        "cannot open database postgresql+psycopg://harvester@127.0.0.1:",
    ),
    Case(
        "migrate folder missing",
        harvester("migrate", "--database", NO_FOLDER_DB),
        1,
        "its directory {dir}/no-such-folder does not exist",
    ),
    Case(
        "stats unsupported",
        harvester("stats", "--database", "mysql://harvester@127.0.0.1/ncjrs"),
        1,
        "unsupported database mysql://",
    ),
    Case(
        "stats no file",
        harvester("stats", "--database", "{dir}/missing.sqlite"),
        1,
        "no database at {dir}/missing.sqlite",
    ),
    Case(
        "search not a database",
        harvester("search", "--database", "{dir}/junk.sqlite", "gangs"),
        1,
        "file is not a database",
    ),
    Case(
        "coverage damaged file",
        harvester("coverage", "--database", "{dir}/damaged.sqlite"),
        1,
        "database disk image is malformed",
    ),
    Case(
        "export no schema",
        harvester("export", "--database", "{dir}/empty.sqlite", "--format", "ris"),
        1,
        "has no tables",
    ),
    # --- each command's own options ---------------------------------------------------------------
    Case(
        "export into a missing folder",
        harvester("export", "--database", "{db}", "--format", "ris", "--output", "{dir}/no/x.ris"),
        2,
        "--output {dir}/no/x.ris: there is no folder {dir}/no",
    ),
    Case(
        "export to a full disk",
        harvester("export", "--database", "{db}", "--format", "ris", "--output", "/dev/full"),
        1,
        "cannot write /dev/full: No space left on device",
    ),
    Case(
        "export bad format",
        harvester("export", "--database", "{db}", "--format", "word"),
        2,
        "'word' is not one of 'ris'",
    ),
    Case(
        "export bad since",
        harvester("export", "--database", "{db}", "--format", "ris", "--since", "yesterday"),
        2,
        "'yesterday' does not match the formats",
    ),
    Case(
        "export empty query",
        harvester("export", "--database", "{db}", "--format", "ris", "--query", " "),
        2,
        "--query: no words to search for",
    ),
    Case("search no words", harvester("search", "--database", "{db}", '"'), 2, "no words"),
    Case(
        "show not a number",
        harvester("show", "--database", "{db}", "abc"),
        2,
        "'abc' is not a valid integer",
    ),
    Case("show missing", harvester("show", "--database", "{db}", "1"), 1, "no record NCJ 1"),
    Case("history missing", harvester("history", "--database", "{db}", "1"), 1, "NCJ 1 has no"),
    Case(
        "reparse batch 0",
        harvester("reparse", "--database", "{db}", "--batch-size", "0"),
        2,
        "0 is not in the range x>=1",
    ),
    Case("serve 0 records", harvester("serve", "--records", "0"), 2, "0 is not in the range 1<="),
    Case(
        "serve busy port",
        harvester("serve", "--port", "{port}"),
        1,
        "cannot listen on 127.0.0.1:{port}: Address already in use",
    ),
    Case("demo 0 records", harvester("demo", "--records", "0"), 2, "0 is not in the range 1<="),
    Case(
        "demo folder missing",
        harvester("demo", "--database", "{dir}/no-such-folder/demo.sqlite"),
        1,
        "its directory {dir}/no-such-folder does not exist",
    ),
    Case("capture not a URL", harvester("capture", "www.ojp.gov"), 2, "is not an http(s) URL"),
    Case(
        "browse PostgreSQL",
        harvester("browse", "--database", "postgresql://harvester@127.0.0.1/ncjrs"),
        2,
        "harvester browse serves SQLite files, not postgresql",
    ),
    Case(
        "browse no file",
        harvester("browse", "--database", "{dir}/missing.sqlite"),
        1,
        "no database at",
    ),
    Case("no such command", harvester("harvest"), 2, "No such command 'harvest'"),
    Case("no such option", harvester("stats", "--databse", "x"), 2, "No such option '--databse'"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What the cases point at: a small crawled database, broken files, a busy port, a closed
    port, a database whose crawl lock is held."""
    folder = tmp_path_factory.mktemp("user-errors")
    database = folder / "demo.sqlite"
    made = subprocess.run(
        [*harvester("demo", "--records", "20", "--database", str(database))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    (folder / "junk.sqlite").write_text("not a database\n")
    damaged = database.read_bytes()
    (folder / "damaged.sqlite").write_bytes(damaged[: len(damaged) // 2])  # cut off mid-copy
    (folder / "empty.sqlite").touch()
    (folder / "numbers.txt").write_text("# NCJ numbers\n250714\nNCJ-PENDING\n")
    shutil.copy(database, folder / "locked.sqlite")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    engine = create_engine_for(f"sqlite:///{folder / 'locked.sqlite'}")
    lock = acquire_run_lock(engine)
    try:
        yield {
            "db": str(database),
            "dir": str(folder),
            "port": str(busy.getsockname()[1]),
            "closed": str(closed),
        }
    finally:
        lock.release()
        engine.dispose()
        busy.close()


def _filled(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace(f"{{{name}}}", value)
    return text


def _run(case: Case, places: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **{k: _filled(v, places) for k, v in case.env.items()}}
    if "DATABASE_URL" not in case.env:
        environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [_filled(part, places) for part in case.command],
        cwd=places["dir"],
        env={
            **environment,
            "PYTHONPATH": str(REPO),
            "SCRAPY_SETTINGS_MODULE": "harvester.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def outcomes(places: dict[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda case: (case.name, _run(case, places)), CASES)
        return dict(done)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_user_error_is_one_line_and_its_exit_status(
    case: Case, outcomes: dict[str, subprocess.CompletedProcess[str]], places: dict[str, str]
) -> None:
    done = outcomes[case.name]
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode == case.status, output[-3000:]
    says = _filled(case.says, places)
    lines = [line for line in output.splitlines() if says in line]
    assert lines, f"no line says {says!r}:\n{output[-3000:]}"
    if case.command[:3] == HARVESTER and case.command[3] != "crawl":
        assert output.strip() == lines[0].strip(), output[-3000:]  # that line and nothing else


def test_the_cases_cover_the_issue() -> None:
    """The bad inputs issue 12 lists are all in the table."""
    names = {case.name for case in CASES}
    assert {
        "scrapy ncj=abc",
        "scrapy max_requests=x",
        "scrapy since=yesterday",
        "scrapy urls_file missing",
        "scrapy ncj=-5",
        "scrapy database folder missing",
        "stats bad URL",
        "stats driver missing",
        "migrate refused",
        "export into a missing folder",
        "serve busy port",
        "serve 0 records",
    } <= names


# --- read commands on a database they may not write to ----------------------------------------

READ_COMMANDS = [
    ("stats",),
    ("stats", "--json"),
    ("search", "police"),
    ("export", "--format", "ris"),
    ("export", "--format", "csv", "--query", "police"),
    ("coverage",),
    ("quarantine", "list"),
]


def _fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.iterdir())
    }


@pytest.fixture
def read_only_copy(places: dict[str, str]) -> Iterator[Path]:
    """The crawled database alone in a folder, file and folder made read-only (in a folder
    of its own that any user may enter: pytest's are its owner's alone)."""
    top = Path(tempfile.mkdtemp(prefix="harvester-read-only-"))
    top.chmod(0o755)
    folder = top / "read-only"
    folder.mkdir()
    copy = folder / "ncjrs.sqlite"
    shutil.copy(places["db"], copy)
    copy.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield copy
    finally:
        folder.chmod(0o755)
        shutil.rmtree(top)


def test_read_commands_never_write(read_only_copy: Path) -> None:
    """Not a byte, not a modification time, no -wal, -shm or -journal left beside it (as root,
    whom chmod does not stop, this is the harvester's doing alone)."""
    before = _fingerprint(read_only_copy.parent)
    for command in READ_COMMANDS:
        done = subprocess.run(
            [*harvester(*command, "--database", str(read_only_copy))],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    assert _fingerprint(read_only_copy.parent) == before


def test_the_read_only_engine_refuses_to_write(places: dict[str, str], tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    shutil.copy(places["db"], copy)
    engine = create_engine_for(f"sqlite:///{copy}", read_only=True)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM records")).scalar()
            with pytest.raises(OperationalError, match="readonly"):
                connection.execute(text("DELETE FROM records"))
    finally:
        engine.dispose()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.sqlite"]


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return False
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import harvester.cli"],
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _nobody_can_run_python(), reason="needs root, runuser, and a Python nobody may run"
)
def test_read_commands_work_for_a_user_who_may_not_write(read_only_copy: Path) -> None:
    """A user for whom the file and its folder really are read-only (SQLite cannot even make
    its -shm file there)."""
    before = _fingerprint(read_only_copy.parent)
    for command in READ_COMMANDS:
        done = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                *harvester(*command, "--database", str(read_only_copy)),
            ],
            cwd="/",
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert _fingerprint(read_only_copy.parent) == before
    mode = stat.S_IMODE(read_only_copy.stat().st_mode)
    assert mode == 0o444
