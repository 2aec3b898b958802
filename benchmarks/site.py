"""The crawl benchmark's site: the generated local site, written out once and served by nginx.

The local site's own server renders every page on request in Python. On a two-core machine
that rendering takes CPU from the crawl being measured, so when nginx is installed the pages
of the sitemaps (the same bytes, URLs and Last-Modified the local server answers) are written
to a directory first and nginx serves them, as a real web server would. Without nginx the
local server serves them (the figures are then lower and say so).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from harvester.localsite import LocalSiteApp, Site, serve_site
from harvester.localsite.server import Request

_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>")
# A request's file in the snapshot: the path, then "@" and the query when there is one
# (legacy pages are /App/Publications/abstract.aspx?id=N).
_NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    access_log off;
    types {{ text/plain txt; application/xml xml; }}
    default_type "text/html; charset=utf-8";
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ try_files $uri@$args $uri =404; }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class BenchSite:
    base_url: str
    server: str  # "nginx" or "localsite"
    pages: int  # URLs the sitemaps list

    @property
    def sitemap(self) -> str:
        return f"{self.base_url}/sitemap.xml"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_snapshot(site: Site, base_url: str, root: Path | None) -> int:
    """Write robots.txt, the sitemaps and every page they list under `root` (None: write
    nothing); return the number of listed pages. A page's Last-Modified is its file's mtime."""
    app = LocalSiteApp(site)
    host = urlsplit(base_url).netloc

    def answer(url: str) -> bytes:
        parts = urlsplit(url)
        request = Request("GET", url, unquote(parts.path), parts.query, {"host": host}, base_url)
        response = app.handle(request)
        if response.status != 200:
            raise RuntimeError(f"the local site answers {response.status} to {url}")
        if root is None:
            return response.body
        target = root / (parts.path.lstrip("/") + (f"@{parts.query}" if parts.query else ""))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.body)
        modified = dict(response.headers).get("Last-Modified")
        if modified:
            stamp = parsedate_to_datetime(modified).timestamp()
            os.utime(target, (stamp, stamp))
        return response.body

    def path_of(location: bytes) -> str:
        return location.decode().replace("&amp;", "&").removeprefix(base_url)

    answer("/robots.txt")
    pages = 0
    for sitemap in _LOC.findall(answer("/sitemap.xml")):
        for location in _LOC.findall(answer(path_of(sitemap))):
            answer(path_of(location))
            pages += 1
    return pages


@contextlib.contextmanager
def nginx_site(records: int, seed: int, nginx: str) -> Iterator[BenchSite]:
    with tempfile.TemporaryDirectory(prefix="harvester-bench-site-") as directory:
        work = Path(directory)
        work.chmod(0o755)  # nginx's workers run as an unprivileged user when started as root
        root = work / "root"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        pages = write_snapshot(Site(records=records, seed=seed), base_url, root)
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        config = work / "nginx.conf"
        config.write_text(_NGINX_CONFIG.format(work=work, port=port, root=root))
        process = subprocess.Popen(
            [nginx, "-c", str(config), "-p", str(work), "-e", str(work / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, process)
            yield BenchSite(base_url, "nginx", pages)
        finally:
            process.terminate()
            process.wait(10)


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx is not listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def bench_site(records: int, seed: int = 1, *, use_nginx: bool = True) -> Iterator[BenchSite]:
    """The generated site of `records` records, served on 127.0.0.1 until the block ends."""
    nginx = nginx_binary() if use_nginx else None
    if nginx is not None:
        with nginx_site(records, seed, nginx) as site:
            yield site
        return
    with serve_site(records=records, seed=seed, log_requests=False) as handle:
        listed = write_snapshot(handle.site, handle.base_url, None)
        yield BenchSite(handle.base_url, "localsite", listed)
