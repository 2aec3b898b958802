"""harvester.entrypoints: scope (hosts and ports), sitemap reading, failure reasons."""

from __future__ import annotations

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadTimeoutError, IgnoreRequest, ResponseDataLossError
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from harvester.entrypoints import (
    CRAWL_CLOSING,
    Scope,
    failure_reason,
    ignored_kind,
    read_sitemap,
)
from harvester.errors import SitemapUnreadable
from harvester.localsite import Site
from harvester.monitoring import entry_point_alerts, nothing_stored_alerts
from tests.faultserver import _gzip_bomb, broken_xml, entity_bomb

SITE = Site(records=20, seed=3, per_sitemap=6)
SITEMAP = SITE.render_sitemap(1, "http://h").encode()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://127.0.0.1:5000/a", None),
        ("http://127.0.0.1:5001/a", "offsite"),
        ("http://localhost:5000/a", "offsite"),
        ("https://127.0.0.1:5000/a", None),
        ("ftp://127.0.0.1:5000/a", "not_http"),
        ("javascript:void(0)", "not_http"),
        ("mailto:someone@example.org", "not_http"),
        ("http://127.0.0.1:x/a", "not_http"),
    ],
)
def test_a_local_run_stays_on_its_host_and_port(url: str, refusal: str | None) -> None:
    assert Scope.of(["http://127.0.0.1:5000/sitemap.xml"]).refusal(url) == refusal


def test_the_live_site_scope_takes_its_sister_hosts_on_both_default_ports() -> None:
    scope = Scope.of(["https://www.ojp.gov/robots.txt"])
    assert scope.refusal("http://www.ncjrs.gov/App/Publications/abstract.aspx?ID=1") is None
    assert scope.refusal("https://bjs.ojp.gov/library/publications/x") is None
    assert scope.refusal("https://ojp.gov:8443/x") == "offsite"
    assert scope.refusal("https://example.org/x") == "offsite"


def test_read_sitemap() -> None:
    document = read_sitemap(SITEMAP, 10**6)
    assert (document.kind, len(document.entries), document.damage) == ("urlset", 6, None)
    index = read_sitemap(SITE.render_sitemap_index("http://h").encode(), 10**6)
    assert (index.kind, len(index.entries)) == ("sitemapindex", 4)
    bombed = read_sitemap(entity_bomb(SITEMAP, after=2), 10**6)
    assert (bombed.damage, bombed.entries) == ("entity_declarations", document.entries[:2])
    broken = read_sitemap(broken_xml(SITEMAP, after=2), 10**6)
    assert broken.damage == "broken_xml"
    assert broken.entries[:2] == document.entries[:2]
    assert len(broken.entries) == 3  # the damaged entry's "broken" text, then lxml gives up


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_gzip_bomb(2 * 10**6), "too_large"),
        (b"\x1f\x8b\x08garbage", "not_xml"),
        (b"<html><body>maintenance</body></html>", "not_a_sitemap"),
        (b"hello", "not_xml"),
        (b"", "not_xml"),
    ],
)
def test_unreadable_sitemaps(body: bytes, reason: str) -> None:
    with pytest.raises(SitemapUnreadable) as raised:
        read_sitemap(body, 10**6)
    assert raised.value.reason == reason


def _failure(error: Exception) -> Failure:
    try:
        raise error
    except Exception:
        return Failure()


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (IgnoreRequest("Forbidden by robots.txt"), "robots", "robots_blocked"),
        (IgnoreRequest("Filtered offsite request to 'x:1'"), "offsite", "offsite_redirect"),
        (IgnoreRequest("max redirections reached"), "redirect_limit", "redirect_loop"),
        (IgnoreRequest("... exceeded DOWNLOAD_MAXSIZE (5 B) ..."), "too_large", "too_large"),
        (IgnoreRequest("request budget of 3 spent"), "budget", None),
        # a distributed run's reconcile asks for it again: no failure may be recorded
        (IgnoreRequest(f"{CRAWL_CLOSING}: a request waiting for its turn"), "closing", None),
        (DownloadTimeoutError("took too long"), None, "timeout"),
        (ResponseDataLossError("lost"), None, "data_loss"),
        (ConnectionRefusedError("no"), None, "fetch_failed"),
    ],
)
def test_failure_reasons(error: Exception, kind: str | None, reason: str | None) -> None:
    failure = _failure(error)
    assert ignored_kind(failure) == kind
    assert failure_reason(failure) == reason


def test_an_http_error_is_not_an_ignored_request() -> None:
    response = Response("http://h/x", status=404, request=Request("http://h/x"))
    failure = _failure(HttpError(response, "Ignoring non-200 response"))
    assert ignored_kind(failure) is None
    assert failure_reason(failure) == "fetch_failed"


def test_entry_point_alerts() -> None:
    assert entry_point_alerts({}) == []
    failed = [f"sitemap http://h/s{n}.xml: fetch_failed (answered HTTP 404)" for n in range(5)]
    stats = {"harvester/entry_points_failed": 5, "harvester/failed_entry_points": failed}
    assert entry_point_alerts(stats) == [
        "5 entry point(s) could not be read, were blocked or are damaged, so the pages they "
        f"list may be missing (read again by the next run): {'; '.join(failed[:3])}; and 2 "
        "more (crawl_runs.stats harvester/failed_entry_points)"
    ]


def test_nothing_stored_alerts() -> None:
    listed = {"harvester/listed_record_pages": 7}
    assert nothing_stored_alerts({}, {}) == []
    assert nothing_stored_alerts({"records_new": 0}, listed) == [
        "the entry points listed 7 record page(s) but the run stored none of them "
        "(see harvester/ignored and harvester/errors in crawl_runs.stats)"
    ]
    for figure in ("records_new", "records_unchanged", "pages_not_modified", "pages_skipped"):
        assert nothing_stored_alerts({figure: 1}, listed) == []
