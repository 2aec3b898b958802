"""The local site over real HTTP on 127.0.0.1 (server in a child process)."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import psutil
import pytest
from lxml import etree
from lxml import html as lxml_html

from harvester.localsite import Site, SiteHandle, serve_site
from harvester.localsite.generator import CURRENT_PREFIX, LEGACY_ALT_ID_BASE

RECORDS = 700
SITEMAP_NS = {"sm": "http://www.sitemaps.org/schemas/sitemap/0.9"}

Fetched = tuple[int, dict[str, str], bytes]


@pytest.fixture(scope="module")
def handle() -> Iterator[SiteHandle]:
    with serve_site(records=RECORDS, seed=11, per_sitemap=150) as h:
        yield h


def fetch(
    handle: SiteHandle, url_or_path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Fetched:
    """One request on a fresh connection; redirects are not followed."""
    parts = urlsplit(url_or_path)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(handle.host, handle.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def index_of_url(site: Site, url: str) -> int | None:
    """Record index a (current or legacy) record URL points at."""
    parts = urlsplit(url)
    if parts.path.lower() == "/app/publications/abstract.aspx":
        value = parts.query.split("=", 1)[1]
        return site.index_of_legacy_id(int(value))
    if parts.path.startswith(CURRENT_PREFIX + "/"):
        return site.index_of_slug(parts.path.rsplit("/", 1)[1])
    return None


def test_robots(handle: SiteHandle) -> None:
    status, headers, body = fetch(handle, "/robots.txt")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "User-agent: *" in text
    assert "Allow: /" in text
    assert f"Sitemap: {handle.base_url}/sitemap.xml" in text


def test_urls_follow_the_host_header(handle: SiteHandle) -> None:
    _, _, body = fetch(handle, "/robots.txt", headers={"Host": "example.test:4321"})
    assert "Sitemap: http://example.test:4321/sitemap.xml" in body.decode()
    truth = handle.site.truth_entry(0, handle.base_url)
    legacy = truth["urls"]["legacy"]
    if handle.site.layout(0) == "current":
        status, headers, _ = fetch(handle, legacy, headers={"Host": "example.test:4321"})
        assert status == 301
        assert headers["location"].startswith("http://example.test:4321/")


def sitemap_locs(handle: SiteHandle) -> list[tuple[str, str]]:
    status, headers, body = fetch(handle, "/sitemap.xml")
    assert status == 200
    assert headers["content-type"] == "application/xml"
    index = etree.fromstring(body)
    pages = index.xpath("//sm:sitemap", namespaces=SITEMAP_NS)
    assert len(pages) == handle.site.sitemap_count > 1
    locs = []
    for page in pages:
        loc = page.findtext("sm:loc", namespaces=SITEMAP_NS)
        assert page.findtext("sm:lastmod", namespaces=SITEMAP_NS)
        status, headers, body = fetch(handle, loc)
        assert status == 200
        assert headers["content-type"] == "application/xml"
        urls = etree.fromstring(body).xpath("//sm:url", namespaces=SITEMAP_NS)
        assert 0 < len(urls) <= 150
        for url in urls:
            lastmod = url.findtext("sm:lastmod", namespaces=SITEMAP_NS)
            assert lastmod
            assert lastmod[:4].isdigit()
            locs.append((url.findtext("sm:loc", namespaces=SITEMAP_NS), lastmod))
    return locs


def test_sitemaps_list_every_record_once(handle: SiteHandle) -> None:
    site = handle.site
    locs = [loc for loc, _ in sitemap_locs(handle)]
    assert len(locs) == len(set(locs))
    truth = handle.truth()
    primary = {t["url"] for t in truth}
    publications = {t["urls"]["publication"] for t in truth if t["urls"]["publication"]}
    assert primary <= set(locs)
    assert publications
    assert publications <= set(locs)
    others = [u for u in locs if u not in primary and u not in publications]
    topics = [u for u in others if "/topics/" in u]
    soft = [u for u in others if CURRENT_PREFIX in u]
    assert len(topics) + len(soft) == len(others)
    assert 0.01 < len(topics) / len(locs) < 0.03
    assert 1 <= len(soft) <= 10
    assert all(u.startswith(handle.base_url + "/") for u in locs)
    # sitemap entries resolve: records 200 (legacy-only) or 200 (current), non-records 200
    for url in topics[:5]:
        status, _, body = fetch(handle, url)
        assert status == 200
        assert b"field__label" not in body
        assert b"NCJ Number" not in body
    for url in soft:
        status, _, body = fetch(handle, url)
        assert status == 200
        h1 = lxml_html.fromstring(body).xpath("string(//h1)")
        assert h1 == "Page not found"
    assert site.records == len(primary)


def test_record_pages(handle: SiteHandle) -> None:
    site = handle.site
    legacy = next(i for i in range(RECORDS) if site.layout(i) == "legacy")
    current = next(
        i for i in range(RECORDS) if site.layout(i) == "current" and not site.rejection(i)
    )
    status, headers, body = fetch(handle, site.urls(current, handle.base_url)["current"] or "")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert f">{site.ncj_number(current)}<".encode() in body
    status, _, body = fetch(handle, site.urls(legacy, handle.base_url)["legacy"] or "")
    assert status == 200
    assert b'id="aspnetForm"' in body
    status, _, _ = fetch(handle, site.urls(legacy, handle.base_url)["legacy_variant"] or "")
    assert status == 200
    # a legacy-only record has no current page
    status, _, _ = fetch(handle, f"{CURRENT_PREFIX}/{site.slug(legacy)}")
    assert status == 404


def test_legacy_urls_of_current_records_redirect(handle: SiteHandle) -> None:
    site = handle.site
    i = next(i for i in range(RECORDS) if site.layout(i) == "current")
    urls = site.urls(i, handle.base_url)
    for key in ("legacy", "legacy_variant"):
        status, headers, _ = fetch(handle, urls[key] or "")
        assert status == 301, key
        assert headers["location"] == urls["current"]
    ncj = site.ncj_number(i)
    for odd in (
        f"/app/PUBLICATIONS/abstract.aspx?Id={ncj}",
        f"/App/abstractdb/AbstractDBDetails.aspx?id={ncj}",
    ):
        status, headers, _ = fetch(handle, odd)
        assert status == 301
        assert headers["location"] == urls["current"]


def test_alternative_legacy_ids(handle: SiteHandle) -> None:
    site = handle.site
    alt = [i for i in range(RECORDS) if site.legacy_id(i) >= LEGACY_ALT_ID_BASE]
    assert alt, "the test site's seed must give some legacy-only records an alternative id"
    i = alt[0]
    status, _, body = fetch(handle, site.urls(i, handle.base_url)["legacy"] or "")
    assert status == 200
    assert str(site.ncj_number(i)).encode() in body


def test_publication_pages(handle: SiteHandle) -> None:
    site = handle.site
    pub = next(i for i in range(RECORDS) if site.has_publication(i))
    status, _, body = fetch(handle, site.urls(pub, handle.base_url)["publication"] or "")
    assert status == 200
    assert b"Date Created:" in body
    plain = next(
        i for i in range(RECORDS) if site.layout(i) == "current" and not site.has_publication(i)
    )
    status, _, _ = fetch(handle, f"/library/publications/{site.slug(plain)}")
    assert status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/no/such/page",
        f"{CURRENT_PREFIX}/no-such-record",
        "/App/Publications/abstract.aspx?ID=1",
        "/App/Publications/abstract.aspx?ID=abc",
        "/App/Publications/abstract.aspx",
        "/sitemaps/sitemap-999.xml",
        f"{CURRENT_PREFIX}?page=999",
        "/topics/corrections/no-such-topic",
    ],
)
def test_unknown_paths_404(handle: SiteHandle, path: str) -> None:
    status, headers, _ = fetch(handle, path)
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8"


def test_section_pages(handle: SiteHandle) -> None:
    for path in ("/", "/library/publications", "/topics/corrections", "/funding/award-search"):
        status, _, body = fetch(handle, path)
        assert status == 200, path
        assert b"field__label" not in body


def test_head_request(handle: SiteHandle) -> None:
    status, headers, body = fetch(handle, "/robots.txt", method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0


def test_listing_pagination_reaches_every_record_once(handle: SiteHandle) -> None:
    site = handle.site
    url: str | None = f"{handle.base_url}{CURRENT_PREFIX}"
    seen: Counter[int] = Counter()
    pages = 0
    legacy_links = chrome_links = 0
    last_href = None
    while url:
        status, _, body = fetch(handle, url)
        assert status == 200
        pages += 1
        doc = lxml_html.fromstring(body)
        links = doc.xpath("//h3[@class='teaser__title']/a/@href")
        assert len(links) <= 25
        for href in links:
            i = index_of_url(site, href)
            assert i is not None, href
            seen[i] += 1
            legacy_links += "aspx" in href.lower()
        chrome_links += len(doc.xpath("//nav[@id='primary-nav']//a"))
        nxt = doc.xpath("//a[@rel='next']/@href")
        last_href = doc.xpath("//li[contains(@class, 'pager__item--last')]/a/@href") or last_href
        url = urljoin(url, nxt[0]) if nxt else None
    assert pages == site.listing_page_count == -(-RECORDS // 25)
    assert last_href == [f"?page={pages - 1}"]
    assert sorted(seen) == list(range(RECORDS))
    assert set(seen.values()) == {1}
    assert legacy_links > 0
    assert chrome_links > 100


def test_keep_alive_throughput_smoke(handle: SiteHandle) -> None:
    site = handle.site
    paths = [site.paths(i % RECORDS)["primary"] or "/" for i in range(500)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    handle.clear_requests()

    def worker(chunk: list[str]) -> None:
        conn = http.client.HTTPConnection(handle.host, handle.port, timeout=30)
        for path in chunk:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            with lock:
                statuses[resp.status] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(paths[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    finished = time.monotonic()
    assert statuses == Counter({200: 500})
    log = handle.requests()
    assert len(log) == 500
    assert all(started <= entry.time <= finished for entry in log)
    assert Counter(entry.target for entry in log) == Counter(paths)
    assert {entry.method for entry in log} == {"GET"}


def test_request_log(handle: SiteHandle) -> None:
    handle.clear_requests()
    fetch(handle, "/robots.txt")
    fetch(handle, "/nope")
    log = handle.requests()
    assert [(e.method, e.target, e.status) for e in log] == [
        ("GET", "/robots.txt", 200),
        ("GET", "/nope", 404),
    ]
    assert log[0].time <= log[1].time <= time.monotonic()


def test_options_status_overrides_and_gzip() -> None:
    with serve_site(records=50, seed=1, status_overrides={"/robots.txt": 503}, gzip=True) as h:
        status, headers, _ = fetch(h, "/robots.txt")
        assert status == 503
        assert headers["retry-after"] == "1"
        path = h.site.paths(0)["primary"] or "/"
        status, headers, body = fetch(h, path, headers={"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert b"</html>" in gzip.decompress(body)
    with pytest.raises(TypeError, match="no_such_option"), serve_site(records=5, no_such_option=1):
        pass


def test_process_is_gone_after_exit() -> None:
    with serve_site(records=20, seed=2) as h:
        pid, port = h.pid, h.port
        assert psutil.pid_exists(pid)
        assert fetch(h, "/robots.txt")[0] == 200
        # an idle keep-alive connection must not keep the server alive
        idle = http.client.HTTPConnection(h.host, h.port)
        idle.request("GET", "/robots.txt")
        idle.getresponse().read()
    assert not psutil.pid_exists(pid)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    idle.close()
