"""Which URLs are record pages, on any host, and where a crawl may go."""

from __future__ import annotations

import pytest

from harvester.urls import allowed_domains, canonical_url, is_record_url, ncj_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.ojp.gov/ncjrs/virtual-library/abstracts/library-services-correctional-facilities",
            True,
        ),
        (
            "https://ojp.gov./ncjrs/virtual-library/abstracts/behavioral-simulation-modules-cops-cops",
            True,
        ),
        (
            "https://nij.ojp.gov/library/publications/what-do-data-reveal-about-violence-schools",
            True,
        ),
        ("https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=78126", True),
        ("https://www.ncjrs.gov/App/publications/Abstract.aspx?id=233396", True),
        ("https://www.ncjrs.gov/App/abstractdb/AbstractDBDetails.aspx?id=206598", True),
        ("http://127.0.0.1:8123/ncjrs/virtual-library/abstracts/some-record", True),
        ("https://www.ojp.gov/ncjrs/virtual-library/abstracts?page=2", False),
        ("https://www.ojp.gov/ncjrs/virtual-library/topics", False),
        ("https://www.ojp.gov/pdffiles1/nij/255621.pdf", False),
        ("https://www.ncjrs.gov/App/Publications/abstract.aspx", False),
    ],
)
def test_is_record_url(url: str, expected: bool) -> None:
    assert is_record_url(url) is expected


def test_allowed_domains_cover_the_live_sites_sister_hosts() -> None:
    assert allowed_domains(["https://www.ojp.gov/robots.txt"]) == ["ojp.gov", "ncjrs.gov"]
    assert allowed_domains(["https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=1"]) == [
        "ojp.gov",
        "ncjrs.gov",
    ]


def test_allowed_domains_stay_on_a_mirror() -> None:
    assert allowed_domains(["http://127.0.0.1:8000/sitemap.xml", "http://127.0.0.1:8000/x"]) == [
        "127.0.0.1"
    ]


def test_ncj_url() -> None:
    template = "https://www.ncjrs.gov/App/Publications/abstract.aspx?ID={ncj}"
    assert ncj_url(template, 78126).endswith("?ID=78126")


@pytest.mark.parametrize(
    "url",
    [
        "https://nij.ojp.gov/library/publications/list?page=2",
        "https://nij.ojp.gov/library/publications/search",
        "https://www.ojp.gov/ncjrs/virtual-library/abstracts/rss.xml",
        "https://www.ojp.gov/ncjrs/virtual-library/abstracts/some-record?page=2",
    ],
)
def test_listings_and_feeds_are_not_record_pages(url: str) -> None:
    assert not is_record_url(url)


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.ojp.gov/ncjrs/virtual-library/abstracts/some-record",
        "https://ojp.gov/ncjrs/virtual-library/abstracts/some-record",
        "https://ojp.gov./ncjrs/virtual-library/abstracts/some-record/",
        "HTTPS://WWW.OJP.GOV:443/ncjrs/virtual-library/abstracts/some-record#main",
    ],
)
def test_host_variants_have_one_canonical_url(variant: str) -> None:
    assert canonical_url(variant) == "https://ojp.gov/ncjrs/virtual-library/abstracts/some-record"


def test_legacy_query_key_and_path_case_are_canonical() -> None:
    expected = "https://ncjrs.gov/app/publications/abstract.aspx?id=78126"
    assert (
        canonical_url("https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=78126") == expected
    )
    assert (
        canonical_url("https://www.ncjrs.gov/app/publications/Abstract.aspx?id=78126") == expected
    )


def test_canonical_url_keeps_what_tells_pages_apart() -> None:
    assert canonical_url("http://127.0.0.1:8000/a/b") == "http://127.0.0.1:8000/a/b"
    assert canonical_url("https://ojp.gov/A/B") != canonical_url("https://ojp.gov/a/b")
    assert canonical_url("http://ojp.gov/a") != canonical_url("https://ojp.gov/a")
