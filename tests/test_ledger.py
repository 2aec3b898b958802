"""The completeness ledger (record_urls.gap_*): why a URL's record is not stored, and when a
run asks again; what a run asks for besides its entry points (harvester.urlstate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from harvester import models
from harvester.db import ensure_schema
from harvester.incremental import RevisitPolicy
from harvester.urls import canonical_url
from harvester.urlstate import (
    GapRetry,
    dropped_from_sitemap,
    due_gaps,
    gone_record_urls,
    known_pages,
    revalidation_due,
    write_url_states,
)
from tests.test_urlstate import CURRENT, LEGACY, NOW, rows, visit

RETRY = GapRetry(base=timedelta(hours=1), cap=timedelta(days=7))
SITEMAP = "https://ojp.gov/sitemap-1.xml"


def failed(url: str = CURRENT, reason: str = "timeout", **changes: object) -> object:
    return visit(
        url=url,
        status=0,
        kind="failed",
        redirect_urls=[],
        etag=None,
        last_modified=None,
        sitemap_lastmod=None,
        ncj_number=None,
        gap_reason=reason,
        gap_detail="took longer than 30 seconds",
        **changes,
    )


def write(engine: Engine, visits: list[object], at: datetime = NOW) -> None:
    with engine.begin() as connection:
        write_url_states(connection, visits, at, retry=RETRY)  # type: ignore[arg-type]


def test_a_url_that_never_answered_is_a_gap_retried_next_run_then_backed_off(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [failed(sitemap_url=SITEMAP)])
    row = rows(engine)[canonical_url(CURRENT)]
    assert (row.kind, row.ncj_number, row.gap_reason) == ("failed", None, "timeout")
    assert (row.gap_attempts, row.gap_since, row.retry_at) == (1, NOW, NOW)
    assert row.gap_detail == "took longer than 30 seconds"
    assert row.sitemap_url == SITEMAP
    assert row.requested_url == CURRENT  # "www." kept: the next request goes where this did

    later = NOW + timedelta(days=1)
    write(engine, [failed(reason="fetch_failed")], later)
    row = rows(engine)[canonical_url(CURRENT)]
    assert (row.gap_reason, row.gap_attempts, row.gap_since) == ("fetch_failed", 2, NOW)
    assert row.retry_at == later + timedelta(hours=1)
    write(engine, [failed()], later)
    assert rows(engine)[canonical_url(CURRENT)].retry_at == later + timedelta(hours=2)


def test_retry_backoff_is_capped() -> None:
    assert RETRY.retry_at(1, NOW) == NOW
    assert RETRY.retry_at(5, NOW) == NOW + timedelta(hours=8)
    assert RETRY.retry_at(40, NOW) == NOW + timedelta(days=7)
    # A quarantined record is a verdict on the page: it waits from the start.
    assert RETRY.retry_at(1, NOW, "quarantined") == NOW + timedelta(hours=1)


def test_a_failure_keeps_what_is_known_of_a_stored_record_and_an_answer_clears_the_gap(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit()])
    write(engine, [failed(url=LEGACY, reason="data_loss")], NOW + timedelta(hours=1))
    legacy = rows(engine)[canonical_url(LEGACY)]
    assert (legacy.kind, legacy.ncj_number, legacy.etag) == ("record", 78126, '"v1"')
    assert legacy.last_seen_at == NOW  # no answer: not seen
    assert (legacy.gap_reason, legacy.gap_attempts) == ("data_loss", 1)

    write(engine, [visit()], NOW + timedelta(hours=2))
    legacy = rows(engine)[canonical_url(LEGACY)]
    assert legacy.gap_reason is None
    assert (legacy.gap_attempts, legacy.gap_since, legacy.retry_at) == (0, None, None)


def test_an_answer_in_the_same_batch_outranks_a_failure(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit(), failed(url=LEGACY)])
    assert rows(engine)[canonical_url(LEGACY)].gap_reason is None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("no_record_fields", "not_a_record"),  # an empty body, a captcha, an outage page
        ("not_html", "not_a_record"),
        ("several_records", "not_a_record"),
    ],
)
def test_soft_errors_at_record_urls_are_gaps_never_handled(
    engine: Engine, kind: str, reason: str
) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit(kind=kind, ncj_number=None)])
    url = canonical_url(CURRENT)
    assert rows(engine)[url].gap_reason == reason
    with engine.connect() as connection:
        known = known_pages(connection, [url])[url]
    policy = RevisitPolicy(started=NOW)
    # Whatever the sitemap lastmod says, and with no validators that a 304 could confirm.
    assert policy.wants(known, datetime(2024, 5, 1, tzinfo=UTC))
    assert policy.wants_listed(known)
    assert policy.headers(known) == {}
    # Not before its retry time.
    write(engine, [visit(kind=kind, ncj_number=None)], NOW + timedelta(minutes=1))
    with engine.connect() as connection:
        known = known_pages(connection, [url])[url]
    assert not RevisitPolicy(started=NOW + timedelta(minutes=2)).wants(
        known, datetime(2024, 5, 1, tzinfo=UTC)
    )


def test_a_quarantined_record_is_a_gap_asked_again_after_the_base_delay(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit(kind="quarantined")])
    row = rows(engine)[canonical_url(CURRENT)]
    assert (row.gap_reason, row.gap_attempts) == ("quarantined", 1)
    assert row.retry_at == NOW + timedelta(hours=1)
    with engine.connect() as connection:
        assert due_gaps(connection, NOW) == []
        assert sorted(due_gaps(connection, NOW + timedelta(hours=1))) == [LEGACY, CURRENT]


def test_a_store_error_is_a_gap_with_its_reason(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    refused = visit(kind="quarantined", ncj_number=None, gap_reason="store_error")
    write(engine, [refused])
    assert rows(engine)[canonical_url(CURRENT)].gap_reason == "store_error"


def test_due_gaps_in_their_requested_spelling_by_retry_time(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    other = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/other-record"
    write(engine, [failed(url=CURRENT)])
    write(engine, [failed(url=other)])
    write(engine, [failed(url=other)], NOW + timedelta(minutes=1))  # 2nd attempt: +1 h
    with engine.connect() as connection:
        assert due_gaps(connection, NOW) == [CURRENT]
        assert due_gaps(connection, NOW + timedelta(hours=2)) == [CURRENT, other]


def test_gone_record_urls_are_asked_every_run(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit(), visit(url=LEGACY, redirect_urls=[], kind="gone", status=404)])
    with engine.connect() as connection:
        assert gone_record_urls(connection) == [LEGACY]


def _record(engine: Engine, number: int, seen: datetime, withdrawn: bool = False) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(models.Record.__table__),
            {
                "ncj_number": number,
                "title": "T",
                "layout": "current",
                "source_url": f"https://www.ojp.gov/ncjrs/virtual-library/abstracts/r-{number}",
                "first_seen_at": seen,
                "last_seen_at": seen,
                "last_changed_at": seen,
                "content_hash": "0" * 64,
                "document_urls": [],
                "extra_fields": {},
                "withdrawn_at": seen if withdrawn else None,
            },
        )


def _run(engine: Engine, started: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(models.CrawlRun.__table__),
            {"spider": "ncjrs", "arguments": {}, "started_at": started},
        )


def test_revalidation_takes_the_share_of_the_period_since_the_last_run(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    period = timedelta(days=90)
    for number in range(1, 91):  # verified one a day, oldest first
        _record(engine, number, NOW - timedelta(days=89) + timedelta(days=number - 1))
    _record(engine, 500, NOW - timedelta(days=200), withdrawn=True)  # withdrawn: not asked
    url = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/r-{}".format
    with engine.connect() as connection:
        assert revalidation_due(connection, NOW, period, NOW) == []  # a new database
    _run(engine, NOW - timedelta(days=9))
    with engine.connect() as connection:
        # 9 days of 90: a tenth of the 90 live records, the least recently verified.
        assert revalidation_due(connection, NOW, period, NOW) == [url(n) for n in range(1, 10)]
    _record(engine, 91, NOW - timedelta(days=120))
    _record(engine, 92, NOW - timedelta(days=100))
    with engine.connect() as connection:
        due = revalidation_due(connection, NOW, period, NOW)
    assert due[:2] == [url(91), url(92)]  # overdue first, and the share still taken
    assert len(due) == 9  # floor(92 * 0.1)
    # Overdue records are all taken, whatever the share: 60 days on, with a run the day
    # before (a share of 1), the 59 records verified more than 90 days ago and 91, 92.
    later = NOW + timedelta(days=60)
    _run(engine, later - timedelta(days=1))
    with engine.connect() as connection:
        due = revalidation_due(connection, later, period, later)
    assert due == [url(91), url(92), *(url(n) for n in range(1, 60))]


def test_dropped_from_sitemap(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    other = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/other-record"
    write(
        engine,
        [
            visit(redirect_urls=[], sitemap_url=SITEMAP),
            visit(url=other, redirect_urls=[], ncj_number=5, sitemap_url=SITEMAP),
        ],
    )
    with engine.connect() as connection:
        assert dropped_from_sitemap(connection, SITEMAP, [canonical_url(CURRENT)]) == [other]
    # Asked and still there, but listed nowhere now: its sitemap is cleared.
    write(engine, [visit(url=other, redirect_urls=[], ncj_number=5, sitemap_url="")])
    assert rows(engine)[canonical_url(other)].sitemap_url is None
    with engine.connect() as connection:
        assert dropped_from_sitemap(connection, SITEMAP, [canonical_url(CURRENT)]) == []


def test_known_pages_reads_the_gap(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [failed()])
    url = canonical_url(CURRENT)
    with engine.connect() as connection:
        known = known_pages(connection, [url])[url]
    assert (known.kind, known.gap_reason, known.retry_at) == ("failed", "timeout", NOW)
    assert known.gap_due(NOW)
    assert not known.gap_due(NOW - timedelta(seconds=1))


def test_rows_is_keyed_by_canonical_url(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    write(engine, [visit()])
    assert set(rows(engine)) == {canonical_url(CURRENT), canonical_url(LEGACY)}
