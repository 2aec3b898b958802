"""The run's sets kept out of memory (harvester.runsets)."""

from __future__ import annotations

import pytest

from harvester.runsets import RunKeys, RunUrls, url_key


def test_keys_are_a_set_of_64_bit_integers() -> None:
    keys = RunKeys()
    keys.add(2**63 - 1)
    keys.add(-(2**63))
    keys.update([5, 6, 5])
    keys.add(6)
    assert len(keys) == 4
    assert 2**63 - 1 in keys
    assert -(2**63) in keys
    assert 5 in keys
    assert 7 not in keys
    keys.close()


def test_urls_are_kept_by_key() -> None:
    urls = RunUrls()
    urls.add("https://www.ojp.gov/ncjrs/virtual-library/abstracts/a")
    urls.add("https://www.ojp.gov/ncjrs/virtual-library/abstracts/a")
    assert len(urls) == 1
    assert "https://www.ojp.gov/ncjrs/virtual-library/abstracts/a" in urls
    assert "https://www.ojp.gov/ncjrs/virtual-library/abstracts/b" not in urls
    assert 1 not in urls
    assert url_key("a") != url_key("b")
    assert -(2**63) <= url_key("a") < 2**63


def test_a_large_set_keeps_a_small_page_cache() -> None:
    """The run's sets grow with the site; what they hold in memory must not (SQLite's own
    figure for the set's connection's page cache, as benchmarks/memprobe.py reads it)."""
    from benchmarks.memprobe import connection_kib

    keys = RunKeys()
    try:
        keys.update(
            url_key(f"https://www.ojp.gov/ncjrs/virtual-library/abstracts/{n}")
            for n in range(100_000)
        )
        assert len(keys) == 100_000
        assert url_key("https://www.ojp.gov/ncjrs/virtual-library/abstracts/99999") in keys
        used = connection_kib(keys._db)
        if used is None:
            pytest.skip("no libsqlite3 for ctypes to read SQLite's connection figures from")
        # KiB: the 256 KiB cache, full (1 MiB before): a working probe reads more than 200
        assert 200 <= used["cache"] <= 300, used
    finally:
        keys.close()
