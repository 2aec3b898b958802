"""The crawl benchmark's naive baseline: requests + BeautifulSoup, one commit per record.

`python -m benchmarks.naive SITEMAP_URL LIMIT` walks the sitemap, fetches record pages one
after another, reads the labelled fields with BeautifulSoup and stores each record with its own
ORM session commit (DATABASE_URL): the way a first scraper is usually written. Prints one JSON
line with the number of records stored. For comparison only.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime

import requests
from bs4 import BeautifulSoup
from sqlalchemy.orm import Session

from harvester import models
from harvester.config import database_url
from harvester.db import create_engine_for, ensure_schema
from harvester.urls import is_record_url

LOC = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>")


def record_urls(session: requests.Session, sitemap: str) -> list[str]:
    urls: list[str] = []
    for loc in LOC.findall(session.get(sitemap, timeout=30).text):
        loc = loc.replace("&amp;", "&")
        if loc.endswith(".xml"):
            urls += record_urls(session, loc)
        elif is_record_url(loc):
            urls.append(loc)
    return urls


def scrape(html: str) -> dict[str, str]:
    soup = BeautifulSoup(html, "html.parser")
    fields: dict[str, str] = {}
    heading = soup.find("h1")
    fields["title"] = heading.get_text(" ", strip=True) if heading else ""
    for label in soup.select(".field__label, td.abstractLabel, .pub-field strong"):
        value = label.find_next_sibling()
        text = value.get_text(" ", strip=True) if value else ""
        fields[label.get_text(strip=True).rstrip(":")] = text
    return fields


def main(sitemap: str, limit: int) -> int:
    engine = create_engine_for(database_url())
    ensure_schema(engine, auto_migrate=True)
    http = requests.Session()
    stored = 0
    for url in record_urls(http, sitemap)[:limit]:
        fields = scrape(http.get(url, timeout=30).text)
        number = re.sub(r"\D", "", fields.get("NCJ Number", ""))
        if not number:
            continue
        now = datetime.now(UTC)
        with Session(engine) as session:
            session.merge(
                models.Record(
                    ncj_number=int(number),
                    title=fields.get("Title") or fields["title"],
                    abstract=fields.get("Abstract"),
                    annotation=fields.get("Annotation"),
                    layout="current",
                    source_url=url,
                    first_seen_at=now,
                    last_seen_at=now,
                    last_changed_at=now,
                    content_hash="",
                )
            )
            session.commit()
        stored += 1
    print(json.dumps({"records": stored}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
