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
