"""Test helpers: frozen page fixtures served as Scrapy responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scrapy.http import HtmlResponse, Request

PAGES = Path(__file__).parent / "fixtures" / "pages"


def golden(name: str) -> dict[str, Any]:
    return json.loads((PAGES / f"{name}.json").read_text(encoding="utf-8"))


def page_names() -> list[str]:
    return sorted(path.stem for path in PAGES.glob("*.html"))


def response_from_file(
    name: str, url: str | None = None, content_type: str | None = None, status: int = 200
) -> HtmlResponse:
    """An HtmlResponse for fixture NAME with its Request, as the downloader would build it.

    URL and Content-Type come from the fixture's golden file unless given; the body is passed
    as bytes so that the declared charset is honoured exactly as on a real fetch.
    """
    meta = golden(name) if (PAGES / f"{name}.json").exists() else {}
    url = url or meta.get("url") or f"https://www.ojp.gov/fixtures/{name}"
    content_type = content_type or meta.get("content_type") or "text/html; charset=utf-8"
    request = Request(url=url)
    return HtmlResponse(
        url=url,
        status=status,
        headers={"Content-Type": content_type},
        body=(PAGES / f"{name}.html").read_bytes(),
        request=request,
    )


# --- Stored records: fixture pages -> parse -> normalize -> store (search, exports) -----------


def fixture_records() -> list[Any]:
    """One normalized ``Record`` per NCJ number from the stored fixture pages, the richest
    page winning as in the crawl's de-duplication."""
    from harvester.items import LAYOUT_RANK, RawRecord
    from harvester.normalize import normalize_record
    from harvester.parsing import parse_page

    records: dict[int, Any] = {}
    for name in page_names():
        page = parse_page(response_from_file(name))
        if not isinstance(page, RawRecord):
            continue
        record = normalize_record(page)
        if record.ncj_number is None or not record.title:
            continue
        kept = records.get(record.ncj_number)
        if kept is None or LAYOUT_RANK[record.layout] > LAYOUT_RANK[kept.layout]:
            records[record.ncj_number] = record
    return list(records.values())


def store_records(engine: Any, records: list[Any], now: Any = None) -> None:
    """Write records as the crawl's writer does (``store.write_batch``), in one transaction."""
    from datetime import UTC, datetime

    from harvester.normalize import content_hash
    from harvester.store import write_batch

    with engine.begin() as connection:
        write_batch(
            connection,
            [(r, content_hash(r)) for r in records],
            [],
            now=now or datetime(2026, 1, 1, tzinfo=UTC),
            run_id=None,
            counted=set(),
        )
