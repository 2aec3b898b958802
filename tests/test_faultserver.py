"""The fault-injecting test server itself (tests/faultserver.py): every fault, over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import time
from collections.abc import Iterator

import pytest

from harvester.localsite import Site
from tests.faultserver import FaultServer, fault_server

SITEMAP = "/sitemaps/sitemap-1.xml"


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with fault_server(Site(records=20, seed=3, per_sitemap=6)) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(server: FaultServer) -> None:
    server.clear_faults()
    server.clear_requests()


def get(
    server: FaultServer, path: str, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_serves_the_site_and_logs_requests(server: FaultServer) -> None:
    status, headers, body = get(server, SITEMAP, {"If-None-Match": '"x"'})
    assert status == 200
    assert headers["Content-Type"] == "application/xml"
    assert body.decode() == server.site.render_sitemap(1, server.base_url)
    (logged,) = server.requests
    assert (logged.method, logged.target, logged.status) == ("GET", SITEMAP, 200)
    assert logged.headers["if-none-match"] == '"x"'
    assert server.requested(SITEMAP) == 1


def test_status_and_times(server: FaultServer) -> None:
    server.fault(SITEMAP, status=503, times=2)
    assert [get(server, SITEMAP)[0] for _ in range(3)] == [503, 503, 200]


def test_raw_body_with_headers(server: FaultServer) -> None:
    server.fault("/x", body=b"\xff\xfe raw", headers={"Content-Type": "text/plain", "X-A": "1"})
    status, headers, body = get(server, "/x")
    assert (status, headers["Content-Type"], headers["X-A"], body) == (
        200,
        "text/plain",
        "1",
        b"\xff\xfe raw",
    )


def test_delay(server: FaultServer) -> None:
    server.fault(SITEMAP, delay=0.5)
    started = time.monotonic()
    assert get(server, SITEMAP)[0] == 200
    assert time.monotonic() - started >= 0.5
    server.fault(SITEMAP, delay=3)
    with pytest.raises(TimeoutError):
        get(server, SITEMAP, timeout=0.5)


def test_drop(server: FaultServer) -> None:
    server.fault(SITEMAP, drop=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(server, SITEMAP)
    assert server.requests[0].status is None


def test_truncate(server: FaultServer) -> None:
    server.fault(SITEMAP, truncate=10)
    with pytest.raises(http.client.IncompleteRead) as raised:
        get(server, SITEMAP)
    assert len(raised.value.partial) == 10


def test_redirect(server: FaultServer) -> None:
    server.fault("/a", redirect="/b", redirect_status=301)
    server.fault("/c", redirect="http://elsewhere.test/d")
    assert get(server, "/a")[1]["Location"] == server.url("/b")
    status, headers, _ = get(server, "/c")
    assert (status, headers["Location"]) == (302, "http://elsewhere.test/d")


def test_gzip_bomb(server: FaultServer) -> None:
    server.fault(SITEMAP, gzip_bomb=3 * 1024 * 1024)
    _, headers, body = get(server, SITEMAP)
    assert len(body) < 10_000
    assert len(gzip.decompress(body)) == 3 * 1024 * 1024
    assert "Content-Encoding" not in headers
    server.fault(SITEMAP, gzip_bomb=1024 * 1024, content_encoding=True)
    assert get(server, SITEMAP)[1]["Content-Encoding"] == "gzip"


def test_rewrite_and_robots(server: FaultServer) -> None:
    server.fault(SITEMAP, rewrite=lambda body: body.upper())
    expected = server.site.render_sitemap(1, server.base_url)
    assert get(server, SITEMAP)[2] == expected.upper().encode()
    server.robots("User-agent: *\nDisallow: /\n")
    assert get(server, "/robots.txt")[2] == b"User-agent: *\nDisallow: /\n"
    server.clear_fault("/robots.txt")
    assert b"Sitemap:" in get(server, "/robots.txt")[2]
