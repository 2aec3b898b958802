"""What a crawl run remembers per URL or record, kept out of its memory.

A run remembers which record pages it requested (harvester.frontier), the page it keeps for
each NCJ number (harvester.conflicts) and which records it counted (harvester.store). As
Python sets and dicts these cost a few hundred bytes per record, so a crawl's memory grew
with the site (about 1 MiB per 1,000 records; 235,000 records on the live site). Here they
live in a private temporary SQLite file, which SQLite deletes when it is closed, read and
written through its page cache (a few MiB at most, whatever the run's size).

URLs are kept as 64-bit keys (``url_key``): that two of the live site's 235,000 record URLs
share one has a chance of about 1.5 in 10^9; the second would then not be requested in that
run (it stays in its sitemap, and the next run asks for it).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable


def url_key(url: str) -> int:
    """A canonical URL as a signed 64-bit integer (SQLite's INTEGER)."""
    return int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), signed=True)


def temporary_database() -> sqlite3.Connection:
    """A private SQLite database in a temporary file, gone once closed.

    Not shared between threads at once: each user keeps its own, and may hand it to one
    other thread (the writer's runs in its thread), hence ``check_same_thread=False``.
    """
    connection = sqlite3.connect("", isolation_level=None, check_same_thread=False)
    # Nothing here must survive a crash: no journal, no syncing.
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    # 256 KiB of pages cached (SQLite's default is 2 MiB): the file stays in the OS's cache
    # anyway, and a lookup by key reads a few pages. A cache fills as the run's sets grow (to
    # 1 MiB each by 20,000-50,000 records with 1 MiB caches): memory growing with the crawl.
    connection.execute("PRAGMA cache_size = -256")
    return connection


class RunKeys:
    """A set of 64-bit integers (URL keys, NCJ numbers) kept in a temporary SQLite file."""

    def __init__(self) -> None:
        self._db = temporary_database()
        self._db.execute("CREATE TABLE keys (key INTEGER PRIMARY KEY)")
        self._size = 0

    def add(self, key: int) -> None:
        self._size += self._db.execute("INSERT OR IGNORE INTO keys VALUES (?)", (key,)).rowcount

    def update(self, keys: Iterable[int]) -> None:
        self._db.execute("BEGIN")
        try:
            for key in keys:
                self.add(key)
        finally:
            self._db.execute("COMMIT")

    def __contains__(self, key: object) -> bool:
        row = self._db.execute("SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        self._db.close()


class RunUrls:
    """A set of URLs (canonical) kept as 64-bit keys in a temporary SQLite file."""

    def __init__(self) -> None:
        self._keys = RunKeys()

    def add(self, url: str) -> None:
        self._keys.add(url_key(url))

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and url_key(url) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        self._keys.close()
