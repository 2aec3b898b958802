"""A fault-injecting HTTP server for the test suite (Scrapy's tests/mockserver.py is the model).

It serves the local NCJRS-style site of :mod:`harvester.localsite` (record pages, listings,
sitemaps, robots.txt, rendered by the same ``LocalSiteApp`` as ``serve_site``) from a thread of
the test process, on 127.0.0.1 and a free port, and answers chosen paths with a fault instead.
Faults are set and changed while it runs, so a test can crawl once with a fault and once
without it::

    with fault_server(Site(records=20, per_sitemap=5)) as site:   # or the `fault_site` fixture
        site.fault("/sitemaps/sitemap-2.xml", status=404)
        scrapy_crawl(db, f"sitemap={site.url('/sitemap.xml')}")
        site.clear_faults()
        scrapy_crawl(db, f"sitemap={site.url('/sitemap.xml')}")
        [r.path for r in site.requests]

``site.fault(path, ...)`` (``path`` is the path, or path + query, as requested):

    status=503                       answer this status (a small HTML page), no real content
    delay=5.0                        wait this long before answering (beyond DOWNLOAD_TIMEOUT)
    drop=True                        close the connection without answering
    truncate=100                     promise the whole body (Content-Length) but send only its
                                     first 100 bytes, then close: data loss
    body=b"...", headers={...}       answer these raw bytes (status 200 unless given) with
                                     these headers (Content-Type defaults to text/html)
    rewrite=fn                       answer fn(real body) instead of the real body, e.g.
                                     ``entity_bomb`` or ``broken_xml`` below
    redirect="/other" or URL         answer ``redirect_status`` (302) with this Location;
                                     chains and loops are several redirect faults
    gzip_bomb=size                   a gzip file that inflates to ``size`` bytes of a sitemap
                                     (a .xml.gz body); with content_encoding=True it is sent as
                                     ``Content-Encoding: gzip`` instead
    times=1                          the fault answers this many requests, then is gone

Faults compose where that makes sense (``delay`` with anything, ``status`` with ``body``).
``site.robots(text, status=200)`` sets robots.txt. ``site.requests`` is the request log
(:class:`LoggedRequest`: method, target, path, lower-case headers, status answered), e.g. to
assert conditional requests; ``site.clear_requests()`` empties it. ``site.url(path)``,
``site.base_url``, ``site.port``, ``site.site`` (the generator) and ``site.truth()`` (its truth
with this server's URLs) describe the site. Two servers give two ports of 127.0.0.1 (an entry
on "another port"); ``http://localhost:PORT`` is another host name for the same server.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from harvester.localsite import LocalSiteApp, Site
from harvester.localsite.server import Request as SiteRequest
from harvester.localsite.server import _reason

__all__ = [
    "Fault",
    "FaultServer",
    "LoggedRequest",
    "billion_laughs",
    "broken_xml",
    "entity_bomb",
    "fault_server",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """How one path answers instead of the site (see the module docstring)."""

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    truncate: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    rewrite: Callable[[bytes], bytes] | None = None
    redirect: str | None = None
    redirect_status: int = 302
    gzip_bomb: int | None = None
    content_encoding: bool = False
    times: int | None = None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    time: float  # time.monotonic() when the request head was read
    method: str
    target: str  # path + query as requested
    path: str  # percent-decoded path
    headers: dict[str, str]  # lower-case names
    status: int | None  # None: no answer (dropped, or the client gave up during a delay)


def billion_laughs(levels: int = 9) -> str:
    """An internal DTD whose last entity expands to 10**levels "lol"s if anything expands it."""
    lines = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        refs = f"&lol{level - 1};" * 10
        lines.append(f'<!ENTITY lol{level} "{refs}">')
    return "\n".join(lines)


def entity_bomb(xml: bytes, after: int = 2) -> bytes:
    """The sitemap with a "billion laughs" DTD, its bomb used in the ``after``-th entry's place
    (entries before it are intact; those after it too, for a parser that keeps going)."""
    text = xml.decode("utf-8")
    root = re.search(r"<(urlset|sitemapindex)\b", text)
    assert root is not None, "not a sitemap"
    dtd = f"<!DOCTYPE {root.group(1)} [\n{billion_laughs()}\n]>\n"
    text = text[: root.start()] + dtd + text[root.start() :]
    entries = [m.end() for m in re.finditer(r"</(?:url|sitemap)>\n", text)]
    at = entries[after - 1] if 0 < after <= len(entries) else entries[-1]
    bomb = "  <url><loc>&lol9;</loc></url>\n"
    return (text[:at] + bomb + text[at:]).encode("utf-8")


def broken_xml(xml: bytes, after: int = 2) -> bytes:
    """The sitemap with malformed markup after its ``after``-th entry (an unclosed element and
    a stray ``&``); the entries before the damage are well-formed, those after it too."""
    text = xml.decode("utf-8")
    entries = [m.end() for m in re.finditer(r"</(?:url|sitemap)>\n", text)]
    at = entries[after - 1] if 0 < after <= len(entries) else entries[-1]
    damage = "  <url><loc>broken & <b></url>\n  <url <<\n"
    return (text[:at] + damage + text[at:]).encode("utf-8")


class FaultServer:
    """The local site plus per-path faults, served from a thread (see the module docstring)."""

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0) -> None:
        self.site = site
        self.app = LocalSiteApp(site)
        self._faults: dict[str, Fault] = {}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server((host, port), _handler_for(self))
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- the API tests use -------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def truth(self) -> list[dict[str, Any]]:
        return list(self.site.truth(self.base_url))

    def fault(self, path: str, **how: Any) -> None:
        """Answer ``path`` (or path + query) with this fault from now on (module docstring)."""
        with self._lock:
            self._faults[path] = Fault(**how)

    def robots(self, text: str, status: int = 200) -> None:
        self.fault("/robots.txt", status=status, body=text.encode(), headers=_TEXT)

    def clear_fault(self, path: str) -> None:
        with self._lock:
            self._faults.pop(path, None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def requested(self, path: str) -> int:
        """How many requests asked for ``path`` (or path + query)."""
        return sum(1 for r in self.requests if path in (r.path, r.target))

    # -- running -------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        self.site.sitemap_entries()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # delayed answers stop waiting
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering -----------------------------------------------------------------------------

    def _take_fault(self, target: str, path: str) -> Fault | None:
        with self._lock:
            key = target if target in self._faults else path
            fault = self._faults.get(key)
            if fault is not None and fault.times is not None:
                if fault.times <= 1:
                    del self._faults[key]
                else:
                    self._faults[key] = _replace(fault, times=fault.times - 1)
            return fault

    def _site_answer(self, request: SiteRequest) -> tuple[int, bytes, list[tuple[str, str]]]:
        with self._lock:  # the generator caches; one page at a time
            response = self.app.handle(request)
        headers = [("Content-Type", response.content_type), *response.headers]
        return response.status, response.body, headers

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        target = handler.path
        raw_path, _, query = target.partition("?")
        headers = {name.lower(): value for name, value in handler.headers.items()}
        host = headers.get("host") or f"{self.host}:{self.port}"
        request = SiteRequest(
            method=handler.command,
            target=target,
            path=unquote(raw_path) or "/",
            query=query,
            headers=headers,
            base_url=f"http://{host}",
        )
        received = time.monotonic()

        def log(status: int | None) -> None:
            # Logged before the client can see the answer, so a test that asserts on the log
            # right after its request never races the handler thread.
            entry = LoggedRequest(received, handler.command, target, request.path, headers, status)
            with self._lock:
                self._log.append(entry)

        fault = self._take_fault(target, request.path)
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            log(None)
            return
        if fault is not None and fault.drop:
            log(None)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        status, body, headers_out = self._site_answer(request)
        if fault is not None:
            status, body, headers_out = self._apply(fault, request, status, body, headers_out)
        log(status)
        send = body
        if fault is not None and fault.truncate is not None:
            send = body[: fault.truncate]
            handler.close_connection = True
        handler.send_response(status, _reason(status))
        for name, value in headers_out:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if request.method != "HEAD":
            with contextlib.suppress(OSError):
                handler.wfile.write(send)
                handler.wfile.flush()

    def _apply(
        self,
        fault: Fault,
        request: SiteRequest,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        if fault.redirect is not None:
            location = fault.redirect
            if location.startswith("/"):
                location = request.base_url + location
            page = f'<html><body><a href="{location}">moved</a></body></html>'.encode()
            return fault.redirect_status, page, [("Content-Type", _HTML), ("Location", location)]
        if fault.gzip_bomb is not None:
            bomb = _gzip_bomb(fault.gzip_bomb)
            if fault.content_encoding:
                return 200, bomb, [("Content-Type", _XML), ("Content-Encoding", "gzip")]
            return 200, bomb, [("Content-Type", "application/x-gzip")]
        if fault.body is not None:
            given = dict(fault.headers)
            given.setdefault("Content-Type", _HTML)
            return fault.status or 200, fault.body, list(given.items())
        if fault.rewrite is not None:
            body = fault.rewrite(body)
        if fault.status is not None:
            page = f"<html><body><h1>{fault.status} {_reason(fault.status)}</h1></body></html>"
            return fault.status, page.encode(), [("Content-Type", _HTML)]
        if fault.headers:
            merged = dict(headers)
            merged.update(fault.headers)
            headers = list(merged.items())
        return status, body, headers


_HTML = "text/html; charset=utf-8"
_XML = "application/xml"
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


def _replace(fault: Fault, **changes: Any) -> Fault:
    values = {name: getattr(fault, name) for name in Fault.__dataclass_fields__}
    values.update(changes)
    return Fault(**values)


def _gzip_bomb(size: int) -> bytes:
    """A gzip member that inflates to ``size`` bytes: a sitemap head, then blank space."""
    head = b'<?xml version="1.0"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [compressor.compress(head)]
    chunk = b" " * (1 << 20)
    left = size - len(head)
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush())
    data = b"".join(parts)
    assert gzip.decompress(data)[:5] == b"<?xml"
    return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a delayed answer never holds up the end of a test
    allow_reuse_address = True


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the live site

        def do_GET(self) -> None:
            server.answer(self)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is server.requests

    return Handler


@contextlib.contextmanager
def fault_server(site: Site | None = None, port: int = 0) -> Iterator[FaultServer]:
    """A running :class:`FaultServer` for the ``with`` block (default: 20 records, 4 sitemaps)."""
    server = FaultServer(site or Site(records=20, seed=3, per_sitemap=6), port=port)
    with server:
        yield server
