"""HTTP/1.1 server for the local NCJRS-style site, and ``serve_site`` to run it in a child process.

The server is a single asyncio event loop on plain ``asyncio`` streams (keep-alive, pipelining,
HEAD, optional gzip); every page is rendered on demand by :class:`~.generator.Site`. Routing is
a table of ``Route(name, pattern, handler)`` rows matched against the decoded path, so new
behaviour (status overrides, changed records, ...) is a new row or a new option.

:func:`serve_site` starts ``python -m harvester.localsite --control`` as a separate process (no
shared GIL with the crawler, no re-import of the caller's ``__main__``), waits until it listens
and talks to it over its stdin/stdout with JSON lines (request log, stop). The child exits when
its stdin closes, so it never outlives the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from harvester.localsite.generator import (
    CONTENT_TYPE_HTML,
    CONTENT_TYPE_TEXT,
    CONTENT_TYPE_XML,
    CURRENT_PREFIX,
    Site,
    SiteOptions,
)

__all__ = [
    "ROUTES",
    "LocalSiteApp",
    "RequestLogEntry",
    "Response",
    "Route",
    "ServerOptions",
    "SiteHandle",
    "run_server",
    "serve_site",
    "split_options",
]

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Behaviour of the HTTP layer (as opposed to SiteOptions, the content). JSON-able values."""

    # "path" or "path?query" -> status answered instead of the page (e.g. 500, 503, 429)
    status_overrides: Mapping[str, int] = field(default_factory=dict)
    gzip: bool = False  # gzip bodies > 1 KiB when the client accepts it
    log_requests: bool = True

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status_overrides": dict(self.status_overrides),
            "gzip": self.gzip,
            "log_requests": self.log_requests,
        }


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``serve_site(**options)`` into SiteOptions and ServerOptions keyword arguments."""
    site_names, server_names = SiteOptions.names(), ServerOptions.names()
    unknown = set(options) - site_names - server_names
    if unknown:
        raise TypeError(f"unknown localsite option(s): {', '.join(sorted(unknown))}")
    site = {k: v for k, v in options.items() if k in site_names}
    server = {k: v for k, v in options.items() if k in server_names}
    return site, server


# --------------------------------------------------------------------------------------------
# Requests, responses, routes
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    method: str
    target: str  # path + query as requested
    path: str  # percent-decoded path
    query: str
    headers: dict[str, str]  # lower-case names
    base_url: str  # http://<Host header>

    def param(self, name: str, *, case_insensitive: bool = False) -> str | None:
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == name or (case_insensitive and key.lower() == name.lower()):
                return value
        return None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = CONTENT_TYPE_HTML
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), CONTENT_TYPE_HTML)


Handler = Callable[["LocalSiteApp", Request, "re.Match[str]"], Response]


class Route(NamedTuple):
    name: str
    pattern: re.Pattern[str]  # matched with fullmatch against the decoded path
    handler: Handler


def _robots(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    return Response(200, app.site.render_robots(req.base_url).encode(), CONTENT_TYPE_TEXT)


def _sitemap_index(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    return Response(200, app.site.render_sitemap_index(req.base_url).encode(), CONTENT_TYPE_XML)


def _sitemap_page(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    body = app.site.render_sitemap(int(m.group(1)), req.base_url)
    return app.not_found(req) if body is None else Response(200, body.encode(), CONTENT_TYPE_XML)


def _listing(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    raw = req.param("page") or "0"
    page = int(raw) if raw.isdigit() else 0
    body = app.site.render_listing(page, req.base_url)
    return app.not_found(req) if body is None else Response.html(body)


def _record_page(app: LocalSiteApp, i: int, body: str) -> Response:
    """A record page with the validators a conditional request is answered from."""
    modified = formatdate(app.site.record(i).lastmod.timestamp(), usegmt=True)
    return Response(200, body.encode("utf-8"), CONTENT_TYPE_HTML, (("Last-Modified", modified),))


def _current(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    site = app.site
    i = site.index_of_slug(m.group(1))
    if i is None:
        return app.not_found(req)
    if site.is_soft_404_index(i):
        return Response.html(site.render_soft_404(req.base_url, req.path))
    if site.layout(i) != "current":
        return app.not_found(req)  # legacy-only records have no current page
    return _record_page(app, i, site.render_current(i, req.base_url))


def _publication(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    i = app.site.index_of_slug(m.group(1))
    if i is None or i >= app.site.records or not app.site.has_publication(i):
        return app.not_found(req)
    return _record_page(app, i, app.site.render_publication(i, req.base_url))


def _legacy(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    raw = req.param("id", case_insensitive=True)  # ASP.NET query keys are case-insensitive
    i = app.site.index_of_legacy_id(int(raw)) if raw and raw.isdigit() else None
    if i is None:
        return app.not_found(req)
    if app.site.layout(i) == "current":
        return app.redirect(req, f"{CURRENT_PREFIX}/{app.site.slug(i)}")
    return _record_page(app, i, app.site.render_legacy(i, req.base_url))


def _topic(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    k = app.site.topic_index(m.group(1), m.group(2))
    if k is None:
        return _section(app, req, m)
    return Response.html(app.site.render_topic(k, req.base_url))


def _section(app: LocalSiteApp, req: Request, m: re.Match[str]) -> Response:
    body = app.site.render_section(req.path, req.base_url)
    return app.not_found(req) if body is None else Response.html(body)


ROUTES: tuple[Route, ...] = (
    Route("robots", re.compile(r"/robots\.txt"), _robots),
    Route("sitemap_index", re.compile(r"/sitemap\.xml"), _sitemap_index),
    Route("sitemap", re.compile(r"/sitemaps/sitemap-([0-9]{1,6})\.xml"), _sitemap_page),
    Route("listing", re.compile(re.escape(CURRENT_PREFIX)), _listing),
    Route("current", re.compile(re.escape(CURRENT_PREFIX) + r"/([a-z0-9-]+)"), _current),
    Route("publication", re.compile(r"/library/publications/([a-z0-9-]+)"), _publication),
    Route(
        "legacy",
        re.compile(r"/app/(?:publications/abstract|abstractdb/abstractdbdetails)\.aspx", re.I),
        _legacy,
    ),
    Route("topic", re.compile(r"/topics/([a-z0-9-]+)/([a-z0-9-]+)"), _topic),
    Route("section", re.compile(r"/.*"), _section),  # navigation pages, else 404
)


class RequestLogEntry(NamedTuple):
    time: float  # time.monotonic() in the server process when the request head was read
    method: str
    target: str  # path + query as requested
    status: int


RECORD_ROUTES = frozenset({"current", "publication", "legacy"})


@dataclass(slots=True)
class Behaviour:
    """What tests change while the server runs (control command ``configure``)."""

    # Record pages answer 304 to a matching If-None-Match / If-Modified-Since.
    conditional: bool = True
    # The next ``count`` record-page requests get ``status`` (429 / 503), with a Retry-After
    # header when ``retry_after`` is set: {"status": 503, "count": 3, "retry_after": 2}.
    busy: dict[str, Any] | None = None
    # Label text shown on record pages -> text shown instead (a simulated layout change).
    renames: dict[str, str] = field(default_factory=dict)
    # Record-page path -> status answered instead (404 / 410: a withdrawn record).
    statuses: dict[str, int] = field(default_factory=dict)


class LocalSiteApp:
    """Routing and the request log; independent of the transport (easy to unit test)."""

    def __init__(
        self,
        site: Site,
        options: ServerOptions | None = None,
        routes: tuple[Route, ...] = ROUTES,
    ) -> None:
        self.site = site
        self.options = options or ServerOptions()
        self.routes = routes
        self.log: list[RequestLogEntry] = []
        self.behaviour = Behaviour()

    def not_found(self, req: Request) -> Response:
        return Response.html(self.site.render_not_found(req.path), 404)

    def redirect(self, req: Request, path: str, status: int = 301) -> Response:
        location = req.base_url + path
        body = f'<html><body>Moved to <a href="{location}">{location}</a></body></html>\n'
        return Response(status, body.encode(), CONTENT_TYPE_HTML, (("Location", location),))

    def handle(self, req: Request) -> Response:
        overrides = self.options.status_overrides
        if overrides:
            status = overrides.get(req.target, overrides.get(req.path))
            if status is not None:
                extra = (("Retry-After", "1"),) if status in (429, 503) else ()
                return _status_page(status, extra)
        if req.method not in ("GET", "HEAD"):
            return Response(
                405, b"Method Not Allowed\n", CONTENT_TYPE_TEXT, (("Allow", "GET, HEAD"),)
            )
        for route in self.routes:
            m = route.pattern.fullmatch(req.path)
            if m is not None:
                if route.name in RECORD_ROUTES:
                    return self._record_route(route, req, m)
                return route.handler(self, req, m)
        return self.not_found(req)

    def _record_route(self, route: Route, req: Request, m: re.Match[str]) -> Response:
        """Record pages: set statuses, busy answers (429/503), renamed labels, ETag and 304s."""
        status = self.behaviour.statuses.get(req.target, self.behaviour.statuses.get(req.path))
        if status is not None:
            return _status_page(status)
        busy = self.behaviour.busy
        if busy is not None and busy.get("count", 0) > 0:
            busy["count"] -= 1
            retry_after = busy.get("retry_after")
            extra = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
            return _status_page(int(busy.get("status", 503)), extra)
        resp = route.handler(self, req, m)
        if resp.status != 200:
            return resp
        body = resp.body
        for old, new in self.behaviour.renames.items():
            for suffix in ("", ":"):
                body = body.replace(f">{old}{suffix}<".encode(), f">{new}{suffix}<".encode())
        if not self.behaviour.conditional:
            return Response(resp.status, body, resp.content_type, resp.headers)
        etag = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
        headers = (*resp.headers, ("ETag", etag))
        if _not_modified(req, etag, dict(resp.headers).get("Last-Modified")):
            return Response(304, b"", resp.content_type, headers)
        return Response(resp.status, body, resp.content_type, headers)


def _status_page(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = f"<html><body><h1>{status} {_reason(status)}</h1></body></html>\n".encode()
    return Response(status, body, CONTENT_TYPE_HTML, headers)


def _not_modified(req: Request, etag: str, last_modified: str | None) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = req.headers.get("if-none-match")
    if if_none_match is not None:
        return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
    since = req.headers.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# --------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams
# --------------------------------------------------------------------------------------------


class _HttpServer:
    def __init__(self, app: LocalSiteApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._date = ""
        self._date_at = 0.0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=_MAX_HEAD, backlog=512, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        return self.host, self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # idle keep-alive connections end with EOF
                writer.close()
            await asyncio.sleep(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _http_date(self) -> str:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = formatdate(now, usegmt=True)
        return self._date

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        default_host = f"{self.host}:{self.port}"
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except asyncio.LimitOverrunError:
                    writer.write(self._raw(431, b"", False))
                    break
                received = time.monotonic()
                parsed = _parse_head(head)
                if parsed is None:
                    writer.write(self._raw(400, b"Bad Request\n", False))
                    break
                method, target, version, headers = parsed
                length = headers.get("content-length", "0")
                if length.isdigit() and int(length) > 0:
                    await reader.readexactly(int(length))
                conn = headers.get("connection", "").lower()
                keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
                req = _make_request(method, target, headers, default_host)
                try:
                    resp = self.app.handle(req)
                except Exception:  # a bug: answer 500 and say why on stderr, keep serving
                    traceback.print_exc()
                    resp = Response(500, b"Internal Server Error\n", CONTENT_TYPE_TEXT)
                if self.app.options.log_requests:
                    self.app.log.append(RequestLogEntry(received, method, target, resp.status))
                writer.write(self._serialize(resp, req, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass  # client went away, or shutdown
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _raw(self, status: int, body: bytes, keep_alive: bool) -> bytes:
        return (
            f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: {CONTENT_TYPE_TEXT}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}"
            "\r\n\r\n"
        ).encode("latin-1") + body

    def _serialize(self, resp: Response, req: Request, keep_alive: bool) -> bytes:
        body = resp.body
        lines = [
            f"HTTP/1.1 {resp.status} {_reason(resp.status)}",
            f"Date: {self._http_date()}",
            "Server: localsite",
            f"Content-Type: {resp.content_type}",
        ]
        if (
            self.app.options.gzip
            and len(body) > 1024
            and "gzip" in req.headers.get("accept-encoding", "")
        ):
            body = gzip.compress(body, compresslevel=1, mtime=0)
            lines.append("Content-Encoding: gzip")
            lines.append("Vary: Accept-Encoding")
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if req.method == "HEAD" else head + body


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return method.upper(), target, version, headers


def _make_request(method: str, target: str, headers: dict[str, str], default_host: str) -> Request:
    if target.startswith(("http://", "https://")):  # absolute-form (proxy style)
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    raw_path, _, query = target.partition("?")
    host = headers.get("host") or default_host
    return Request(
        method=method,
        target=target,
        path=unquote(raw_path) or "/",
        query=query,
        headers=headers,
        base_url=f"http://{host}",
    )


# --------------------------------------------------------------------------------------------
# Running: in the foreground (python -m harvester.localsite) or as a controlled child
# --------------------------------------------------------------------------------------------


async def run_server(
    site: Site,
    host: str = "127.0.0.1",
    port: int = 0,
    options: ServerOptions | None = None,
    *,
    on_listening: Callable[[str, int], None] | None = None,
    control: IO[bytes] | None = None,
    reply: IO[bytes] | None = None,
) -> None:
    """Serve until Ctrl-C / SIGTERM / cancellation, or (with ``control``) until that stream says
    stop or closes.

    ``control``/``reply`` carry the JSON-lines protocol used by :func:`serve_site`:
    ``{"cmd": "log", "clear": bool}`` -> ``{"requests": [[t, method, target, status], ...]}``,
    ``{"cmd": "ping"}`` -> ``{"ok": true}``, ``{"cmd": "stop"}`` (or EOF) -> exit.
    """
    site.sitemap_entries()  # the one O(records) structure: build it before serving, not mid-crawl
    app = LocalSiteApp(site, options)
    server = _HttpServer(app, host, port)
    bound_host, bound_port = await server.start()
    if on_listening is not None:
        on_listening(bound_host, bound_port)
    try:
        if control is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, stop.set)
            await stop.wait()  # until Ctrl-C / SIGTERM (or cancellation)
        else:
            await _control_loop(app, control, reply or sys.stdout.buffer)
    finally:
        await server.close()


async def _control_loop(app: LocalSiteApp, control: IO[bytes], reply: IO[bytes]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), control)
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            command = json.loads(line)
        except ValueError:
            continue
        cmd = command.get("cmd")
        if cmd == "stop":
            return
        if cmd == "log":
            entries = [list(e) for e in app.log]
            if command.get("clear"):
                app.log.clear()
            _send(reply, {"requests": entries})
        elif cmd == "ping":
            _send(reply, {"ok": True})
        elif cmd == "revise":
            app.site.revise(command["indices"])
            _send(reply, {"ok": True})
        elif cmd == "configure":
            for name, value in command["behaviour"].items():
                setattr(app.behaviour, name, value)
            _send(reply, {"ok": True})


def _send(stream: IO[bytes], message: Mapping[str, Any]) -> None:
    stream.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    stream.flush()


def child_main(records: int, seed: int, host: str, port: int, config: Mapping[str, Any]) -> None:
    """Entry point of the controlled child process (``python -m harvester.localsite --control``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    site = Site(records=records, seed=seed, **config.get("site", {}))
    server_options = ServerOptions(**config.get("server", {}))
    out = sys.stdout.buffer

    def listening(h: str, p: int) -> None:
        _send(out, {"event": "listening", "host": h, "port": p, "pid": os.getpid()})

    asyncio.run(
        run_server(
            site,
            host,
            port,
            server_options,
            on_listening=listening,
            control=sys.stdin.buffer,
            reply=out,
        )
    )


# --------------------------------------------------------------------------------------------
# serve_site: the test / benchmark API
# --------------------------------------------------------------------------------------------

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SiteHandle:
    """A running local site: ``base_url``, ``site`` (the generator, for truth), ``requests()``."""

    def __init__(self, process: subprocess.Popen[bytes], site: Site, host: str, port: int) -> None:
        self.process = process
        self.site = site
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return self.base_url + path

    def truth(self) -> list[dict[str, Any]]:
        """Truth entries of all records (see ``Site.truth_entry``) with this server's URLs."""
        return list(self.site.truth(self.base_url))

    def requests(self, clear: bool = False) -> list[RequestLogEntry]:
        """The server's request log so far: (monotonic time, method, path+query, status).

        Times come from ``time.monotonic()`` in the server process (CLOCK_MONOTONIC is
        system-wide on Linux, so they compare with the caller's ``time.monotonic()``).
        """
        reply = self._command({"cmd": "log", "clear": clear})
        return [RequestLogEntry(float(t), m, p, int(s)) for t, m, p, s in reply["requests"]]

    def clear_requests(self) -> None:
        self.requests(clear=True)

    def revise(self, indices: list[int]) -> None:
        """Change these records on the running site (and in ``site``, for ``truth()``)."""
        self._command({"cmd": "revise", "indices": list(indices)})
        self.site.revise(indices)

    def configure(self, **behaviour: Any) -> None:
        """Change the server's :class:`Behaviour` (conditional, busy, renames) while it runs."""
        unknown = set(behaviour) - {f.name for f in fields(Behaviour)}
        if unknown:
            raise TypeError(f"unknown behaviour: {', '.join(sorted(unknown))}")
        self._command({"cmd": "configure", "behaviour": behaviour})

    def _command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None or self.process.poll() is not None:
            raise RuntimeError("the localsite server process is not running")
        with self._lock:
            _send(stdin, message)
            line = stdout.readline()
        if not line:
            raise RuntimeError("the localsite server process exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self, timeout: float = 5.0) -> None:
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                if proc.stdin is not None:
                    _send(proc.stdin, {"cmd": "stop"})
            with contextlib.suppress(Exception):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def __enter__(self) -> SiteHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_site(
    records: int = 1000,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 30.0,
    **options: Any,
) -> SiteHandle:
    """Start the server process and return its handle (call ``close()``); see serve_site."""
    site_kwargs, server_kwargs = split_options(options)
    site = Site(records=records, seed=seed, **site_kwargs)  # validates options early
    server_options = ServerOptions(**server_kwargs)
    site_config = site.options.to_dict()
    del site_config["records"], site_config["seed"]
    config = {"site": site_config, "server": server_options.to_dict()}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "harvester.localsite", "--control",
        "--records", str(records), "--seed", str(seed), "--host", host, "--port", str(port),
        "--config", json.dumps(config),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
    line = proc.stdout.readline() if ready else b""
    try:
        message = json.loads(line) if line else {}
    except ValueError:
        message = {}
    if message.get("event") != "listening":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"localsite server did not start (got {line[:200]!r})")
    return SiteHandle(proc, site, str(message["host"]), int(message["port"]))


@contextlib.contextmanager
def serve_site(
    records: int = 1000,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[SiteHandle]:
    """Run the local site in a separate process for the duration of the ``with`` block.

    ``options`` are SiteOptions fields (bad_share, legacy_share, publication_share, per_sitemap,
    page_size, ...) and ServerOptions fields (status_overrides, gzip, log_requests).
    """
    handle = start_site(records, seed, host, port, **options)
    try:
        yield handle
    finally:
        handle.close()
