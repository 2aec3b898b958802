"""Secure by default: a crawl opens no listening socket (no telnet or remote-control console).

Scrapy 2.19's remote-control extension runs Python code sent to a local port; the telnet
console does much the same. Neither has a place in a scheduled harvest.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.localsite import SiteHandle, serve_site
from tests.support import start_scrapy_crawl

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads sockets from /proc"
)


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=40, seed=11) as handle:
        yield handle


def _process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in (task / "children").read_text().split()]
    return tree


def listening_ports(pid: int) -> set[int]:
    """TCP ports that ``pid`` or a process it started listens on (LISTEN sockets in /proc)."""
    ports: set[int] = set()
    for process in _process_tree(pid):
        inodes = set()
        try:
            for fd in Path(f"/proc/{process}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
            tables = [Path(f"/proc/{process}/net/{name}") for name in ("tcp", "tcp6")]
            lines = [line for table in tables for line in table.read_text().splitlines()[1:]]
        except OSError:
            continue  # the process ended meanwhile
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def ports_opened_by_crawl(site: SiteHandle, tmp_path: Path, settings: dict[str, str]) -> set[int]:
    """Every port the crawl listened on while it ran (sampled until it exits)."""
    database = f"sqlite:///{tmp_path / 'crawl.sqlite'}"
    # Slow enough to be sampled many times while the engine runs.
    slow = {"DOWNLOAD_DELAY": "0.05", "CONCURRENT_REQUESTS_PER_DOMAIN": "1", **settings}
    crawl = start_scrapy_crawl(database, f"sitemap={site.base_url}/sitemap.xml", settings=slow)
    seen: set[int] = set()
    try:
        while crawl.poll() is None:
            seen |= listening_ports(crawl.pid)
            time.sleep(0.05)
    finally:
        if crawl.poll() is None:
            crawl.kill()
        _, log = crawl.communicate(timeout=60)
    assert crawl.returncode == 0, log[-3000:]
    assert "Spider opened" in log
    return seen


def test_a_crawl_opens_no_listening_socket(site: SiteHandle, tmp_path: Path) -> None:
    assert ports_opened_by_crawl(site, tmp_path, {}) == set()


def test_the_check_sees_a_console_when_one_is_turned_on(site: SiteHandle, tmp_path: Path) -> None:
    # What the test above would catch: Scrapy's remote-control console, turned back on.
    assert ports_opened_by_crawl(site, tmp_path, {"REMOTE_CONTROL_ENABLED": "1"})
