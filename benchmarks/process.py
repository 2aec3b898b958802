"""Run a benchmark process and watch it: wall time, peak RSS, RSS at record-count checkpoints."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harvester.cli import LOCAL_SITE_SETTINGS

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
# The product's settings for the local site (politeness off), quiet logs.
LOCAL_CRAWL = {**{name: str(value) for name, value in LOCAL_SITE_SETTINGS.items()}}
LOCAL_CRAWL["LOG_LEVEL"] = "WARNING"


@dataclass(slots=True)
class Measurement:
    seconds: float  # wall time of the whole process, start-up included
    peak_rss: int  # bytes: the largest sampled sum of RSS over the process and its children
    stdout: str
    stderr: str
    # (records counted, peak RSS so far) each time the counter was read
    checkpoints: list[tuple[int, int]] = field(default_factory=list)
    # (records counted, peak RSS so far of each process: "main", then "child <pid>")
    process_checkpoints: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    # (records counted at the last reading, summed RSS) for every sample
    samples: list[tuple[int, int]] = field(default_factory=list)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / MIB


def tree_rss(process: object) -> int:
    """RSS of a psutil.Process and its children (a process pool's workers count too)."""
    return sum(process_rss(process).values())


def process_rss(process: object) -> dict[str, int]:
    """RSS of a psutil.Process ("main") and of each of its children ("child <pid>")."""
    import psutil

    assert isinstance(process, psutil.Process)
    rss = {"main": int(process.memory_info().rss)}
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may have just exited
            rss[f"child {child.pid}"] = int(child.memory_info().rss)
    return rss


def measure(
    command: list[str],
    env: dict[str, str],
    *,
    counter: Callable[[], int] | None = None,
    count_every: float = 1.0,
    sample_every: float = 0.25,
) -> Measurement:
    """Run `command` to its end, sampling the RSS of its process tree every `sample_every` s.

    `counter` (records stored so far, say) is read every `count_every` s and recorded with
    the peak RSS seen up to then. Raises RuntimeError if the command fails.
    """
    import psutil

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        # Files rather than pipes: a chatty process must never block on a full pipe.
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        watched = psutil.Process(process.pid)
        peak = 0
        # Which process grows: each one's own peak, alongside the peak of their sum.
        peaks: dict[str, int] = {}
        checkpoints: list[tuple[int, int]] = []
        process_checkpoints: list[tuple[int, dict[str, int]]] = []
        samples: list[tuple[int, int]] = []
        counted = 0
        next_count = time.perf_counter() + count_every
        while process.poll() is None:
            with contextlib.suppress(psutil.Error):  # it may have just exited
                sample = process_rss(watched)
                total = sum(sample.values())
                peak = max(peak, total)
                samples.append((counted, total))
                for name, rss in sample.items():
                    peaks[name] = max(peaks.get(name, 0), rss)
            if counter is not None and time.perf_counter() >= next_count:
                counted = counter()
                checkpoints.append((counted, peak))
                process_checkpoints.append((counted, dict(peaks)))
                next_count += count_every
            time.sleep(sample_every)
        seconds = time.perf_counter() - started
        if counter is not None:
            counted = counter()
            checkpoints.append((counted, peak))
            process_checkpoints.append((counted, dict(peaks)))
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} failed ({process.returncode}):\n{err[-3000:]}")
    return Measurement(seconds, peak, out, err, checkpoints, process_checkpoints, samples)


def scrapy_command(
    sitemap: str, settings: dict[str, str], *, profile: Path | None = None
) -> list[str]:
    """`scrapy crawl ncjrs` of a sitemap with these settings (under cProfile if `profile`)."""
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "scrapy", "crawl", "ncjrs", "-a", f"sitemap={sitemap}"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


def count_rows(database: Path, table: str = "records") -> int:
    """Rows in a table of a SQLite file, read-only (0 while the schema is not there yet)."""
    if not database.exists():
        return 0
    try:
        # closing: sqlite3's own context manager ends a transaction, not the connection, and
        # the watcher counts every second for minutes.
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
        ) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of a process's output that is a JSON object (its result)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise ValueError(f"no JSON result in:\n{text[-2000:]}")
