"""The page a run keeps for an NCJ number, whatever the order pages arrive in; conflicts counted."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from harvester import models
from harvester.conflicts import RunSightings, tie_break_url
from harvester.db import create_engine_for
from harvester.items import RawRecord, Record
from harvester.localsite import SiteHandle, serve_site
from harvester.normalize import content_hash, normalize_record
from harvester.parsing import parse_page
from tests.support import migrated, response_from_file
from tests.test_crawl import crawl


def fixture_record(name: str) -> Record:
    page = parse_page(response_from_file(name))
    assert isinstance(page, RawRecord)
    return normalize_record(page)


BASE = fixture_record("current_78126")
PAGES = {
    "publication": dataclasses.replace(
        BASE, layout="publication", source_url="https://bjs.ojp.gov/library/publications/p"
    ),
    "current, fewer fields": dataclasses.replace(
        BASE, abstract=None, source_url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/a"
    ),
    "current, later URL": dataclasses.replace(
        BASE, note="z", source_url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/c"
    ),
    "current, earlier URL": dataclasses.replace(
        BASE, note="b", source_url="https://ojp.gov/ncjrs/virtual-library/abstracts/b"
    ),
}


def kept_in(order: tuple[str, ...]) -> tuple[str, int]:
    """What a run passes on last (the page stored) and how many conflicts it counts."""
    sightings = RunSightings()
    kept, conflicts = "", 0
    for name in order:
        verdict = sightings.offer(PAGES[name], content_hash(PAGES[name]))
        kept = name if verdict.keep else kept
        conflicts += verdict.conflict is not None
    return kept, conflicts


def test_the_page_kept_does_not_depend_on_arrival_order() -> None:
    outcomes = {kept_in(order) for order in itertools.permutations(PAGES)}
    # Layout first, then filled fields, then the smaller canonical URL ("www." aside).
    assert outcomes == {("current, earlier URL", 3)}


def test_each_reason_is_named() -> None:
    sightings = RunSightings()
    reasons = []
    for name in (
        "publication",
        "current, fewer fields",
        "current, later URL",
        "current, earlier URL",
    ):
        verdict = sightings.offer(PAGES[name], content_hash(PAGES[name]))
        assert (verdict.keep and verdict.conflict is not None) or name == "publication"
        if verdict.conflict is not None:
            reasons.append(verdict.conflict.reason)
    assert reasons == ["layout", "filled_fields", "url"]
    assert str(
        sightings.offer(PAGES["publication"], content_hash(PAGES["publication"])).conflict
    ) == (
        "NCJ 78126 has other content at https://bjs.ojp.gov/library/publications/p than at"
        " https://ojp.gov/ncjrs/virtual-library/abstracts/b: keeping"
        " https://ojp.gov/ncjrs/virtual-library/abstracts/b (by layout)"
    )


def test_the_same_content_under_two_urls_or_one_url_twice_is_no_conflict() -> None:
    sightings = RunSightings()
    other_url = dataclasses.replace(BASE, source_url="https://ojp.gov/elsewhere")
    assert sightings.offer(BASE, content_hash(BASE)).keep
    again = sightings.offer(BASE, content_hash(BASE))
    assert (again.keep, again.conflict) == (False, None)
    moved = sightings.offer(other_url, content_hash(other_url))
    assert moved.conflict is None
    assert moved.keep  # same rank, and "ojp.gov/elsewhere" sorts first
    # One URL fetched twice (two legacy URLs redirecting to it) with other content between.
    sightings = RunSightings()
    changed_in_place = dataclasses.replace(BASE, note="edited meanwhile")
    sightings.offer(BASE, content_hash(BASE))
    assert sightings.offer(changed_in_place, content_hash(changed_in_place)).conflict is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "https://WWW.ncjrs.gov.:443/App/Publications/abstract.aspx?ID=7",
            "https://ncjrs.gov/app/publications/abstract.aspx?id=7",
        ),
        ("https://www.ojp.gov/a/b/", "https://ojp.gov/a/b"),
        ("http://ojp.gov:80/x", "http://ojp.gov/x"),
        ("https://ojp.gov", "https://ojp.gov/"),
    ],
)
def test_host_variants_share_a_canonical_url(first: str, second: str) -> None:
    assert tie_break_url(first)[0] == tie_break_url(second)[0]
    assert tie_break_url(first) != tie_break_url(second)  # still ordered, as fetched


@pytest.fixture(scope="module")
def site() -> Iterator[SiteHandle]:
    with serve_site(records=100, seed=3, publication_share=0.3) as handle:
        yield handle


def test_a_crawl_counts_and_logs_its_conflicts(database_url: str, site: SiteHandle) -> None:
    """Records with a bureau publication page: two pages, other content, the abstract kept."""
    with_publication = {
        t["ncj_number"]: t["url"] for t in site.truth() if t["publication"] is not None
    }
    assert len(with_publication) > 5
    migrated(database_url)
    log = crawl(database_url, f"sitemap={site.base_url}/sitemap.xml")
    assert log.count("Conflict: NCJ") == len(with_publication)
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            run = connection.execute(select(models.CrawlRun)).one()
            stored = dict(
                connection.execute(
                    select(models.Record.ncj_number, models.Record.source_url).where(
                        models.Record.ncj_number.in_(with_publication)
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert run.conflicts == run.stats["harvester/conflicts"] == len(with_publication)
    assert stored == with_publication
