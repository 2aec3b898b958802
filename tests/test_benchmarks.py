"""The crawl benchmark's parts: its baseline fetches and judges every record page of the site,
and the nginx snapshot serves what the local site serves. A wrong baseline makes every ratio
the benchmark prints wrong, so it is checked against the site's truth."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from benchmarks.crawl import record_bins, slope_per_thousand
from benchmarks.process import MIB, last_json_line, measure
from benchmarks.site import bench_site, nginx_binary
from harvester.localsite import serve_site


def test_bare_spider_judges_every_record_page_of_the_site() -> None:
    # seed 4: a rejected record and publication pages among 40, so every verdict shows
    with bench_site(40, seed=4, use_nginx=False) as site, serve_site(records=40, seed=4) as ref:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bare_spider", site.sitemap],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        truth = ref.truth()
        soft_404s = ref.site.options.soft_404_count
    result = last_json_line(done.stdout)
    records = {t["ncj_number"] for t in truth if t["kind"] == "record"}
    rejected = [t for t in truth if t["kind"] == "rejected"]
    publications = [t for t in truth if t["publication"]]
    assert result["finish_reason"] == "finished"
    assert result["records"] == len(records)
    # every record page the sitemaps list, once: records, their publication pages, soft 404s
    assert result["pages"] == len(truth) + len(publications) + soft_404s
    assert result["verdicts"] == {
        "record": len(truth) + len(publications) - len(rejected),
        "quarantined": len(rejected),
        "not_record": soft_404s,
    }


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_nginx_serves_the_local_sites_pages_byte_for_byte() -> None:
    with bench_site(30, seed=2) as site, serve_site(records=30, seed=2) as ref:
        assert site.server == "nginx"
        served = 0
        for entry in ref.truth():
            for url in (
                entry["url"],
                *([entry["publication"]["url"]] if entry["publication"] else []),
            ):
                path = url.removeprefix(ref.base_url)
                with urllib.request.urlopen(ref.url(path)) as expected:
                    want = expected.read().replace(ref.base_url.encode(), b"BASE")
                    modified = expected.headers["Last-Modified"]
                with urllib.request.urlopen(site.base_url + path) as answer:
                    assert answer.read().replace(site.base_url.encode(), b"BASE") == want
                    assert answer.headers["Last-Modified"] == modified
                    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
                served += 1
        assert served >= 30


def test_the_memory_measurement_tells_each_process_apart() -> None:
    """A child holding 64 MiB shows in its own peak, not in its parent's: the memory
    benchmark says which process of the crawl grows."""
    child = "big = bytearray(64 * 2**20); import time; time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    run = measure([sys.executable, "-c", parent], {}, counter=lambda: 7, count_every=0.2)
    counted, peaks = run.process_checkpoints[-1]
    assert counted == 7
    children = {name: rss for name, rss in peaks.items() if name.startswith("child ")}
    assert len(children) == 1, peaks
    assert next(iter(children.values())) > 64 * MIB > peaks["main"]
    assert run.peak_rss >= sum(peaks.values()) - peaks["main"]
    # every sample is kept with the count read before it: the memory verdict bins them
    assert max(rss for _, rss in run.samples) == run.peak_rss
    assert {counted for counted, _ in run.samples} <= {0, 7}


def test_memory_bins_split_a_crawl_by_records_stored_and_the_slope_is_per_thousand() -> None:
    # start-up (counted 0) is left out; 12,000 ends a bin of 2,000 records, taken into the last
    samples = [(0, 900), (5000, 100), (7000, 140), (10_000, 110), (11_000, 130), (12_000, 120)]
    bins = record_bins(samples, 5000, 5000)
    assert [(b.first, b.last, b.rss) for b in bins] == [(5000, 12_000, [100, 140, 110, 130, 120])]
    samples += [(15_000, 150), (16_000, 170), (20_000, 160)]
    bins = record_bins(samples, 5000, 5000)
    assert [(b.first, b.last, b.peak, b.median) for b in bins] == [
        (5000, 10_000, 140, 120),
        (10_000, 15_000, 130, 120),
        (15_000, 20_000, 170, 160),  # the last bin runs to the end, the close included
    ]
    # 1 MiB more every 10,000 records: 0.1 MiB per 1,000
    assert slope_per_thousand([(0, 400.0), (10_000, 401.0), (20_000, 402.0)]) == pytest.approx(0.1)
    assert record_bins([], 5000, 5000) == []
