"""`harvester capture URL...`: freeze live pages as test fixtures, with today's reading of them.

Each page is saved as ``NAME.html`` (the bytes as served) next to ``NAME.json``, a golden file
(docs/golden-format.md) holding what the parser, normalizer and validator make of it now.
Review the golden file, commit both, and ``tests/test_parsing.py`` checks the page on every
test run: when the site changes its layout, capture a page again and the diff shows what the
parser gets wrong, as a failing test, in minutes.

Fetching goes through Scrapy with the project's settings (robots.txt, User-Agent, timeouts,
backoff), but without the database pipelines: capturing stores nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from scrapy import Request, Spider
from scrapy.http import Response, TextResponse

from harvester.judge import judge_response
from harvester.normalize import record_content


def fixture_name(url: str) -> str:
    """``captured-<slug>`` for a record page; ``captured-legacy-<id>`` for a legacy one."""
    parts = urlsplit(url)
    record_id = next((value for key, value in parse_qsl(parts.query) if key.lower() == "id"), None)
    if record_id and record_id.isdigit():
        return f"captured-legacy-{record_id}"
    slug = parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or "page"
    return "captured-" + re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")[:80]


def golden_for(response: TextResponse) -> dict[str, Any]:
    """The golden file of a fetched page: what the harvester reads from it today."""
    judgement = judge_response(response, keep_page=False)
    golden: dict[str, Any] = {
        "sample": None,
        "markup": "other",
        "url": response.url,
        "content_type": (response.headers.get(b"Content-Type") or b"").decode("latin-1")
        or "text/html; charset=utf-8",
        "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record = judgement.record
    if record is None:
        kind = judgement.not_record
        return {**golden, "kind": kind, "rejection": None, "layout": None, "expected": None}
    rejection = judgement.rejection
    return {
        **golden,
        "kind": "rejected" if rejection else "record",
        "rejection": rejection.reason if rejection else None,
        "layout": record.layout,
        "expected": None if rejection else record_content(record),
    }


def save_fixture(response: TextResponse, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.html").write_bytes(response.body)
    golden = golden_for(response)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


class CaptureSpider(Spider):
    name = "capture"

    def __init__(self, urls: list[str], directory: str, names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls
        self.directory = Path(directory)
        self.names = names
        self.saved: list[Path] = []
        self.failed: list[str] = []

    async def start(self) -> Any:
        for url, name in zip(self.urls, self.names, strict=True):
            yield Request(url, callback=self.save, errback=self.failure, cb_kwargs={"name": name})

    def save(self, response: Response, name: str) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            self.failed.append(f"{response.url}: not an HTML page")
            return
        path = save_fixture(response, self.directory, name)
        self.saved.append(path)
        self.logger.info("Saved %s and %s", path.with_suffix(".html"), path)
        yield from ()

    def failure(self, failure: Any) -> None:
        request = getattr(failure, "request", None)
        self.failed.append(f"{request.url if request else '?'}: {failure.getErrorMessage()}")
