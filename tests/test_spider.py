"""The spider's arguments and settings (its crawls are in test_crawl.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.settings import Settings

from harvester import settings as project_settings
from harvester.errors import BadArgument
from spiders.arguments import SpiderArguments
from spiders.ncjrs import NcjrsSpider


def settings(**overrides: object) -> Settings:
    values = Settings()
    values.setmodule(project_settings, priority="project")
    for name, value in overrides.items():
        values.set(name, value, priority="cmdline")
    return values


def test_no_arguments_means_the_live_sites_robots_sitemaps() -> None:
    spider = NcjrsSpider()
    assert spider.sitemap_urls == ["https://www.ojp.gov/robots.txt"]


def test_arguments_are_split_and_files_read(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("# a comment\nhttp://h/a\n\nhttp://h/b\n")
    (tmp_path / "ncj.txt").write_text("191386\n 206598 \n")
    spider = NcjrsSpider(
        url="http://h/c, http://h/d",
        urls_file=str(tmp_path / "urls.txt"),
        ncj="1,2",
        ncj_file=str(tmp_path / "ncj.txt"),
    )
    assert spider.record_urls == ["http://h/c", "http://h/d", "http://h/a", "http://h/b"]
    assert spider.ncj_numbers == [1, 2, 191386, 206598]
    assert spider.sitemap_urls == []
    assert spider.arguments["ncj"] == "1,2"


def test_live_site_defaults_are_polite() -> None:
    values = settings()
    assert values.getbool("ROBOTSTXT_OBEY")
    assert values.getbool("AUTOTHROTTLE_ENABLED")
    assert values.getint("CONCURRENT_REQUESTS_PER_DOMAIN") <= 2
    assert "ncjrs-harvester" in values["USER_AGENT"]


def test_contact_goes_into_the_user_agent() -> None:
    values = settings(HARVESTER_CONTACT="librarian@example.org")
    NcjrsSpider.update_settings(values)
    assert values["USER_AGENT"].endswith("; librarian@example.org)")


def test_an_explicit_user_agent_wins() -> None:
    values = settings(HARVESTER_CONTACT="x@example.org", USER_AGENT="mine/1.0")
    NcjrsSpider.update_settings(values)
    assert values["USER_AGENT"] == "mine/1.0"


def test_the_arguments_are_listed_once_and_only_those_given_are_recorded() -> None:
    assert SpiderArguments.names() == tuple(SpiderArguments.help())
    assert all(SpiderArguments.help().values())
    spider = NcjrsSpider(sitemap="http://h/sitemap.xml", full="1", _job="kept")
    assert spider.arguments == {"sitemap": "http://h/sitemap.xml", "full": "1"}
    assert spider.full
    assert spider._job == "kept"  # type: ignore[attr-defined]  # scrapyd's, kept by Scrapy
    with pytest.raises(BadArgument, match="no such argument"):
        NcjrsSpider(sitemaps="http://h/sitemap.xml")  # a typo must not crawl the live site
