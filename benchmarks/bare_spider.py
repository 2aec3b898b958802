"""The crawl benchmark's baseline: a bare Scrapy spider that judges each page and keeps nothing.

`python -m benchmarks.bare_spider SITEMAP_URL` runs Scrapy's own SitemapSpider, with Scrapy's
default settings except the product's local-site concurrency (harvester.cli.LOCAL_SITE_SETTINGS:
32 requests at a time, no delay, no AutoThrottle) and the plain Scrapy tuning the product's
settings also make (BARE_FROM_PROJECT: robots.txt, cookies off, CONCURRENT_ITEMS, limits), over
the same URLs as `scrapy crawl ncjrs -a sitemap=SITEMAP_URL`: the sitemap index, its sitemaps, and
every record page they list (harvester.urls.is_record_url). Each page goes through
harvester.judge.judge_response(response, keep_page=False): the project's parser, normalizer,
validator and content hash, in the spider callback on the reactor thread, as a plain spider
would do it. Nothing is stored, de-duplicated in a database, or yielded as an item.

Prints one JSON line: pages judged, verdicts, distinct NCJ numbers judged records, and the
crawl's own elapsed seconds (Scrapy's elapsed_time_seconds).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse
from scrapy.spiders import SitemapSpider
from scrapy.utils.sitemap import Sitemap

from harvester import settings as project_settings
from harvester.cli import LOCAL_SITE_SETTINGS
from harvester.judge import judge_response
from harvester.urls import is_record_url

# Scrapy settings of the product that any spider could use, so that the baseline is not slower
# for want of them: Scrapy's default CONCURRENT_ITEMS (100) alone starts 100 asyncio tasks per
# response, which costs a bare spider about a fifth of its time.
BARE_FROM_PROJECT = (
    "ROBOTSTXT_OBEY",
    "COOKIES_ENABLED",
    "TELNETCONSOLE_ENABLED",
    "CONCURRENT_ITEMS",
    "DOWNLOAD_TIMEOUT",
    "DOWNLOAD_MAXSIZE",
    "DOWNLOAD_WARNSIZE",
    "REDIRECT_MAX_TIMES",
    "RETRY_TIMES",
)
BARE_SETTINGS: dict[str, Any] = {
    **{name: getattr(project_settings, name) for name in BARE_FROM_PROJECT},
    **LOCAL_SITE_SETTINGS,
    "LOG_LEVEL": "WARNING",
}


class BareSpider(SitemapSpider):
    name = "bare"
    sitemap_rules: ClassVar = [("", "judge")]

    def __init__(self, sitemap: str, **kwargs: Any) -> None:
        self.sitemap_urls = [sitemap]
        super().__init__(**kwargs)
        self.verdicts: Counter[str] = Counter()
        self.records: set[int] = set()

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every sitemap of an index; of a sitemap's pages, the record pages."""
        index = isinstance(entries, Sitemap) and entries.type == "sitemapindex"
        for entry in entries:
            if index or is_record_url(entry["loc"]):
                yield entry

    def judge(self, response: Response) -> None:
        if not isinstance(response, TextResponse):
            self.verdicts["not_text"] += 1
            return
        judgement = judge_response(response, keep_page=False)
        self.verdicts[judgement.verdict] += 1
        if judgement.verdict == "record" and judgement.record is not None:
            self.records.add(judgement.record.ncj_number)


def run(sitemap: str) -> dict[str, Any]:
    process = CrawlerProcess(BARE_SETTINGS)
    crawler = process.create_crawler(BareSpider)
    process.crawl(crawler, sitemap=sitemap)
    process.start()
    spider = crawler.spider
    assert isinstance(spider, BareSpider)
    assert crawler.stats is not None
    stats = crawler.stats.get_stats()
    return {
        "pages": sum(spider.verdicts.values()),
        "verdicts": dict(spider.verdicts),
        "records": len(spider.records),
        "crawl_seconds": stats.get("elapsed_time_seconds"),
        "responses": stats.get("downloader/response_count"),
        "finish_reason": stats.get("finish_reason"),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.bare_spider SITEMAP_URL", file=sys.stderr)
        return 2
    print(json.dumps(run(argv[0])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
