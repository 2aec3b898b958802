"""Incremental crawls: the revisit policy, and re-runs over a local site that changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.incremental import RevisitPolicy, parse_lastmod, parse_since
from harvester.localsite import SiteHandle, serve_site
from harvester.urls import canonical_url, is_record_url
from harvester.urlstate import KnownPage
from tests.support import assert_matches_truth, crawl

STORED = datetime(2024, 5, 1, tzinfo=UTC)
KNOWN = KnownPage("record", 1, STORED, '"abc"', "Wed, 01 May 2024 00:00:00 GMT")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_lastmod(text: str | None, expected: datetime | None) -> None:
    assert parse_lastmod(text) == expected


def test_parse_since_says_what_it_wants() -> None:
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="use YYYY-MM-DD"):
        parse_since("May 2024")


@pytest.mark.parametrize(
    ("policy", "known", "lastmod", "wanted"),
    [
        (RevisitPolicy(), None, STORED, True),  # never stored
        (RevisitPolicy(), KNOWN, STORED, False),  # listed as before
        (RevisitPolicy(), KNOWN, datetime(2024, 4, 1, tzinfo=UTC), False),
        (RevisitPolicy(), KNOWN, datetime(2024, 5, 2, tzinfo=UTC), True),  # changed since
        (RevisitPolicy(), KNOWN, None, True),  # no lastmod: revalidate
        (RevisitPolicy(), KNOWN._replace(sitemap_lastmod=None), STORED, True),
        (RevisitPolicy(full=True), KNOWN, STORED, True),
        (RevisitPolicy(since=datetime(2024, 4, 1, tzinfo=UTC)), KNOWN, STORED, True),
        (RevisitPolicy(since=datetime(2024, 6, 1, tzinfo=UTC)), KNOWN, STORED, False),
        (RevisitPolicy(), KNOWN._replace(kind="gone"), STORED, True),  # still gone?
        (RevisitPolicy(), KNOWN._replace(kind="soft_404", ncj_number=None), STORED, False),
    ],
)
def test_which_sitemap_entries_are_requested(
    policy: RevisitPolicy, known: KnownPage | None, lastmod: datetime | None, wanted: bool
) -> None:
    assert policy.wants(known, lastmod) is wanted


def test_listed_records_are_new_ones_unless_full() -> None:
    assert RevisitPolicy().wants_listed(None)
    assert not RevisitPolicy().wants_listed(KNOWN)
    assert RevisitPolicy(full=True).wants_listed(KNOWN)


def test_conditional_headers_carry_the_stored_validators() -> None:
    assert RevisitPolicy().headers(KNOWN) == {
        "If-None-Match": '"abc"',
        "If-Modified-Since": "Wed, 01 May 2024 00:00:00 GMT",
    }
    assert RevisitPolicy().headers(None) == {}
    assert RevisitPolicy(conditional=False).headers(KNOWN) == {}


# --- Re-runs over a changing site ------------------------------------------------------------


@pytest.fixture
def site() -> Iterator[SiteHandle]:
    with serve_site(records=120, seed=11) as handle:
        yield handle


def record_page_requests(site: SiteHandle) -> list[tuple[str, int]]:
    return [(r.target, r.status) for r in site.requests() if is_record_url(site.url(r.target))]


def runs(engine: Engine) -> list[models.CrawlRun]:
    with Session(engine) as session:
        return list(session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id)))


def test_a_rerun_fetches_exactly_the_changed_pages(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    sitemap = f"sitemap={site.base_url}/sitemap.xml"
    crawl(database_url, sitemap)
    changed = [t for t in site.truth() if t["kind"] == "record"][3:9:2]
    site.revise([t["index"] for t in changed])
    site.clear_requests()

    crawl(database_url, sitemap)

    expected = {t["url"] for t in changed} | {
        t["publication"]["url"] for t in changed if t["publication"]
    }
    requested = record_page_requests(site)
    assert sorted(site.url(target) for target, _ in requested) == sorted(expected)
    assert {status for _, status in requested} == {200}
    assert_matches_truth(engine_for, site)  # the changed annotations are stored
    last = runs(engine_for)[-1]
    assert (last.records_new, last.records_updated) == (0, len(changed))
    assert last.pages_skipped == sum(
        1 for k, _ in site.site.sitemap_entries() if k != "topic"
    ) - len(expected)
    with Session(engine_for) as session:
        for entry in changed:
            record = session.get(models.Record, entry["ncj_number"])
            assert record is not None
            assert "Revised edition 1." in (record.annotation or "")
            state = session.scalars(
                select(models.RecordUrl).where(models.RecordUrl.url == canonical_url(entry["url"]))
            ).one()
            assert state.sitemap_lastmod == parse_lastmod(
                site.site.truth_entry(entry["index"], "")["lastmod"]
            )


def test_revalidation_touches_last_seen_and_changes_nothing(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    with Session(engine_for) as session:
        before = {
            r.ncj_number: (r.last_seen_at, r.last_changed_at)
            for r in session.scalars(select(models.Record))
        }
    site.clear_requests()
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml", "full=1")
    assert {status for _, status in record_page_requests(site)} == {304}
    with Session(engine_for) as session:
        for record in session.scalars(select(models.Record)):
            seen, changed = before[record.ncj_number]
            assert record.last_seen_at > seen
            assert record.last_changed_at == changed


def test_since_rechecks_the_entries_modified_since_that_day(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    since = datetime(2024, 6, 1, tzinfo=UTC)
    recent = {
        site.url(site.site.entry_path(entry))
        for entry in site.site.sitemap_entries()
        if entry[0] != "topic" and site.site.entry_lastmod(entry) >= since
    }
    assert 0 < len(recent) < 120
    site.clear_requests()
    crawl(database_url, f"sitemap={site.base_url}/sitemap.xml", "since=2024-06-01")
    assert {site.url(target) for target, _ in record_page_requests(site)} == recent


def test_a_newest_first_listing_stops_at_a_page_of_stored_records(
    site: SiteHandle, database_url: str, engine_for: Engine
) -> None:
    truth = list(site.truth())
    size = site.site.options.page_size
    # Everything but the two newest listing pages is already stored.
    older = [site.url(site.site.listing_href(t["index"])) for t in truth[2 * size :]]
    crawl(database_url, "url=" + ",".join(older))
    site.clear_requests()

    crawl(database_url, f"listing={site.base_url}/ncjrs/virtual-library/abstracts?page=0")

    listing_pages = [
        target
        for target, _ in ((r.target, r.status) for r in site.requests())
        if "?page=" in target
    ]
    assert listing_pages == [f"/ncjrs/virtual-library/abstracts?page={n}" for n in range(3)]
    fetched = {site.url(target) for target, _ in record_page_requests(site)}
    newest = {site.url(site.site.listing_href(t["index"])) for t in truth[: 2 * size]}
    assert newest <= fetched
    assert not fetched & set(older)
    with Session(engine_for) as session:
        stored = set(session.scalars(select(models.Record.ncj_number)))
    assert {t["ncj_number"] for t in truth if t["kind"] == "record"} <= stored


def test_unchanged_sitemaps_are_not_read_again(database_url: str, engine_for: Engine) -> None:
    with serve_site(records=120, seed=11, per_sitemap=30) as site:
        sitemap = f"sitemap={site.base_url}/sitemap.xml"
        crawl(database_url, sitemap)
        site.clear_requests()
        crawl(database_url, sitemap)
        assert [r.target for r in site.requests()] == ["/robots.txt", "/sitemap.xml"]

        changed = next(t for t in site.truth() if t["kind"] == "record" and t["index"] > 60)
        site.revise([changed["index"]])
        site.clear_requests()
        crawl(database_url, sitemap)
        requested = [r.target for r in site.requests()]
        read = [target for target in requested if target.startswith("/sitemaps/")]
        assert len(read) == 1  # the one sitemap listing the changed record
        assert changed["url"].removeprefix(site.base_url) in requested

        site.clear_requests()
        crawl(database_url, sitemap, "full=1")  # full=1 reads every sitemap again
        read = [r.target for r in site.requests() if r.target.startswith("/sitemaps/")]
        assert len(read) == site.site.sitemap_count
    last = runs(engine_for)[-2]
    entries = sum(1 for kind, _ in site.site.sitemap_entries() if kind != "topic")
    assert last.pages_skipped == entries - len([t for t in requested if is_record_url(site.url(t))])
