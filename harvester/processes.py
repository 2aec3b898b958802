"""The processes a crawl or a re-parse starts (judging processes, the writer process): how
they are started, how they treat signals, and how they end."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import dataclasses
import multiprocessing
import operator
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any


def fork_is_safe() -> bool:
    """Whether a process may be forked from this one now: on Linux, when this thread is its
    only one. A fork copies only the forking thread, and a lock another thread held at that
    moment would stay locked in the copy for good (Python 3.12 warns of it). macOS has fork,
    but its system libraries are not safe across it (Python stopped using it there in 3.8).
    A forked process needs no imports: it starts in milliseconds, a spawned one in about a
    second of CPU."""
    return (
        sys.platform == "linux"
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
    )


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C held back from this thread while it forks: the processes forked meanwhile
    start with it blocked (and ignore it from their first line), and one pressed meanwhile
    reaches this process once it is let through, rather than being lost."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def leave_signals_to_the_crawl(crawl_pid: int) -> None:
    """In a process the crawl started: leave the signals to the crawl, and end with it.

    Ctrl-C and a service manager's SIGTERM reach every process of the group: the crawl shuts
    down gracefully and shuts its pools down, so a worker must not die first (its work would
    be lost or done again). A crawl killed outright (SIGKILL) cannot shut the pool down, and a
    worker holds both ends of its task queue, so it would wait forever, holding the crawl's
    stderr open: it ends once its parent is gone (a write under way is rolled back, as it
    would be in a writer thread of the killed crawl).

    Once told to stop, a spawned one ends without tearing its interpreter down: its last
    answers are sent by then, and tearing down the modules took 0.35-0.45 s, which the crawl
    waited for at its close, per pool. (A forked one ends so anyway: multiprocessing ends a
    forked process with ``os._exit`` after its work, without exit handlers.)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A forked copy shares the wake-up pipe of the crawl's event loop: a signal caught here
    # would wake the crawl as if the crawl had caught it.
    signal.set_wakeup_fd(-1)
    atexit.register(_end_without_teardown)

    def watch() -> None:
        while os.getppid() == crawl_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="crawl-watch", daemon=True).start()


def _end_without_teardown() -> None:
    """At exit (the exit handlers registered after it have run): flush, and go."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # closed, or None
            stream.flush()
    os._exit(0)


def pickle_judgements_by_init() -> None:
    """Judgements, records and pages cross between processes pickled (``ForkingPickler``:
    multiprocessing's queues and pipes); a dataclass with slots pickles through the
    ``__getstate__``/``__setstate__`` that dataclasses generates, Python code that looks the
    fields up again for every object, and a judgement holds dozens (a record, its people,
    dates, citations). From here on, in this process, each pickles as its class and its
    values in field order, which unpickling passes to ``__init__``: an equal object, in a
    third of the time (pickled and unpickled: 0.065 -> 0.022 ms per page of the benchmark).
    Only classes whose ``__init__`` takes every field and does nothing else are changed (the
    others pickle as before). A process forked later inherits it."""
    from harvester import items
    from harvester.judge import Judgement

    for cls in (Judgement, *_dataclasses_of(items)):
        _pickled_by_init(cls)


def _dataclasses_of(module: Any) -> list[type]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and value.__module__ == module.__name__
    ]


def _pickled_by_init(cls: type) -> None:
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields) or hasattr(cls, "__post_init__"):
        return
    names = [f.name for f in fields]
    values = operator.attrgetter(*names)
    if len(names) == 1:
        ForkingPickler.register(cls, lambda obj: (cls, (values(obj),)))
    else:
        ForkingPickler.register(cls, lambda obj: (cls, values(obj)))


def name_this_process(name: str) -> None:
    """Best effort, Linux only: the name ``ps -o comm`` and ``top`` show (15 bytes at most)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass
