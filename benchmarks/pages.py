"""Record pages of the generated site as (url, body), for the parse benchmark and tests."""

from __future__ import annotations

from collections.abc import Iterator

import lxml.html
from lxml import etree
from scrapy.http import HtmlResponse, Request

from harvester.localsite.generator import Site

BASE_URL = "http://127.0.0.1:8000"
_CHROME = etree.XPath(
    "//script | //style | //nav | //header | //footer | //noscript | //svg"
    " | //*[@class='usa-banner'] | //section[contains(@class, 'usa-banner')]"
)


def site_pages(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """(url, body) of `count` record pages of the generated site, every layout included (every
    other record with a publication page shown by it), one at a time."""
    site = Site(records=count, seed=seed)
    for index in range(count):
        truth = site.truth_entry(index, BASE_URL)
        if truth["layout"] == "current":
            html = site.render_current(index, BASE_URL)
        else:
            html = site.render_legacy(index, BASE_URL)
        if truth["publication"] and index % 2:
            html = site.render_publication(index, BASE_URL)
            truth = truth["publication"]
        yield truth["url"], html.encode("utf-8")


def bench_pages(count: int, *, lean: bool, seed: int = 1) -> list[tuple[str, bytes]]:
    """(url, body) of `count` record pages of the generated site, every layout included.

    lean: navigation, scripts and footers stripped (about 9 KiB instead of 30-45 KiB).
    """
    pages: list[tuple[str, bytes]] = []
    for url, body in site_pages(count, seed):
        if lean:
            tree = lxml.html.fromstring(body)
            for element in _CHROME(tree):
                element.drop_tree()
            body = lxml.html.tostring(tree, encoding="utf-8")
        pages.append((url, body))
    return pages


def as_response(url: str, body: bytes) -> HtmlResponse:
    return HtmlResponse(url=url, body=body, encoding="utf-8", request=Request(url))
