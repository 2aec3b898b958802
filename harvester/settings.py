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
# Our `scrapy crawl`: exit status 3 when the run fails its checks (harvester/monitoring.py).
COMMANDS_MODULE = "harvester.commands"

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
# A record page is 30-100 KiB and answers in well under a second; sitemaps (up to 50,000
# URLs) get a larger limit per request in the spider.
DOWNLOAD_TIMEOUT = 30
REDIRECT_MAX_TIMES = 5  # legacy -> current is 1-2 hops; more is a loop
DOWNLOAD_MAXSIZE = 4 * 1024 * 1024
DOWNLOAD_WARNSIZE = 1024 * 1024
RETRY_TIMES = 3

# What Scrapy does not do by itself (harvester/politeness.py): pause a host on 429/503 for its
# Retry-After (at most HARVESTER_RETRY_AFTER_MAX s) or, without one, for an exponential,
# jittered backoff from HARVESTER_BACKOFF_BASE up to HARVESTER_BACKOFF_MAX s that starts over
# after HARVESTER_BACKOFF_RESET quiet seconds; honour robots.txt Crawl-delay up to
# HARVESTER_MAX_CRAWL_DELAY s; treat a robots.txt that fails (5xx, network) as "disallow
# all" and ask again after HARVESTER_ROBOTS_RETRY s; stop after HARVESTER_MAX_REQUESTS
# requests (0: no limit; -a max_requests=N for one run).
HARVESTER_RETRY_AFTER_MAX = 600.0
HARVESTER_BACKOFF_BASE = 5.0
HARVESTER_BACKOFF_MAX = 300.0
HARVESTER_BACKOFF_RESET = 120.0
HARVESTER_MAX_CRAWL_DELAY = 30.0
HARVESTER_ROBOTS_RETRY = 300.0
HARVESTER_MAX_REQUESTS = 0
DOWNLOADER_MIDDLEWARES = {
    # Scrapy's robots.txt middleware, with RFC 9309's rules for a robots.txt that fails.
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "harvester.politeness.RobotsTxtMiddleware": 100,
    # Scrapy's offsite filter, with ports, and one that tells the request's errback
    # (harvester/entrypoints.py).
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "harvester.entrypoints.OffsiteMiddleware": 50,
    "harvester.politeness.RequestBudgetMiddleware": 110,
    # With a Redis server (HARVESTER_REDIS_URL), each request waits for its host's turn in one
    # schedule shared by every worker (harvester/sharedrate.py). Last before the downloader
    # slot: requests refused by robots.txt, the offsite filter or the budget spend no turn,
    # and a request leaves right after its turn.
    "harvester.sharedrate.SharedRateMiddleware": 950,
}
# Incremental crawls send the stored ETag / Last-Modified; False always fetches bodies.
HARVESTER_CONDITIONAL_REQUESTS = True
# Incremental crawls do not read a sitemap whose lastmod in the sitemap index is not newer
# than when a run last handled every page it lists (False: read every sitemap).
HARVESTER_SKIP_UNCHANGED_SITEMAPS = True
COOKIES_ENABLED = False
# No console on a local port: the telnet console and Scrapy's remote-control server both run
# Python code sent to them, which a scheduled harvest never needs (tests/test_security.py).
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

# One item per record page: Scrapy starts CONCURRENT_ITEMS asyncio tasks per response to
# process its items (its default, 100, costs a crawl about a fifth of its time, scrapy#5182),
# and more than one buys nothing here.
CONCURRENT_ITEMS = 1

# A fetched page -> a verdict -> one record per NCJ number -> the database (pipelines.py).
ITEM_PIPELINES = {
    "harvester.pipelines.JudgePipeline": 100,
    "harvester.pipelines.DedupePipeline": 300,
    "harvester.pipelines.StorePipeline": 400,
}
# Processes that judge fetched pages (parse, normalize, validate, hash) off the reactor
# thread, so that fetching and judging use two cores; 0 judges them in the reactor thread.
# Measured on 2 cores (docs/performance.md): 1 is as fast as 0 or faster, and faster than 2
# (a second process takes the core the reactor thread and the writer need).
HARVESTER_JUDGE_PROCESSES = 1
# Scrapy's stats collector without its per-lookup deprecation shim (harvester/statscollector.py).
STATS_CLASS = "harvester.statscollector.StatsCollector"
# Write the records in a process of their own (harvester/writerprocess.py), off the GIL the
# reactor thread needs; False writes them in a thread of the crawl's process. A distributed
# run always writes in a thread.
HARVESTER_WRITER_PROCESS = True
# Scrapy's own scheduler for a run on one machine; with HARVESTER_REDIS_URL, the shared
# scheduler of a distributed run (harvester/distributed.py).
SCHEDULER = "harvester.distributed.RunScheduler"
# A distributed run: the Redis (or Valkey) server all its workers share, e.g.
# redis://:password@10.0.0.5:6379/0 (also the HARVESTER_REDIS_URL environment variable; read
# by harvester.config.redis_url). None: a run on one machine.
HARVESTER_REDIS_URL = None
# Record requests the coordinator keeps in the shared queue at most; the rest wait in its
# own buffer (a coordinator that dies leaves them to the end-of-run reconcile), so that
# Redis holds a bounded queue whatever the size of the site.
HARVESTER_REDIS_BUFFER = 500
# A distributed run none of whose workers beat for this long (seconds) is abandoned: the next
# worker to start ends it ("abandoned") and starts a new run, rather than resume one whose
# dupefilter would hide every page it issued, however long ago. Resuming within this time
# (a fleet restarted after a deploy or a reboot) keeps its queue and its progress.
HARVESTER_REDIS_RESUME_WITHIN = 3600.0
EXTENSIONS = {
    # The run's owner: lock and heartbeat, writer, frontier, watchdog, counters, checks,
    # summary (crawl_session.py).
    "harvester.crawl_session.CrawlRun": 100,
    # Pauses a host on 429/503 and keeps its Crawl-delay (politeness.py). It acts on the
    # response_downloaded signal, whose handlers run in the order they were connected: after
    # AutoThrottle (an extension of order 0 in EXTENSIONS_BASE) has set the slot's delay.
    "harvester.politeness.HostBackoff": 200,
    "harvester.extensions.CrawlProgress": 510,
}
# A progress line (pages done, pages/s, left, ETA) this often; 0 turns it off.
HARVESTER_PROGRESS_INTERVAL = 60.0

