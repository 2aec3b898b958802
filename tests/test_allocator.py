"""Giving the allocator's free memory back (harvester.allocator)."""

from __future__ import annotations

import sys
import threading

import pytest

from harvester.allocator import PeriodicRelease, release_free_memory

MIB = 2**20


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_of_a_thread_goes_back_to_the_system() -> None:
    """What a thread freed between blocks it still holds stays in the process (its arena)
    until released: the writer thread's case."""
    measured: dict[str, int] = {}

    def allocate_and_free() -> None:
        blocks = [bytearray(b"x" * (32 * 1024)) for _ in range(1536)]  # 48 MiB, written
        kept = blocks[::16]  # pins the arena: only its top could be trimmed on free
        del blocks
        measured["freed"] = rss()
        measured["released"] = int(release_free_memory())
        measured["after"] = rss()
        del kept

    worker = threading.Thread(target=allocate_and_free)
    worker.start()
    worker.join()
    if not measured["released"]:
        pytest.skip("not glibc: no malloc_trim")
    assert measured["freed"] - measured["after"] > 32 * MIB, measured


def test_periodic_release_waits_its_interval() -> None:
    every_hour = PeriodicRelease(3600)
    assert not every_hour()  # just made: the interval starts now
    always = PeriodicRelease(0)
    assert always() == release_free_memory()
