"""harvester/coverage.py and `harvester coverage`: every figure of the ledger, on both databases.

The database is built by hand around real stored records (tests/support.store_records): URL
states with and without gaps, quarantine rows open and resolved, withdrawn records, chapters
whose book is missing, read sitemaps and crawl runs. Every figure below follows from those
rows, so each is asserted exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, delete, insert, text, update

from harvester import models
from harvester.cli import main
from harvester.coverage import (
    CoverageReport,
    GapCount,
    SourceCount,
    coverage_report,
    missing_summary,
    still_missing,
)
from harvester.db import ensure_schema
from tests.support import fixture_records, store_records

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SITEMAP_A = "https://ojp.gov/sitemap.xml?page=1"
SITEMAP_B = "https://ojp.gov/sitemap.xml?page=2"
SITEMAP_C = "https://ojp.gov/sitemap.xml?page=3"
# Ages of last verification, one per record in turn: each bucket gets records.
AGES = (
    timedelta(hours=2),  # <1 day
    timedelta(days=3),  # <7 days
    timedelta(days=10),  # <30 days
    timedelta(days=45),  # <90 days
    timedelta(days=200),  # <365 days
    timedelta(days=400),  # older
)
# Sitemaps by record, in turn: A gets the most URLs, then None, then B, then C.
RECORD_SITEMAPS = (SITEMAP_A, SITEMAP_A, None, SITEMAP_B, SITEMAP_A, SITEMAP_C)


def ago(age: timedelta) -> datetime:
    return NOW - age


def url_row(url: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "url": url,
        "ncj_number": None,
        "kind": "record",
        "first_seen_at": ago(timedelta(days=500)),
        "last_seen_at": ago(timedelta(days=500)),
        "last_status": 200,
        "redirect_chain": [],
        # Every column in every row: an executemany INSERT takes its columns from the first.
        "gap_reason": None,
        "gap_detail": None,
        "gap_since": None,
        "gap_attempts": 0,
        "retry_at": None,
        "sitemap_url": None,
    }
    row.update(values)
    return row


LEDGER_RECORDS = frozenset(
    (13629, 25901, 70780, 75395, 78126, 82197, 90001, 107134, 121277, 191386, 192383, 206598)
) | {210296, 211931, 213071, 229379, 255621}


@pytest.fixture
def ledger(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    ensure_schema(engine, auto_migrate=True)
    # The fixture pages this ledger was built on (later fixtures, e.g. charset faults, add more).
    records = sorted(
        (r for r in fixture_records() if r.ncj_number in LEDGER_RECORDS), key=lambda r: r.ncj_number
    )
    assert len(records) == 17
    store_records(engine, records, now=ago(timedelta(days=500)))
    numbers = [r.ncj_number for r in records]
    # Fixture chapters name books 121271 and 206597, which are not stored; one more chapter of
    # 121271, and one of a stored book (70780), which is not missing.
    assert {r.ncj_number: r.part_of for r in records if r.part_of} == {
        121277: 121271,
        206598: 206597,
    }
    withdrawn = numbers[-2:]  # 229379, 255621
    unverified = numbers[-5:-2]  # 211931, 213071: no URL of kind 'record'; 210296 neither
    verified = numbers[:-5]  # 12 records
    rows: list[dict[str, Any]] = []
    for i, ncj in enumerate(verified):
        rows.append(
            url_row(
                f"https://ojp.gov/record/{ncj}",
                ncj_number=ncj,
                last_seen_at=ago(AGES[i % len(AGES)]),
                sitemap_url=RECORD_SITEMAPS[i % len(RECORD_SITEMAPS)],
            )
        )
    # An old alias of the first record: its freshest URL decides (<1 day).
    rows.append(url_row(f"https://ncjrs.gov/alias/{verified[0]}", ncj_number=verified[0]))
    for ncj in withdrawn:
        rows.append(url_row(f"https://ojp.gov/record/{ncj}", ncj_number=ncj, kind="gone"))
    rows.append(url_row(f"https://ojp.gov/record/{unverified[0]}", ncj_number=unverified[0],
                        kind="soft_404", sitemap_url=SITEMAP_B))  # fmt: skip
    # Gaps. Timeouts: two never answered (gap since first seen), one answered before.
    rows += [
        url_row("https://ojp.gov/t1", kind="failed", last_status=0, sitemap_url=SITEMAP_A,
                first_seen_at=ago(timedelta(days=20)), gap_since=ago(timedelta(days=20)),
                gap_reason="timeout", gap_attempts=4, retry_at=NOW + timedelta(hours=6)),
        url_row("https://ojp.gov/t2", kind="failed", last_status=0, sitemap_url=SITEMAP_A,
                first_seen_at=ago(timedelta(days=2)), gap_since=ago(timedelta(days=2)),
                gap_reason="timeout", gap_attempts=1, retry_at=ago(timedelta(hours=1))),
        url_row("https://ojp.gov/t3", kind="failed", last_status=0, sitemap_url=SITEMAP_B,
                first_seen_at=ago(timedelta(days=90)), gap_since=ago(timedelta(days=5)),
                gap_reason="timeout", gap_attempts=2, retry_at=NOW + timedelta(days=2)),
        url_row("https://ojp.gov/n1", kind="no_record_fields", sitemap_url=SITEMAP_C,
                gap_since=ago(timedelta(days=7)), gap_reason="not_a_record", gap_attempts=1),
        url_row("https://ojp.gov/n2", kind="several_records",
                gap_since=ago(timedelta(days=8)), gap_reason="not_a_record", gap_attempts=3,
                retry_at=NOW),
        url_row("https://ojp.gov/s1", kind="quarantined", ncj_number=999001,
                gap_since=ago(timedelta(days=1)), gap_reason="store_error", gap_attempts=1,
                retry_at=NOW + timedelta(days=1), gap_detail="IntegrityError"),
        url_row("https://ojp.gov/r1", kind="failed", last_status=0,
                first_seen_at=ago(timedelta(days=3)), gap_since=ago(timedelta(days=3)),
                gap_reason="robots_blocked", gap_attempts=2,
                retry_at=NOW + timedelta(days=3)),
    ]  # fmt: skip
    quarantine = [
        ("https://ojp.gov/q1", "missing_title", None),
        ("https://ojp.gov/q1", "missing_title", None),  # the same page on another run
        ("https://ojp.gov/q2", "shifted_values", None),
        ("https://ojp.gov/s1", "store_error", None),
        ("https://ojp.gov/q3", "missing_title", ago(timedelta(days=1))),  # resolved
    ]
    with engine.begin() as connection:
        connection.execute(delete(models.RecordUrl))
        connection.execute(insert(models.RecordUrl), rows)
        connection.execute(
            update(models.Record)
            .where(models.Record.ncj_number.in_(withdrawn))
            .values(withdrawn_at=ago(timedelta(days=30)))
        )
        connection.execute(
            update(models.Record).where(models.Record.ncj_number == 13629).values(part_of=121271)
        )
        connection.execute(
            update(models.Record).where(models.Record.ncj_number == 25901).values(part_of=70780)
        )
        connection.execute(
            insert(models.Quarantine),
            [
                {
                    "url": url,
                    "reason": reason,
                    "fetched_at": ago(timedelta(days=2)),
                    "resolved_at": resolved,
                    "resolution": "stored" if resolved else None,
                }
                for url, reason, resolved in quarantine
            ],
        )
        connection.execute(
            insert(models.SitemapState),
            [
                {"url": SITEMAP_A, "lastmod": ago(timedelta(days=9)), "entries": 7,
                 "read_at": ago(timedelta(days=2))},
                {"url": SITEMAP_C, "lastmod": ago(timedelta(days=9)), "entries": 4,
                 "read_at": ago(timedelta(days=2))},
            ],
        )  # fmt: skip
        for started, reason in ((ago(timedelta(days=8)), "finished"), (ago(timedelta(1)), None)):
            connection.execute(
                insert(models.CrawlRun).values(
                    spider="ncjrs", arguments={}, started_at=started, finish_reason=reason
                )
            )
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return engine


def report_of(engine: Engine, **options: Any) -> CoverageReport:
    with engine.connect() as connection:
        return coverage_report(connection, now=NOW, **options)


def test_every_figure_of_the_ledger(ledger: Engine) -> None:
    report = report_of(ledger, top_sitemaps=2, first_missing_parents=1)
    assert report.generated_at == NOW
    # 12 verified records (sitemaps A, A, none, B, A, C twice over), the alias, 2 gone, 1 soft
    # 404 (B) and 7 gaps: 23 URLs. A: 6 records, t1, t2; B: 2, the soft 404, t3; C: 2, n1;
    # none: 2 records, the alias, 2 gone, n2, s1, r1.
    known = report.known_urls
    assert known.total == 23
    assert known.sources == (
        SourceCount("sitemap", SITEMAP_A, 1, 8, 6, 2, 7),
        SourceCount("sitemap", SITEMAP_B, 1, 4, 2, 1, None),
        SourceCount("other_sitemaps", None, 1, 3, 2, 1, 4),
        SourceCount("arguments", None, 0, 8, 3, 3, None),
    )
    assert [s.label for s in known.sources] == [
        SITEMAP_A,
        SITEMAP_B,
        "1 more sitemap",
        "listing/url/ncj arguments",
    ]
    assert (known.sitemaps, known.sitemaps_read, known.sitemap_entries) == (3, 2, 11)
    assert (report.records.stored, report.records.withdrawn, report.records.current) == (17, 2, 15)
    assert report.quarantine.open_urls == 3
    assert report.quarantine.open_rows == 4
    assert report.quarantine.by_reason == {
        "missing_title": 1,
        "shifted_values": 1,
        "store_error": 1,
    }
    gaps = report.gaps
    assert (gaps.total, gaps.due) == (7, 3)
    assert gaps.by_reason == (
        GapCount("timeout", 3, 1, ago(timedelta(days=20)), ago(timedelta(hours=1)), 4),  # t2 is due
        GapCount("not_a_record", 2, 2, ago(timedelta(days=8)), NOW, 3),  # NULL and NOW are due
        GapCount("robots_blocked", 1, 0, ago(timedelta(days=3)), NOW + timedelta(days=3), 2),
        GapCount("store_error", 1, 0, ago(timedelta(days=1)), NOW + timedelta(days=1), 1),
    )
    assert gaps.counts() == {"timeout": 3, "not_a_record": 2, "robots_blocked": 1, "store_error": 1}
    # t1, t2, r1 failed since first seen; t3 had answered before.
    assert (report.never_fetched.failed_urls, report.never_fetched.never_answered) == (4, 3)
    # 12 verified records over 6 age buckets, two each; the alias (500 days) does not count.
    assert report.verification.buckets == {
        "<1 day": 2,
        "<7 days": 2,
        "<30 days": 2,
        "<90 days": 2,
        "<365 days": 2,
        ">=365 days": 2,
    }
    assert report.verification.unverified == 3  # 15 current records - 12 verified
    parents = report.missing_parents
    assert (parents.numbers, parents.chapters, parents.first) == (2, 3, (121271,))
    assert report_of(ledger).missing_parents.first == (121271, 206597)
    assert report.crawl_runs == 2
    assert report.last_run is not None
    assert (report.last_run.id, report.last_run.finish_reason) == (2, None)
    assert report.last_run.started_at == ago(timedelta(days=1))
    assert missing_summary(report) == (
        "still missing: 7 (3 timeout, 2 not_a_record, 1 robots_blocked, 1 store_error),"
        " 3 quarantined"
    )
    with ledger.connect() as connection:
        assert still_missing(connection, NOW) == missing_summary(report)


def test_top_sitemaps_and_an_empty_database(ledger: Engine, engine: Engine) -> None:
    report = report_of(ledger, top_sitemaps=0)
    assert report.known_urls.sources == (
        SourceCount("other_sitemaps", None, 3, 15, 10, 4, 11),
        SourceCount("arguments", None, 0, 8, 3, 3, None),
    )
    report = report_of(ledger, top_sitemaps=5)
    assert [s.sitemap for s in report.known_urls.sources] == [
        SITEMAP_A,
        SITEMAP_B,
        SITEMAP_C,
        None,
    ]
    with engine.begin() as connection:
        for table in (models.RecordUrl, models.Quarantine, models.SitemapState):
            connection.execute(delete(table))
        connection.execute(delete(models.Record))
        connection.execute(delete(models.CrawlRun))
    empty = report_of(engine)
    assert empty.known_urls.total == 0
    assert empty.known_urls.sources == ()
    assert empty.records.stored == 0
    assert empty.gaps.by_reason == ()
    assert empty.verification.buckets == dict.fromkeys(
        ("<1 day", "<7 days", "<30 days", "<90 days", "<365 days", ">=365 days"), 0
    )
    assert empty.missing_parents.first == ()
    assert empty.last_run is None
    assert missing_summary(empty) == "nothing missing"
    with engine.begin() as connection:
        connection.execute(
            insert(models.Quarantine).values(
                url="https://ojp.gov/q", reason="missing_title", fetched_at=NOW
            )
        )
        assert still_missing(connection) == "nothing missing, 1 quarantined"


def documented_query(comment: str) -> str:
    """The statement under ``-- COMMENT`` in docs/schema.md's example queries."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text(encoding="utf-8")
    statement = doc.split(f"-- {comment}\n", 1)[1].split(";", 1)[0]
    return statement


