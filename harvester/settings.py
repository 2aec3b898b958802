"""Scrapy settings for `scrapy crawl ncjrs`. Defaults are polite to the live site."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from harvester.urls import LEGACY_NCJ_URL_TEMPLATE

try:
    _VERSION = version("ncjrs-harvester")
except PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0"

BOT_NAME = "ncjrs-harvester"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"

# Who we are and how to reach us: set HARVESTER_CONTACT (an e-mail or URL) for live crawls.
HARVESTER_CONTACT = ""
USER_AGENT = f"ncjrs-harvester/{_VERSION} (bibliographic harvester; +https://pypi.org/project/ncjrs-harvester/)"

# Politeness on the live site: robots.txt, at most 2 requests at a time per host, and
# AutoThrottle slowing down further when the site answers slowly.
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 60
REDIRECT_MAX_TIMES = 5
# A record page is tens of KiB; anything near this is not a record page.
DOWNLOAD_MAXSIZE = 8 * 1024 * 1024
DOWNLOAD_WARNSIZE = 2 * 1024 * 1024
RETRY_TIMES = 3
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False

# One item per record page: Scrapy's default of 100 concurrent items per response only adds
# scheduling overhead here (scrapy#5182).
CONCURRENT_ITEMS = 8

ITEM_PIPELINES = {
    "harvester.pipelines.NormalizePipeline": 100,
    "harvester.pipelines.ValidatePipeline": 200,
    "harvester.pipelines.DedupePipeline": 300,
    "harvester.pipelines.StorePipeline": 400,
}
EXTENSIONS = {
    "harvester.extensions.CrawlSummary": 500,
}

# The database: None means "DATABASE_URL from the environment, else sqlite:///ncjrs.sqlite"
# (harvester.config.database_url is the one place that decides).
DATABASE_URL = None
# Apply migrations to a brand-new database before crawling (always for new SQLite files).
HARVESTER_AUTO_MIGRATE = None
# Records are written in batches: at most this many, or this many seconds after the first.
HARVESTER_BATCH_SIZE = 500
HARVESTER_BATCH_SECONDS = 5.0

# `-a ncj=...` turns NCJ numbers into URLs with this template.
NCJ_URL_TEMPLATE = LEGACY_NCJ_URL_TEMPLATE

# Keep each record's and quarantined page's HTML (zstd-compressed, once per distinct body) so
# that `harvester reparse` and `harvester quarantine replay` need no request (rawpages.py).
HARVESTER_STORE_RAW_PAGES = True

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Dropped items are logged with their reason only (quarantined ones are in the database).
LOG_FORMATTER = "harvester.logformatter.HarvesterLogFormatter"
