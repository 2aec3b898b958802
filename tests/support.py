"""Test helpers: frozen page fixtures served as Scrapy responses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scrapy.http import HtmlResponse, Request
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.localsite import SiteHandle
from harvester.normalize import parse_date

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


# --- Crawls: real `scrapy crawl ncjrs` processes against the local site ----------------------

REPO = Path(__file__).resolve().parents[1]
# A local site is ours to load: no throttling. Small batches so that short crawls write often.
LOCAL_SITE = {
    "AUTOTHROTTLE_ENABLED": "0",
    "DOWNLOAD_DELAY": "0",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "16",
    "HARVESTER_BATCH_SIZE": "25",
    "LOG_LEVEL": "INFO",
}


def scrapy_command(*arguments: str, settings: dict[str, str] | None = None) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "ncjrs"]
    for name, value in {**LOCAL_SITE, **(settings or {})}.items():
        command += ["-s", f"{name}={value}"]
    for argument in arguments:
        command += ["-a", argument]
    return command


def scrapy_crawl(
    database_url: str, *arguments: str, settings: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run `scrapy crawl ncjrs -a ARGUMENT ...` from the repository root and wait for it."""
    return subprocess.run(
        scrapy_command(*arguments, settings=settings),
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def crawl(database_url: str, *arguments: str, settings: dict[str, str] | None = None) -> str:
    """`scrapy crawl ncjrs -a ARGUMENT ...` that must succeed; returns its log."""
    done = scrapy_crawl(database_url, *arguments, settings=settings)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def start_scrapy_crawl(
    database_url: str, *arguments: str, settings: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start `scrapy crawl ncjrs` without waiting (for signals); its log goes to stderr."""
    return subprocess.Popen(
        scrapy_command(*arguments, settings=settings),
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def migrated(database_url: str) -> None:
    """PostgreSQL databases are migrated on purpose (`alembic upgrade head`), as in production."""
    if database_url.startswith("postgresql"):
        env = {**os.environ, "DATABASE_URL": database_url}
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )


def stored_content(session: Session, record: models.Record) -> dict[str, Any]:
    """Rebuild a record's golden-format content from the database rows alone."""

    def people(role: str) -> list[Any]:
        rows = session.execute(
            select(models.RecordContributor, models.Contributor)
            .join(models.Contributor)
            .where(models.RecordContributor.ncj_number == record.ncj_number)
            .where(models.RecordContributor.role == role)
            .order_by(models.RecordContributor.position)
        ).all()
        if role == "corporate_author":
            return [link.name_as_shown for link, _ in rows]
        return [
            {
                "name": link.name_as_shown,
                "family": link.family,
                "given": link.given,
                "suffix": link.suffix,
            }
            for link, c in rows
        ]

    def agencies(role: str) -> list[str]:
        return list(
            session.scalars(
                select(models.RecordAgency.name_as_shown)
                .where(models.RecordAgency.ncj_number == record.ncj_number)
                .where(models.RecordAgency.role == role)
                .order_by(models.RecordAgency.position)
            )
        )

    created = parse_date(record.date_created_text)
    return {
        "ncj_number": record.ncj_number,
        "title": record.title,
        "chapter_of": {
            "parent_ncj_number": record.part_of,
            "book_title": record.book_title,
            "pages": record.part_pages,
        }
        if record.part_of is not None
        else None,
        "journal": {
            "raw": record.journal_citation,
            "name": record.journal_name,
            "volume": record.journal_volume,
            "issue": record.journal_issue,
            "dated": record.journal_dated,
            "pages": record.journal_pages,
        }
        if record.journal_citation is not None
        else None,
        "authors": people("author"),
        "editors": people("editor"),
        "corporate_authors": people("corporate_author"),
        "published": {
            "text": record.published_text,
            "year": record.published_year,
            "month": record.published_month,
            "day": record.published_day,
            "precision": record.published_precision,
        }
        if record.published_text is not None
        else None,
        "date_created": None
        if created is None
        else {
            "text": created.text,
            "year": created.year,
            "month": created.month,
            "day": created.day,
            "precision": created.precision,
        },
        "page_count": record.page_count,
        "annotation": record.annotation,
        "abstract": record.abstract,
        "sponsoring_agencies": agencies("sponsor"),
        "agencies": agencies("agency"),
        "grant_numbers": sorted(g.grant_number for g in record.grants),
        "sale_source": record.sale_source,
        "publisher": record.publisher,
        "document_urls": record.document_urls,
        "publication_type": record.publication_type,
        "publication_format": record.publication_format,
        "language": record.language,
        "country": record.country,
        "publication_series": record.publication_series,
        "note": record.note,
        "subjects": sorted(s.subject for s in record.subjects),
        "extra_fields": record.extra_fields,
    }


def assert_matches_truth(engine: Engine, site: SiteHandle) -> None:
    truth = list(site.truth())
    expected_records = {t["ncj_number"]: t for t in truth if t["kind"] == "record"}
    rejected = {t["url"]: t["rejection"] for t in truth if t["kind"] == "rejected"}
    with Session(engine) as session:
        stored = {r.ncj_number: r for r in session.scalars(select(models.Record))}
        assert sorted(stored) == sorted(expected_records)
        for ncj_number, entry in expected_records.items():
            expected = dict(entry["expected"])
            expected["grant_numbers"] = sorted(expected["grant_numbers"])
            expected["subjects"] = sorted(expected["subjects"])
            assert stored_content(session, stored[ncj_number]) == expected, ncj_number
            record = stored[ncj_number]
            assert record.first_seen_at <= record.last_seen_at
            assert record.layout == entry["layout"]
            assert len(record.content_hash) == 64
        quarantined = {q.url: q.reason for q in session.scalars(select(models.Quarantine))}
        for url, reason in rejected.items():
            assert quarantined.get(url) == reason


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


def hold_sqlite_write_lock(path: str, seconds: float) -> threading.Thread:
    """Another connection takes the SQLite file's write lock and keeps it for ``seconds``."""
    locked = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None, timeout=60)
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(60)
    return thread
