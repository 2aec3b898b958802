"""The crawl benchmark's parts: its baseline fetches and judges every record page of the site,
and the nginx snapshot serves what the local site serves. A wrong baseline makes every ratio
the benchmark prints wrong, so it is checked against the site's truth."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from benchmarks.crawl import window_peak
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
    # every sample is kept with the count read before it: the windows below are cut from them
    assert max(rss for _, rss in run.samples) == run.peak_rss
    assert {counted for counted, _ in run.samples} <= {0, 7}


def test_a_window_peak_is_the_highest_rss_while_its_records_were_stored() -> None:
    samples = [(0, 100), (1000, 300), (2000, 150), (3000, 160), (4000, 170), (4000, 120)]
    assert window_peak(samples, 2000, 4000) == 170  # the early 300 is not in it
    assert window_peak(samples, 0, 1000) == 300
    assert window_peak(samples, 5000, 6000) is None