def test_the_documented_ledger_queries_agree(ledger: Engine) -> None:
    report = report_of(ledger)
    with ledger.connect() as connection:
        gaps = connection.execute(
            text(
                documented_query(
                    "The completeness ledger: gaps by reason, the oldest and the next retry"
                )
            )
        ).all()
        sources = connection.execute(
            text(documented_query("Known URLs by the sitemap that listed them"))
        ).all()
    assert {row[0]: (row[1], row[4]) for row in gaps} == {
        gap.reason: (gap.urls, gap.max_attempts) for gap in report.gaps.by_reason
    }
    assert [row[1] for row in gaps] == [3, 2, 1, 1]
    assert {row[0]: (row[1], row[2]) for row in sources} == {
        s.sitemap: (s.urls, s.record_pages) for s in report.known_urls.sources
    }


def invoke(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments))
    return result.exit_code, result.output


def test_coverage_command_text_and_json(ledger: Engine) -> None:
    code, output = invoke("coverage", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert set(data) == {
        "generated_at",
        "known_urls",
        "records",
        "quarantine",
        "gaps",
        "never_fetched",
        "verification",
        "missing_parents",
        "crawl_runs",
        "last_run",
    }
    assert data["known_urls"]["total"] == 23
    assert data["known_urls"]["sources"][0] == {
        "kind": "sitemap",
        "sitemap": SITEMAP_A,
        "label": SITEMAP_A,
        "sitemaps": 1,
        "urls": 8,
        "record_pages": 6,
        "gaps": 2,
        "listed": 7,
    }
    assert data["records"] == {"stored": 17, "withdrawn": 2, "current": 15}
    assert data["quarantine"]["open_urls"] == 3
    assert data["gaps"]["total"] == 7
    assert data["gaps"]["by_reason"][0]["reason"] == "timeout"
    assert data["gaps"]["by_reason"][0]["urls"] == 3
    # The clock of the command is the real one: only the fixed timestamps can be compared.
    assert data["gaps"]["by_reason"][0]["oldest_since"] == ago(timedelta(days=20)).isoformat()
    assert data["never_fetched"] == {"failed_urls": 4, "never_answered": 3}
    assert data["verification"]["unverified"] == 3
    assert data["missing_parents"] == {"numbers": 2, "chapters": 3, "first": [121271, 206597]}
    assert data["last_run"]["id"] == 2
    code, output = invoke("coverage")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("Coverage of ")
    assert "Known record URLs: 23, from 3 sitemaps and the arguments;" in output
    assert f"  {SITEMAP_A}     8        6     2       7" in lines
    assert "Records: 17 stored, 2 withdrawn, 15 current" in lines
    assert (
        "Quarantined (open): 3 URLs (1 missing_title, 1 shifted_values, 1 store_error; 4 rows)"
        in lines
    )
    assert any(line.startswith("  timeout ") and " 2026-05-12 12:00 " in line for line in lines)
    assert "Never fetched: 3 URLs no request ever brought a page for (4 whose last" in output
    assert (
        "Books named by chapters but not stored: 2 (NCJ 121271, 206597; named by 3 chapters)"
        in lines
    )
    assert lines[-1] == (
        "Still missing: 7 (3 timeout, 2 not_a_record, 1 robots_blocked, 1 store_error),"
        " 3 quarantined"
    )


def test_coverage_refuses_a_missing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.sqlite"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    code, output = invoke("coverage")
    assert code == 1
    assert output == (
        f"Error: no database at {missing}: crawl into it first (harvester demo makes "
        "ncjrs-demo.sqlite), or pass --database PATH_OR_URL\n"
    )
    assert not missing.exists()
