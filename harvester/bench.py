"""Benchmarks, run as `python -m harvester.bench parse` and `python -m harvester.bench crawl`.

parse: pages/s of parse + normalize + validate (what the crawler does per page) against plain
       lxml extraction of the same fields with hand-written XPath, on the same pages, in one
       run, pinned to one core. Pages come from the local site generator, in the proportions of
       its layouts, either with their full site chrome (30-45 KB, like live ojp.gov pages) or
       "lean" (navigation, scripts and footers stripped: about 9 KB).
crawl: see harvester.bench_crawl.
incremental: see harvester.bench_incremental.
storage: bytes per record of raw pages and versions, and re-parse time; see
       harvester.bench_storage.
search, export: see harvester.bench_search (a generated database of --records records at
       --database-url, filled once and reused).
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
from scrapy.http import HtmlResponse, Request

from harvester.items import RawRecord
from harvester.localsite.generator import Site
from harvester.normalize import normalize_record
from harvester.parsing import parse_page
from harvester.validate import validate

BASE_URL = "http://127.0.0.1:8000"
_CHROME = etree.XPath(
    "//script | //style | //nav | //header | //footer | //noscript | //svg"
    " | //*[@class='usa-banner'] | //section[contains(@class, 'usa-banner')]"
)


def bench_pages(count: int, *, lean: bool, seed: int = 1) -> list[tuple[str, bytes]]:
    """(url, body) of `count` record pages of the generated site, every layout included."""
    site = Site(records=count, seed=seed)
    pages: list[tuple[str, bytes]] = []
    for index in range(count):
        truth = site.truth_entry(index, BASE_URL)
        if truth["layout"] == "current":
            html = site.render_current(index, BASE_URL)
        else:
            html = site.render_legacy(index, BASE_URL)
        if truth["publication"] and index % 2:
            html = site.render_publication(index, BASE_URL)
            truth = truth["publication"]
        body = html.encode("utf-8")
        if lean:
            tree = lxml.html.fromstring(body)
            for element in _CHROME(tree):
                element.drop_tree()
            body = lxml.html.tostring(tree, encoding="utf-8")
        pages.append((truth["url"], body))
    return pages


def as_response(url: str, body: bytes) -> HtmlResponse:
    return HtmlResponse(url=url, body=body, encoding="utf-8", request=Request(url))


def ours(response: HtmlResponse) -> Any:
    """What the crawler does with each downloaded page (Scrapy has built the response)."""
    page = parse_page(response)
    if not isinstance(page, RawRecord):
        return page
    record = normalize_record(page)
    validate(record)
    return record


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
    parser = argparse.ArgumentParser(prog="python -m harvester.bench")
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse", help="parse + normalize speed against plain lxml")
    parse.add_argument("--pages", type=int, default=2000)
    parse.add_argument("--rounds", type=int, default=5)
    crawl = commands.add_parser("crawl", help="end-to-end crawl of the local site")
    crawl.add_argument("--records", type=int, nargs="+", default=[5000, 20000])
    crawl.add_argument("--naive-records", type=int, default=2000)
    crawl.add_argument("--repeat", type=int, default=2, help="runs of each crawl; best counts")
    incremental = commands.add_parser("incremental", help="cost of scheduled re-runs")
    incremental.add_argument("--records", type=int, default=20000)
    incremental.add_argument("--changed", type=float, default=0.01, help="share of records")
    storage = commands.add_parser("storage", help="raw pages, versions and re-parse costs")
    storage.add_argument("--records", type=int, default=20000)
    storage.add_argument("--compare-off", action="store_true", help="also crawl with raw pages off")
    storage.add_argument("--postgres-server", help="run on a new database on this server")
    for name, description in (
        ("search", "median time of `harvester search` on a generated database"),
        ("export", "peak RSS of a full export of each format on a generated database"),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument("--records", type=int, default=200_000)
        command.add_argument(
            "--database-url",
            default="sqlite:///bench-search.sqlite",
            help="filled with --records generated records unless it already holds records",
        )
    args = parser.parse_args(argv)
    if args.command in ("search", "export"):
        from harvester.bench_search import run

        return run(args.command, args.database_url, args.records)
    if args.command == "parse":
        run_parse(args.pages, args.rounds)
        return 0
    if args.command == "incremental":
        from harvester.bench_incremental import run_incremental_bench

        return run_incremental_bench(args.records, args.changed)
    if args.command == "storage":
        from harvester.bench_storage import run_storage_bench

        return run_storage_bench(args.records, args.compare_off, args.postgres_server)
    from harvester.bench_crawl import run_crawl_bench

    return run_crawl_bench(args.records, args.naive_records, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
