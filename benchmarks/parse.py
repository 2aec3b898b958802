"""`python -m benchmarks.parse`: how fast a page is judged, against plain lxml.

pages/s of harvester.judge.judge_response (parse + normalize + validate + content hash: what
the crawler does per page) against plain lxml extraction of the same fields with hand-written
XPath, on the same pages, in one run, pinned to one core, CPU time. Pages come from the local
site generator, in the proportions of its layouts, either with their full site chrome (30-45
KiB, like live ojp.gov pages) or "lean" (navigation, scripts and footers stripped: about 9 KiB).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import lxml.html
from lxml import etree
from scrapy.http import HtmlResponse

from benchmarks.pages import as_response, bench_pages
from harvester.judge import Judgement, judge_response


def ours(response: HtmlResponse) -> Judgement:
    """What the crawler does with each downloaded page (Scrapy has built the response)."""
    return judge_response(response, keep_page=False)


_BASELINE_LABELS = etree.XPath(
    "//div[@class='field__label'] | //td[@class='abstractLabel']"
    " | //div[contains(@class, 'pub-field')]/strong"
)
_BASELINE_TITLE = etree.XPath("string(//h1)")
_PARAGRAPHS = etree.XPath(".//p | .//li")
_HREFS = etree.XPath(".//a/@href")


def plain_lxml(body: bytes) -> dict[str, Any]:
    """A hand-written scraper for these exact layouts, with lxml.html and fixed XPath.

    It extracts the same fields as the harvester's parser, to the same standard: label ->
    values with whitespace collapsed, paragraphs and list items kept apart, document links.
    It does no normalization, validation or markup-independent label matching.
    """
    tree = lxml.html.fromstring(body)
    fields: dict[str, Any] = {"title": " ".join(_BASELINE_TITLE(tree).split())}
    for label in _BASELINE_LABELS(tree):
        key = " ".join(label.text_content().split()).rstrip(":")
        value = label.getnext()
        if value is None:  # inline "<strong>Length:</strong> 9 pages"
            fields[key] = [" ".join((label.tail or "").split())]
            continue
        paragraphs = _PARAGRAPHS(value)
        blocks = paragraphs if paragraphs else [value]
        fields[key] = [" ".join(block.text_content().split()) for block in blocks]
        if key.startswith("Document"):
            fields["document_urls"] = _HREFS(value)
    return fields


def seconds(function: Callable[[Any], Any], inputs: list[Any]) -> float:
    """CPU seconds of one pass: steal time of a shared machine does not count."""
    gc.collect()
    gc.freeze()  # the inputs were made before the clock started: the collector skips them
    started = time.process_time()
    for item in inputs:
        function(item)
    elapsed = time.process_time() - started
    gc.unfreeze()
    return elapsed


def run_parse(pages_count: int, rounds: int) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    results: dict[str, Any] = {}
    for lean in (True, False):
        pages = bench_pages(pages_count, lean=lean)
        size = statistics.mean(len(body) for _, body in pages) / 1024
        bodies = [body for _, body in pages]
        ours(as_response(*pages[0]))  # warm caches and imports outside the timing
        plain_lxml(bodies[0])
        ours_best = lxml_best = float("inf")
        for _ in range(rounds):  # interleaved, so that both see the same machine
            # Fresh responses each round: Scrapy caches a response's decoded text.
            responses = [as_response(url, body) for url, body in pages]
            ours_best = min(ours_best, seconds(ours, responses))
            lxml_best = min(lxml_best, seconds(plain_lxml, bodies))
        ours_rate = len(pages) / ours_best
        lxml_rate = len(pages) / lxml_best
        label = "lean" if lean else "full"
        results[label] = {
            "pages": len(pages),
            "mean_kib": round(size, 1),
            "ours_pages_per_s": round(ours_rate),
            "lxml_pages_per_s": round(lxml_rate),
            "ratio": round(ours_rate / lxml_rate, 2),
        }
        print(
            f"parse [{label}: {len(pages)} pages, mean {size:.1f} KiB]: "
            f"harvester {ours_rate:,.0f} pages/s, plain lxml {lxml_rate:,.0f} pages/s, "
            f"ratio {ours_rate / lxml_rate:.2f}  (targets: >= 1,000 pages/s, ratio >= 0.60)"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parse", description=__doc__)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    run_parse(args.pages, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