# Checks after every run (harvester/monitoring.py): a breach is an error line, an entry in
# crawl_runs.alerts and exit status 3.
HARVESTER_MAX_ERROR_RATE = 0.05
HARVESTER_MAX_QUARANTINE_RATE = 0.05
HARVESTER_MAX_UNRECOGNISED_RATE = 0.05
HARVESTER_NEW_LABEL_SHARE = 0.2
HARVESTER_MAX_COVERAGE_DROP = 0.25
HARVESTER_CHECK_MIN_RECORDS = 50
HARVESTER_CHECK_MIN_PAGES = 10
HARVESTER_CHECK_HISTORY = 5
# Record pages a run may leave unfetched (errors, timeouts, robots.txt, redirects) or unstored
# (the database refused the record) and still pass. 0: a run that exits 0 stored everything.
HARVESTER_MAX_MISSING = 0

# A record whose every URL answered 404/410 or a soft 404 on this many runs in a row, counted
# at most once per HARVESTER_WITHDRAW_MIN_INTERVAL seconds, gets records.withdrawn_at (never
# deleted); 5xx and timeouts never count. Seeing it again clears the tombstone.
HARVESTER_WITHDRAW_AFTER_RUNS = 3
HARVESTER_WITHDRAW_MIN_INTERVAL = 86400.0

# The completeness ledger (record_urls.gap_*): a URL whose record is not stored (an error, a
# timeout, a page with no record, a refused or quarantined record) is asked again by the next
# run, then after HARVESTER_GAP_RETRY_BASE seconds, twice as long each time, at most
# HARVESTER_GAP_RETRY_MAX (a week: a weekly schedule retries every gap on every run).
HARVESTER_GAP_RETRY_BASE = 3600.0
HARVESTER_GAP_RETRY_MAX = 7 * 86400.0
# Every stored record is re-checked (conditionally: a 304 costs no body) at least this often,
# each run taking its share of the collection. 90 days: NCJRS records rarely change after
# they are published, the sitemaps' lastmod already brings the changes, and a weekly run then
# re-checks 1/13 of the collection (about 18,000 of 235,000 pages, 2-3 hours at the polite
# default rate) instead of turning into a full crawl. 0 turns it off.
HARVESTER_REVALIDATE_DAYS = 90.0

# The database: None means "DATABASE_URL from the environment, else sqlite:///ncjrs.sqlite"
# (harvester.config.database_url is the one place that decides).
DATABASE_URL = None
# Apply migrations to a brand-new database before crawling (always for new SQLite files).
HARVESTER_AUTO_MIGRATE = None
# Records are written in batches: at most this many, or this many seconds after the first.
HARVESTER_BATCH_SIZE = 500
HARVESTER_BATCH_SECONDS = 5.0
# A write that fails transiently (connection lost, "database is locked", serialization
# failure, deadlock) is retried with a backoff for this long before its records count as
# unwritten (the run then fails its checks): long enough for a PostgreSQL restart or a backup
# holding the SQLite write lock.
HARVESTER_DB_RETRY_SECONDS = 300.0
# The run writes crawl_runs.heartbeat_at and checks its PostgreSQL lock connection this often;
# a run whose heartbeat is 3 intervals (+5 s) old counts as killed.
HARVESTER_HEARTBEAT_INTERVAL = 5.0
# Stop the run (finish reason "no_progress", exit 3) when no response came and nothing was
# stored for this long while requests were outstanding. It must outlast the longest quiet
# spell a healthy crawl has: a host paused for Retry-After (HARVESTER_RETRY_AFTER_MAX, 600 s)
# plus one request's retries (DOWNLOAD_TIMEOUT x (RETRY_TIMES + 1) = 120 s); 900 s leaves room.
HARVESTER_NO_PROGRESS_TIMEOUT = 900.0

# `-a ncj=...` turns NCJ numbers into URLs with this template.
NCJ_URL_TEMPLATE = LEGACY_NCJ_URL_TEMPLATE

# Keep each record's and quarantined page's HTML (zstd-compressed, once per distinct body) so
# that `harvester reparse` and `harvester quarantine replay` need no request (rawpages.py).
HARVESTER_STORE_RAW_PAGES = True

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Dropped items are logged with their reason only (quarantined ones are in the database).
LOG_FORMATTER = "harvester.logformatter.HarvesterLogFormatter"
