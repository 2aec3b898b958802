"""Giving the allocator's free memory back (harvester.allocator)."""

from __future__ import annotations

import subprocess
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


# In a process of its own: the setting lasts for the life of a process. A large block is
# freed first, which raises glibc's moving threshold to its size; then a smaller block (still
# one of a batch's sizes) is made: is it mapped on its own (counted in mallinfo2's hblkhd) or
# carved from the heap?
_SMALLER_BLOCK_MAPPED = """
import ctypes, sys
from harvester.allocator import keep_large_blocks_out_of_the_heap

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

try:
    libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    sys.exit(3)
if not hasattr(libc, "mallinfo2"):
    sys.exit(3)
libc.mallinfo2.restype = Info
if sys.argv[1] == "fixed" and not keep_large_blocks_out_of_the_heap():
    sys.exit(3)
large = bytearray(8 * 2**20)
del large
before = libc.mallinfo2().hblkhd
smaller = bytearray(2 * 2**20)
print(libc.mallinfo2().hblkhd - before >= 2 * 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize(("threshold", "mapped"), [("moving", "False"), ("fixed", "True")])
def test_a_batch_sized_block_is_mapped_on_its_own_once_the_threshold_is_fixed(
    threshold: str, mapped: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SMALLER_BLOCK_MAPPED, threshold], capture_output=True, text=True
    )
    if done.returncode == 3:
        pytest.skip("not glibc 2.33 or later (mallopt, mallinfo2)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mapped
